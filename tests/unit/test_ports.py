"""Free ports for test servers come from outside the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket

import pytest

from kuik_testing.ports import ephemeral_range, free_port


def test_free_ports_are_bindable_and_below_the_ephemeral_range() -> None:
    low, high = ephemeral_range()
    assert 0 < low <= high
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 1  # random picks, so parallel workers rarely meet
    for port in ports:
        assert port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # raises if something holds it


def test_a_listening_port_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        taken = server.getsockname()[1]
        other = free_port()
        picks = iter([taken, taken, other])
        monkeypatch.setattr(random, "randint", lambda a, b: next(picks))
        assert free_port() == other
