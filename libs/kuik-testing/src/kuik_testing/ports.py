"""Free loopback ports and waiting for a server to listen on one."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

_LOWEST = 10_000  # below: well-known and registered services


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports it picks itself (outgoing connections, binds to port 0)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now, picked outside the kernel's ephemeral range.

    A port the kernel handed out for `bind(0)` comes from the same range as the source ports
    of outgoing connections, so on a busy machine one of the suite's many clients could take it
    between this call and the server's bind (it happened: a container failed to listen). Ports
    below that range are only ever taken by an explicit bind; random picks keep parallel test
    workers apart.
    """
    low, _ = ephemeral_range()
    if low - 1 > _LOWEST:
        for _ in range(100):
            port = random.randint(_LOWEST, low - 1)
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until a TCP connect to (host, port) succeeds; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.02)
