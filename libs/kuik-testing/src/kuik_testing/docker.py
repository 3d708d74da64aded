"""A private Docker daemon for tests that build and run kuik's images, and the images themselves.

Only loopback traffic is allowed on these machines and no image registry is reachable, so:

- `DockerDaemon` starts Debian's `dockerd` as root on its own socket, with its data-root and
  exec-root in a temp dir, no bridge and no iptables (containers use the host network), and
  stops it by PID;
- `debian_base_tarball()` makes the base image's root filesystem once with
  `mmdebstrap --variant=minbase bookworm` and keeps it in a stable cache directory, so a test run
  pays the ~1 min once, not per test; `DockerDaemon.import_image` turns it into
  `localhost/debian-base`;
- `DockerDaemon.build` builds with `--network host` (apt and PyPI are reached through the
  host's network), passing the host's locally added CA certificates to the build stage
  (`EXTRA_CA_CERTS`) when a TLS-intercepting proxy sits between the machine and PyPI.

`docker_missing()` names what is missing (root, `dockerd`, `mmdebstrap`) so tests can skip
with a useful message; `make install-docker` installs the Debian packages.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BASE_IMAGE",
    "KUIK_IMAGE",
    "DockerDaemon",
    "DockerError",
    "cache_dir",
    "debian_base_tarball",
    "docker_missing",
    "local_ca_certificates",
]

BASE_IMAGE = "localhost/debian-base"
KUIK_IMAGE = "localhost/kube-image-keeper:test"
SUITE = "bookworm"
# A cached base older than this is rebuilt (it only has to install today's python3 packages).
BASE_MAX_AGE = 30 * 24 * 3600
INSTALL_HINT = "run `make install-docker` (Debian packages docker.io and mmdebstrap)"


class DockerError(RuntimeError):
    """A docker command failed; the message carries the command and the end of its output."""


def _search_path() -> str:
    """PATH plus the sbin directories where Debian puts dockerd and runc."""
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _find(name: str, path: str | None = None) -> str | None:
    return shutil.which(name, path=_search_path() if path is None else path)


def docker_missing(*, path: str | None = None, euid: int | None = None) -> str | None:
    """Why a private dockerd cannot run here, or None when it can.

    `path` (default: PATH and the sbin directories) and `euid` (default: this process's) are
    where to look and who asks.
    """
    tools = ("dockerd", "containerd", "runc", "mmdebstrap", "docker")
    missing = [tool for tool in tools if _find(tool, path) is None]
    reasons = []
    if missing:
        reasons.append(f"{', '.join(missing)} not found: {INSTALL_HINT}")
    if (os.geteuid() if euid is None else euid) != 0:
        reasons.append("dockerd needs root (these tests run as root in CI)")
    return "; ".join(reasons) or None


def _client() -> str | None:
    """Debian's docker client (the daemon's own version) first, then any on PATH."""
    debian = Path("/usr/bin/docker")
    return str(debian) if debian.exists() else _find("docker")


def cache_dir() -> Path:
    """Where build inputs are kept across test runs: $KUIK_CACHE_DIR or ~/.cache/kuik."""
    configured = os.environ.get("KUIK_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "kuik"
    base.mkdir(parents=True, exist_ok=True)
    return base


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise processes (pytest-xdist workers, parallel runs) making the same cached file."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def debian_base_tarball(directory: Path | None = None, *, suite: str = SUITE) -> Path:
    """A minbase Debian root filesystem as a tar, made once by mmdebstrap and then reused."""
    directory = directory or cache_dir()
    target = directory / f"debian-{suite}-minbase.tar"
    with _file_lock(directory / f"{target.name}.lock"):
        if target.exists() and time.time() - target.stat().st_mtime < BASE_MAX_AGE:
            return target
        partial = target.with_suffix(".partial.tar")
        log = directory / f"{target.name}.log"
        command = ["mmdebstrap", "--variant=minbase", suite, str(partial)]
        with log.open("wb") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise DockerError(f"{' '.join(command)} failed ({done.returncode}):\n{_tail(log)}")
        partial.replace(target)
        return target


def local_ca_certificates() -> str:
    """The PEM certificates added to this machine's trust store by hand (Debian's
    /usr/local/share/ca-certificates): what a build needs to trust an intercepting proxy."""
    root = Path("/usr/local/share/ca-certificates")
    files = sorted(root.rglob("*.crt")) if root.is_dir() else []
    return "".join(f.read_text().strip() + "\n" for f in files)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _mounts_below(root: Path) -> list[str]:
    """Mount points under `root`, deepest first (what a killed dockerd leaves behind)."""
    prefix = str(root.resolve())
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4]
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


@dataclass
class DockerDaemon:
    """Debian's dockerd on a private socket, everything it writes under one temp dir.

    `start()` waits until the API answers (about 2 s); `stop()` sends SIGTERM to its PID (it stops
    its containers and its own containerd), SIGKILL after `grace` seconds, then unmounts and
    removes what is left.
    """

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kuik-docker-")))
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        """The DOCKER_HOST value for clients (docker, docker-compose)."""
        return f"unix://{self.socket}"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def env(self) -> dict[str, str]:
        """The environment a docker or docker-compose client needs to talk to this daemon."""
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1"}

    def start(self, timeout: float = 60.0) -> DockerDaemon:
        missing = docker_missing()
        if missing:
            raise DockerError(f"cannot start dockerd: {missing}")
        dockerd = _find("dockerd")
        assert dockerd is not None
        if len(str(self.socket)) > 100:
            raise DockerError(f"socket path too long for a unix socket: {self.socket}")
        for sub in ("data", "exec"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        command = [
            dockerd,
            f"--host={self.host}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--storage-driver=overlay2",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise DockerError(
                    f"dockerd exited with {self.process.returncode}:\n{_tail(self.log_path)}"
                )
            if self.socket.exists() and self.docker("version", check=False).returncode == 0:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise DockerError(f"dockerd not ready after {timeout}s:\n{_tail(self.log_path)}")
            time.sleep(0.1)

    def docker(
        self,
        *args: str,
        check: bool = True,
        timeout: float | None = 120,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this daemon; output captured as text."""
        client = _client()
        if client is None:
            raise DockerError(f"docker client not found: {INSTALL_HINT}")
        command = [client, "--host", self.host, *args]
        done = subprocess.run(
            command,
            capture_output=True,
            input=input.decode() if input is not None else None,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and done.returncode != 0:
            raise DockerError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def has_image(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False).returncode == 0

    def import_image(self, tarball: Path, tag: str = BASE_IMAGE) -> str:
        """`docker import` a root filesystem tar as `tag` (no-op when the daemon has it)."""
        if not self.has_image(tag):
            self.docker("import", str(tarball), tag, timeout=300)
        return tag

    def build(
        self,
        context: Path,
        tag: str,
        *,
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
        log_path: Path | None = None,
        timeout: float = 900,
    ) -> str:
        """`docker build --network host` of `context` as `tag` (BuildKit); returns the tag.

        The build log goes to `log_path` (default: next to the daemon's log) and its end is in
        the error when the build fails.
        """
        args: list[str] = ["build", "--network=host", "--progress=plain", f"--tag={tag}"]
        if target:
            args.append(f"--target={target}")
        for key, value in (build_args or {}).items():
            args.append(f"--build-arg={key}={value}")
        log_path = log_path or self.root / f"build-{tag.replace('/', '_').replace(':', '_')}.log"
        done = self.docker(*args, str(context), check=False, timeout=timeout)
        log_path.write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise DockerError(f"docker build of {tag} failed, log {log_path}:\n{_tail(log_path)}")
        return tag

    def inspect(self, obj: str) -> Any:
        """`docker inspect` of one image or container, parsed."""
        return json.loads(self.docker("inspect", obj).stdout)[0]

    def run(
        self, image: str, *command: str, options: Sequence[str] = (), timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`docker run --rm` with `options`; returns the finished process (not checked)."""
        return self.docker("run", "--rm", *options, image, *command, check=False, timeout=timeout)

    def _kill_orphan_containerd(self) -> None:
        """A dockerd that died hard leaves its containerd running: stop it by its PID file,
        after checking that this PID is still that containerd (PIDs get reused)."""
        pid_file = self.root / "exec" / "containerd" / "containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(self.root).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM dockerd by its PID, SIGKILL after `grace`, then clean up its directory."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._kill_orphan_containerd()
        for point in _mounts_below(self.root):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        # rm is ~2x faster than rmtree on overlay2's many small files, and never crosses into a
        # mount left behind (a container's bind mount of a test directory).
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
