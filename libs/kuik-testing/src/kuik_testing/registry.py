"""A real `docker-registry` (distribution v2.8) process on a free loopback port, plus a tiny client.

Tests talk to real registries, never fakes: each `RegistryServer` owns a temp dir holding its
config, storage, TLS material and log. The log is distribution's JSON request log, so tests can
count what a registry really received (`count_requests`). `RegistryHTTP` is a deliberately small
synchronous client of the fixtures' own (readiness, log sync, pushing synthetic images); it must not
share code with `kuikcore.registry`, which is the thing under test.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml

from kuik_testing.ports import free_port
from kuik_testing.server import ServerProcess

__all__ = [
    "USER_AGENT",
    "RegistryHTTP",
    "RegistryRequest",
    "RegistryResponse",
    "RegistryServer",
    "deep_merge",
    "htpasswd_line",
    "max_in_window",
]

_LOG_SYNC_QUERY = "kuik-log-sync"
USER_AGENT = "kuik-testing/1"  # the fixtures' own traffic, told apart from the code under test


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `override` into a copy of `base`: mappings merge key by key, a None value deletes the key."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def htpasswd_line(username: str, password: str, rounds: int = 4) -> str:
    """One htpasswd entry with a bcrypt hash (the only scheme distribution accepts).

    Cost 4 (bcrypt's minimum) keeps every authenticated request cheap; these are throwaway secrets.
    """
    import bcrypt  # dev-only dependency: imported here so `kuik_testing` imports without it

    if ":" in username or not username:
        raise ValueError(f"htpasswd username {username!r}: must be non-empty and contain no ':'")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()
    return f"{username}:{hashed}"


def _arrival(entry: Mapping[str, Any]) -> float | None:
    """A request log line's completion time (RFC 3339 with nanoseconds) minus its duration."""
    from kuikcore.config import parse_duration  # lazy: only request timing needs it

    stamp, duration = entry.get("time"), entry.get("http.response.duration")
    if not isinstance(stamp, str) or not isinstance(duration, str):
        return None
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        completed = datetime.fromisoformat(whole + "+00:00").timestamp()
        return (
            completed + float("0." + (fraction or "0")) - parse_duration(duration).total_seconds()
        )
    except ValueError:
        return None


def max_in_window(times: Iterable[float], window: float) -> int:
    """The most of `times` (seconds) falling within any half-open window of `window` seconds:
    what a rate limit of N per `window` must keep <= N."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass(frozen=True, slots=True)
class RegistryRequest:
    """One request as distribution logged it."""

    method: str
    path: str  # request URI: path and query string
    status: int
    repository: str | None
    user_agent: str
    arrived: float | None = None
    """When the request arrived (unix seconds: the log line's time minus the response duration),
    for tests and benchmarks that check request spacing; None when the line does not say."""


@dataclass(frozen=True, slots=True)
class RegistryResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class RegistryHTTP:
    """A minimal sync HTTP client for one registry: keep-alive, basic auth, bearer tokens, custom CA.

    On a 401 with a `Bearer` challenge it fetches a token from the realm (with the basic credentials
    when it has them) and retries once; tokens are cached per scope.
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"registry url {url!r}: must be http(s)://host[:port]")
        self.url = url.rstrip("/")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._username = username
        self._password = password
        self._ssl = ssl_context
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._tokens: dict[str, str] = {}

    def __enter__(self) -> RegistryHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._scheme == "https":
                context = self._ssl or ssl.create_default_context()
                self._conn = http.client.HTTPSConnection(
                    self._netloc, timeout=self._timeout, context=context
                )
            else:
                self._conn = http.client.HTTPConnection(self._netloc, timeout=self._timeout)
        return self._conn

    def _basic(self) -> str | None:
        if self._username is None:
            return None
        raw = f"{self._username}:{self._password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | Iterable[bytes] | None,
    ) -> RegistryResponse:
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers={"User-Agent": USER_AGENT, **headers})
            resp = conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, ConnectionError):
            self.close()  # never reuse a connection in an unknown state
            raise
        if resp.will_close:
            self.close()
        return RegistryResponse(resp.status, resp.headers, data)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | Iterable[bytes] | None = None,
        content_length: int | None = None,
        bearer: bool = True,
    ) -> RegistryResponse:
        """Send one request; `path` may be absolute (a `Location` header) or start with `/`.

        A streamed (iterable) body needs `content_length` and is only retried after a 401 when
        it is bytes, so callers that stream should authenticate first with a cheap request.
        `bearer=False` returns a 401 as is instead of fetching a token.
        """
        target = self._target(path)
        base_headers = dict(headers or {})
        if content_length is not None:
            base_headers["Content-Length"] = str(content_length)
        elif body is None and method in ("PUT", "POST", "PATCH"):
            base_headers["Content-Length"] = "0"
        scope = _scope_for(method, target)
        auth = self._tokens.get(scope) if scope else None
        auth = auth or self._basic()
        first = self._send(method, target, {**base_headers, **_auth(auth)}, body)
        if first.status != 401 or not bearer:
            return first
        challenge = first.header("WWW-Authenticate") or ""
        if not challenge.lower().startswith("bearer"):
            return first
        token = self._fetch_token(challenge)
        if token is None:
            return first
        if scope:
            self._tokens[scope] = token
        if body is not None and not isinstance(body, bytes):
            return first
        return self._send(method, target, {**base_headers, **_auth(token)}, body)

    def _target(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            parts = urlsplit(path)
            return parts.path + (f"?{parts.query}" if parts.query else "")
        if not path.startswith("/"):
            raise ValueError(f"request path {path!r}: must be absolute or start with '/'")
        return path

    def _fetch_token(self, challenge: str) -> str | None:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if realm is None:
            return None
        query = urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
        parts = urlsplit(realm)
        token_client = RegistryHTTP(
            f"{parts.scheme}://{parts.netloc}",
            username=self._username,
            password=self._password,
            ssl_context=self._ssl,
            timeout=self._timeout,
        )
        with token_client:
            resp = token_client._send(
                "GET", f"{parts.path}?{query}", _auth(token_client._basic()), None
            )
        if resp.status != 200:
            return None
        doc = json.loads(resp.body)
        token = doc.get("token") or doc.get("access_token")
        return f"Bearer {token}" if token else None


def _auth(value: str | None) -> dict[str, str]:
    return {"Authorization": value} if value else {}


def _scope_for(method: str, target: str) -> str | None:
    """The token scope a request needs, used as the token cache key."""
    match = re.match(r"/v2/(.+?)/(blobs|manifests|tags)/", target)
    if match is None:
        return None
    actions = "pull" if method in ("GET", "HEAD") else "pull,push"
    if method == "DELETE":
        actions = "delete"
    return f"repository:{match.group(1)}:{actions}"


def _free_port(address: str) -> int:
    if ":" not in address:
        return free_port(address)
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:  # IPv6 loopback
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RegistryServer(ServerProcess):
    """One throwaway `docker-registry serve` process; see the module docstring.

    `tls=True` serves HTTPS with a certificate from a throwaway trustme CA (`ca_file`,
    `ssl_context()`); `username`/`password` turn on htpasswd basic auth; `extra_config` is
    deep-merged into the generated distribution config (None deletes a key). `restart()` keeps the
    port, storage and certificates, so data survives it.
    """

    tls: bool = False
    username: str | None = None
    password: str | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)
    delete_enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kuik-registry-")))
    process: subprocess.Popen[bytes] | None = None
    start_seconds: float | None = None  # wall time of the last start(), until /v2/ answered

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("RegistryServer: username and password go together")
        if self.port == 0:
            self.port = _free_port(self.address)
        self._prepared = False

    # -- addresses -------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The registry as written in image references: `127.0.0.1:PORT` or `[::1]:PORT`."""
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{address}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yml"

    @property
    def storage_path(self) -> Path:
        return self.workdir / "storage"

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signed the server certificate (only with `tls=True`)."""
        if not self.tls:
            raise ValueError(f"registry {self.host} serves plain HTTP: it has no CA file")
        return self.workdir / "ca.pem"

    @property
    def cert_dir(self) -> Path:
        """A directory holding the CA as `ca.crt`: what skopeo's `--cert-dir` and containerd expect."""
        return self.ca_file.parent / "certs.d"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting this registry's CA; None for a plain-HTTP registry."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, *, username: str | None = None, password: str | None = None) -> RegistryHTTP:
        """A `RegistryHTTP` on this registry, with its own credentials unless others are given."""
        if username is None and password is None:
            username, password = self.username, self.password
        return RegistryHTTP(
            self.url, username=username, password=password, ssl_context=self.ssl_context()
        )

    # -- configuration ---------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The distribution config this server runs with (before writing it to `config_path`)."""
        listen = f"{self.host}"
        cfg: dict[str, Any] = {
            "version": 0.1,
            # info level logs one JSON line per request, which count_requests() reads
            "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_path)},
                "delete": {"enabled": self.delete_enabled},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": listen, "secret": secrets.token_hex(16)},
        }
        if self.tls:
            cfg["http"]["tls"] = {
                "certificate": str(self.workdir / "server.pem"),
                "key": str(self.workdir / "server-key.pem"),
            }
        if self.username is not None:
            cfg["auth"] = {
                "htpasswd": {"realm": "kuik-test", "path": str(self.workdir / "htpasswd")}
            }
        return deep_merge(cfg, self.extra_config)

    def _prepare(self) -> None:
        """Write the config, TLS material and htpasswd once; restarts reuse them."""
        if self._prepared:
            return
        self.storage_path.mkdir(parents=True, exist_ok=True)
        if self.tls:
            import trustme  # dev-only dependency

            ca = trustme.CA()
            names = [self.address, "localhost"] if self.address != "localhost" else ["localhost"]
            cert = ca.issue_cert(*names)
            ca.cert_pem.write_to_path(str(self.ca_file))
            self.cert_dir.mkdir()
            ca.cert_pem.write_to_path(str(self.cert_dir / "ca.crt"))
            cert.private_key_pem.write_to_path(str(self.workdir / "server-key.pem"))
            with (self.workdir / "server.pem").open("wb") as out:
                for blob in cert.cert_chain_pems:
                    out.write(blob.bytes())
        if self.username is not None and self.password is not None:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(htpasswd_line(self.username, self.password) + "\n")
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self._prepared = True

    # -- lifecycle -------------------------------------------------------------------------------

    def command(self) -> list[str]:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed: run `make install`")
        return [binary, "serve", str(self.config_path)]

    def start(self, timeout: float = 10.0) -> RegistryServer:
        if self.running:
            return self
        self._prepare()
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self._wait_ready(began + timeout)
        except Exception:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"docker-registry on {self.host} did not start:\n{tail}") from None
        self.start_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, deadline: float) -> None:
        """Until `/v2/` answers any HTTP status (401 counts: the server is up)."""
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError("docker-registry exited")
            try:
                with self.client() as client:
                    client.request("GET", "/v2/", bearer=False)
                return
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def cleanup(self) -> None:
        self.thaw()
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- request log -----------------------------------------------------------------------------

    def log_offset(self) -> int:
        """A mark in the log: pass it as `since=` to see only the requests made after it."""
        self._sync_log()
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def requests(self, *, since: int = 0) -> list[RegistryRequest]:
        """Every request the registry logged (after `since`), oldest first.

        A running registry writes a request's line just after answering it, so this first sends a
        marker request and waits for its line: everything answered before is then in the log.
        """
        self._sync_log()
        return [r for r in self._read_log(since) if _LOG_SYNC_QUERY not in r.path]

    def count_requests(
        self, method: str | None = None, path: str | None = None, *, since: int = 0
    ) -> int:
        """How many logged requests match `method` (exact) and `path` (regex searched in the URI).

        Example: blob uploads = `count_requests("PUT", r"/blobs/uploads/")`.
        """
        pattern = re.compile(path) if path is not None else None
        return sum(
            1
            for r in self.requests(since=since)
            if (method is None or r.method == method)
            and (pattern is None or pattern.search(r.path))
        )

    def _read_log(self, since: int) -> Iterator[RegistryRequest]:
        if not self.log_path.exists():
            return
        with self.log_path.open("rb") as log:
            log.seek(since)
            for line in log:
                if not line.startswith(b"{") or b"http.request.method" not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                # each request ends with exactly one of these two lines
                msg = str(entry.get("msg", ""))
                if msg.startswith("response completed"):
                    status = int(entry.get("http.response.status", 0))
                elif msg.startswith("error authorizing context"):
                    status = 401  # rejected by the auth middleware before any handler ran
                else:
                    continue
                yield RegistryRequest(
                    method=entry["http.request.method"],
                    path=entry["http.request.uri"],
                    status=status,
                    repository=entry.get("vars.name"),
                    user_agent=entry.get("http.request.useragent", ""),
                    arrived=_arrival(entry),
                )

    def _sync_log(self, timeout: float = 5.0) -> None:
        if not self.running:
            return  # a stopped process has written everything
        marker = f"{_LOG_SYNC_QUERY}={secrets.token_hex(8)}"
        start = self.log_path.stat().st_size
        with self.client() as client:
            client.request("GET", f"/v2/?{marker}", bearer=False)
        needle = marker.encode()
        deadline = time.monotonic() + timeout
        with self.log_path.open("rb") as log:
            while True:
                log.seek(start)
                if needle in log.read():
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"registry {self.host} did not log request {marker}")
                time.sleep(0.005)
