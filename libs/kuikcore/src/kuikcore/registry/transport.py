"""HTTP to registries: one pooled aiohttp session per host, TLS options, auth, retries, deadlines.

Everything below the distribution API lives here, so the API code (`client`) only says which
path to request with which scope. Errors leave this module classified (`errors`), with the
registry's own message and never a credential.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import ssl
import time
import urllib.request
from collections.abc import AsyncIterable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, Protocol

import aiohttp
from yarl import URL

from kuikcore.reference import DEFAULT_DOMAIN, DOCKER_HUB_API_HOST, LEGACY_DEFAULT_DOMAIN
from kuikcore.registry.auth import Challenge, Credentials, TokenCache, parse_challenges
from kuikcore.registry.errors import (
    InvalidAuth,
    QuotaExceeded,
    RegistryError,
    Unreachable,
    error_from_response,
    is_rate_limited,
    parse_error_body,
)

__all__ = [
    "RETRY_STATUSES",
    "CloudHook",
    "Deadline",
    "Pool",
    "RegistryTLS",
    "RetryPolicy",
    "TLSLookup",
    "Transport",
    "api_host",
    "env_proxy",
    "is_loopback",
    "parse_retry_after",
]

# upstream's list (408, 5xx and the proxies' 499/522); 429 is handled apart (Retry-After)
RETRY_STATUSES: Final = frozenset({408, 499, 500, 502, 503, 504, 522})
_MAX_ERROR_BODY: Final = 64 * 1024
# socket reads land in a buffer of this size: aiohttp's 64 KiB default pauses and resumes
# the transport for every few chunks of a blob stream
READ_BUFSIZE = 1024 * 1024


Proxy = tuple[URL | None, dict[str, str] | None]  # (proxy URL, Proxy-Authorization header)


def env_proxy(scheme: str, host: str) -> Proxy:
    """The proxy `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` name for a URL, with its credentials split off.

    aiohttp's `trust_env` re-reads the environment and `~/.netrc` in a worker thread on every
    request (~7 % of a replicator's CPU in a 50-image burst); the environment does not change
    under a running process, so the transport asks once per scheme and host. As in aiohttp,
    only `http://` proxies are supported (an `https://` one is ignored with a warning).
    """
    if urllib.request.proxy_bypass(host):
        return None, None
    raw = urllib.request.getproxies().get(scheme)
    if not raw:
        return None, None
    proxy = URL(raw)
    if proxy.scheme != "http":
        log().warning("only http:// proxies are supported, ignoring it", proxy=str(proxy.origin()))
        return None, None
    if not proxy.user:
        return proxy, None
    header = aiohttp.encode_basic_auth(proxy.user, proxy.password or "")
    return proxy.with_user(None), {"Proxy-Authorization": header}


def log() -> Any:
    """The registry client's logger; structlog is imported on first use (~90 ms of CLI start-up)."""
    import structlog

    return structlog.get_logger("kuikcore.registry")


def api_host(host: str) -> str:
    """Where a registry's API is served: Docker Hub answers on `registry-1.docker.io`."""
    return DOCKER_HUB_API_HOST if host in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN) else host


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or `[::1]`, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class RegistryTLS:
    """How to reach one registry host (operator config `registries.<host>`)."""

    insecure: bool = False  # plain HTTP
    skip_verify: bool = False  # HTTPS without certificate verification
    ca_file: str | None = None  # extra CA bundle for this host

    @property
    def explicit_tls(self) -> bool:
        return self.skip_verify or self.ca_file is not None


TLSLookup = Callable[[str], RegistryTLS | None]


class CloudHook(Protocol):
    """Credentials from the service's cloud workload identity for the hosts opted in.

    `kuikcore.registry.cloud.CloudAuth` is the one implementation; the transport asks it only
    when a request carries no credentials of its own (pull secrets keep precedence).
    """

    def covers(self, host: str) -> bool: ...

    async def credentials(
        self, transport: Transport, host: str, challenge: Challenge, deadline: Deadline
    ) -> Credentials: ...

    def invalidate(self, host: str) -> None: ...

    async def ensure_repository(self, host: str, repository: str, deadline: Deadline) -> bool: ...


Pool = Literal["api", "download", "probe"]


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point in (monotonic) time that a whole operation must finish by."""

    at: float | None  # None: no deadline

    @classmethod
    def after(cls, timeout: float | timedelta | None) -> Deadline:
        if timeout is None:
            return cls(None)
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if seconds <= 0:
            return cls(None)  # upstream: a zero timeout means "no timeout"
        return cls(time.monotonic() + seconds)

    @classmethod
    def never(cls) -> Deadline:
        return cls(None)

    def remaining(self) -> float | None:
        if self.at is None:
            return None
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def allows(self, seconds: float) -> bool:
        remaining = self.remaining()
        return remaining is None or seconds < remaining


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Jittered exponential back-off for 408/5xx/connection resets; 429 waits its Retry-After."""

    attempts: int = 4
    base: float = 0.2
    cap: float = 5.0
    max_retry_after: float = 60.0  # without a deadline, never wait longer than this for a 429

    def delay(self, attempt: int) -> float:
        backoff: float = min(self.cap, self.base * 2.0**attempt)
        return backoff * random.uniform(0.5, 1.5)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


Body = bytes | AsyncIterable[bytes] | None


@dataclass
class Transport:
    """Sessions, auth state and retry loop shared by every request kuik makes."""

    tls: TLSLookup = field(default=lambda host: None)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connections_per_host: int = 16
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # a stalled body without a deadline fails after this much silence
    user_agent: str = "kuik"
    tokens: TokenCache = field(default_factory=TokenCache)
    _sessions: dict[tuple[str, str], aiohttp.ClientSession] = field(default_factory=dict)
    _schemes: dict[str, str] = field(default_factory=dict)
    _challenges: dict[str, Challenge] = field(default_factory=dict)
    _scheme_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _proxies: dict[tuple[str, str], Proxy] = field(default_factory=dict)
    on_unreachable: Callable[[str, str], None] | None = None
    """Told (registry host, error) of every connection-level failure: passive health detection."""
    cloud: CloudHook | None = None
    """Workload-identity credentials for opted-in hosts (`kuikcore.registry.cloud`)."""

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()

    # --- sessions and schemes ---------------------------------------------------------------

    def _options(self, host: str) -> RegistryTLS:
        return self.tls(host) or RegistryTLS()

    def _ssl(self, host: str) -> ssl.SSLContext | bool:
        options = self._options(host)
        if options.skip_verify:
            return False
        if options.ca_file:
            context = ssl.create_default_context()
            context.load_verify_locations(cafile=options.ca_file)
            return context
        return True

    def session(self, host: str, pool: Pool = "api") -> aiohttp.ClientSession:
        """The pooled session for `host`; blob downloads get a pool of their own.

        A copy holds a download open while its upload runs: with one pool per host, a copy
        within one registry could fill every connection with downloads whose uploads then wait
        forever for a free one.
        """
        session = self._sessions.get((host, pool))
        if session is None or session.closed:
            # probes get a small pool of their own: busy copies must never delay them into a
            # timeout that would read as "down"
            limit = 2 if pool == "probe" else self.connections_per_host
            connector = aiohttp.TCPConnector(
                limit=limit,
                limit_per_host=limit,
                ssl=self._ssl(host),
                keepalive_timeout=30,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                headers={"User-Agent": self.user_agent},
                trust_env=False,  # proxies: `_via_proxy`, read once per scheme and host
                read_bufsize=READ_BUFSIZE,
            )
            self._sessions[(host, pool)] = session
        return session

    def _via_proxy(self, url: URL, headers: dict[str, str]) -> Proxy:
        """(proxy, proxy_headers) for a request to `url`; (None, None) goes direct.

        Over plain HTTP the proxy reads the request itself, so its `Proxy-Authorization` joins
        `headers` (aiohttp sends `proxy_headers` only on an HTTPS tunnel's CONNECT).
        """
        key = (url.scheme, url.host or "")
        found = self._proxies.get(key)
        if found is None:
            found = self._proxies[key] = env_proxy(*key)
        proxy, auth = found
        if auth is not None and url.scheme == "http":
            headers.update(auth)
            return proxy, None
        return proxy, auth

    async def base_url(self, host: str, deadline: Deadline) -> str:
        """`https://host`, or `http://host` when configured insecure or a loopback plain-HTTP host."""
        scheme = self._schemes.get(host)
        if scheme is not None:
            return f"{scheme}://{host}"
        options = self._options(host)
        if options.insecure:
            scheme = "http"
        elif options.explicit_tls or not is_loopback(host):
            scheme = "https"
        else:
            lock = self._scheme_locks.setdefault(host, asyncio.Lock())
            async with lock:
                scheme = self._schemes.get(host) or await self._probe_scheme(host, deadline)
        self._schemes[host] = scheme
        return f"{scheme}://{host}"

    async def _probe_scheme(self, host: str, deadline: Deadline) -> str:
        """Loopback without config: HTTPS if it speaks TLS, else plain HTTP (as docker does)."""
        try:
            await self._get_v2(host, f"https://{host}", deadline, "api")
            return "https"
        except aiohttp.ClientConnectorCertificateError:
            return "https"  # it speaks TLS; the certificate error will surface on use
        except aiohttp.ClientSSLError:
            return "http"
        except (aiohttp.ClientError, TimeoutError) as exc:
            if _looks_like_plain_http(exc):
                return "http"
            raise _network_error("GET", host, "/v2/", exc, deadline) from exc

    def _timeout(self, deadline: Deadline) -> aiohttp.ClientTimeout:
        remaining = deadline.remaining()
        if remaining is not None and remaining <= 0:
            raise TimeoutError
        connect = (
            self.connect_timeout if remaining is None else min(self.connect_timeout, remaining)
        )
        return aiohttp.ClientTimeout(
            total=remaining, sock_connect=connect, sock_read=self.read_timeout
        )

    # --- auth ---------------------------------------------------------------------------------

    def _from_cloud(self, host: str, credentials: Credentials | None) -> bool:
        return credentials is None and self.cloud is not None and self.cloud.covers(host)

    async def _authorization(
        self,
        host: str,
        scopes: tuple[str, ...],
        credentials: Credentials | None,
        deadline: Deadline,
    ) -> tuple[str | None, str]:
        """The `Authorization` header for a request, and whose it is (the token cache's key)."""
        challenge = self._challenges.get(host)
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            return None, "anonymous"
        cloud = self._from_cloud(host, credentials)
        if cloud:
            assert self.cloud is not None
            credentials = await self.cloud.credentials(self, host, challenge, deadline)
        who = credentials.fingerprint if credentials else "anonymous"
        if challenge.scheme == "basic":
            return (credentials.basic_header() if credentials else None), who
        if not scopes and challenge.params.get("scope"):
            scopes = tuple(challenge.params["scope"].split(" "))
        token = self.tokens.get(host, who, scopes)
        if token is None:
            try:
                token, expires_in = await self._fetch_token(
                    host, challenge, scopes, credentials, deadline
                )
            except InvalidAuth:
                if cloud:
                    assert self.cloud is not None
                    self.cloud.invalidate(host)  # refused: the next request exchanges anew
                raise
            self.tokens.put(host, who, scopes, token, expires_in)
        return f"Bearer {token}", who

    async def post_form(
        self, host: str, url: str, form: Mapping[str, str], deadline: Deadline
    ) -> dict[str, Any]:
        """POST a form to a registry's own auth endpoint (ACR's `/oauth2/exchange`): its JSON.

        Same session, TLS options and proxy as the registry's API; the form holds secrets, so
        no message ever shows it or the answer.
        """
        target = URL(url)
        what = f"POST {target.with_query(None)}"
        return await self._auth_request(
            "POST", host, target, {}, dict(form), what, "identity refused", deadline
        )

    async def _auth_request(
        self,
        method: str,
        host: str,
        url: URL,
        headers: dict[str, str],
        form: dict[str, str] | None,
        what: str,
        refused: str,
        deadline: Deadline,
    ) -> dict[str, Any]:
        """One request to a token service (the realm, ACR's exchange): its JSON object answer.

        401/403 is `InvalidAuth` saying `refused`; messages show no query, form or answer.
        """
        try:
            proxy, proxy_headers = self._via_proxy(url, headers)
            async with self.session(host).request(
                method,
                url,
                data=form,
                headers=headers,
                timeout=self._timeout(deadline),
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as response:
                body = await response.content.read(_MAX_ERROR_BODY)
                if response.status in (401, 403):
                    raise InvalidAuth(
                        f"{what}: HTTP {response.status} ({refused})",
                        status=response.status,
                        details=parse_error_body(body),
                    )
                if response.status != 200:
                    raise error_from_response(response.status, what, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _network_error(method, str(url.host), url.path, exc, deadline) from exc
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise InvalidAuth(f"{what}: answer is not JSON") from exc
        if not isinstance(doc, dict):
            raise InvalidAuth(f"{what}: answer is not a JSON object")
        return doc

    async def _fetch_token(
        self,
        host: str,
        challenge: Challenge,
        scopes: tuple[str, ...],
        credentials: Credentials | None,
        deadline: Deadline,
    ) -> tuple[str, float]:
        realm = challenge.realm
        if not realm:
            raise InvalidAuth(f"registry {host}: bearer challenge without a realm")
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query.extend(("scope", s) for s in scopes)
        headers = {"Authorization": credentials.basic_header()} if credentials else {}
        url = URL(realm).extend_query(query)
        what = f"token request to {URL(realm).with_query(None)}"
        refused = "credentials refused by the token service"
        doc = await self._auth_request("GET", host, url, headers, None, what, refused, deadline)
        token = doc.get("token") or doc.get("access_token")
        try:
            expires_in = float(doc.get("expires_in") or 0)
        except (ValueError, TypeError) as exc:
            raise InvalidAuth(f"{what}: answer is not a token document") from exc
        if not isinstance(token, str) or not token:
            raise InvalidAuth(f"{what}: answer holds no token")
        return token, expires_in

    # --- health ---------------------------------------------------------------------------------

    async def ping(self, host: str, within: float) -> int:
        """`GET /v2/` once, no auth, no retry, on the probe pool: the HTTP status it answered.

        Raises `Unreachable` when nothing answered within `within` seconds (refused, reset, DNS,
        TLS, silence). Any status is an answer; what it means is the caller's to say."""
        deadline = Deadline.after(within)
        registry, host = host, api_host(host)
        try:
            async with asyncio.timeout(within):  # also bounds a wait for another's scheme probe
                return await self._ping(host, deadline)
        except Unreachable:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _network_error("GET", registry, "/v2/", exc, deadline) from exc

    async def _ping(self, host: str, deadline: Deadline) -> int:
        return await self._get_v2(host, await self.base_url(host, deadline), deadline, "probe")

    async def _get_v2(self, host: str, base: str, deadline: Deadline, pool: Pool) -> int:
        """`GET <base>/v2/` without auth or retry; the status (the body is read and dropped)."""
        url = URL(base + "/v2/", encoded=True)
        headers: dict[str, str] = {}
        proxy, proxy_headers = self._via_proxy(url, headers)
        async with self.session(host, pool).get(
            url,
            headers=headers,
            timeout=self._timeout(deadline),
            allow_redirects=False,
            proxy=proxy,
            proxy_headers=proxy_headers,
        ) as response:
            await response.content.read(_MAX_ERROR_BODY)
            return response.status

    def _passive(self, host: str, exc: BaseException, error: Unreachable) -> None:
        if self.on_unreachable is not None and _connection_failure(exc):
            try:
                self.on_unreachable(host, str(error))
            except Exception:  # a listener's bug must not change what the request raises
                log().exception("health listener failed", registry=host)

    # --- the request loop -------------------------------------------------------------------

    async def request(
        self,
        method: str,
        host: str,
        path_or_url: str,
        *,
        scopes: tuple[str, ...] = (),
        credentials: Credentials | None = None,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ok: frozenset[int] = frozenset({200}),
        deadline: Deadline | None = None,
        allow_redirects: bool = True,
        pool: Pool = "api",
    ) -> aiohttp.ClientResponse:
        """Send one API request; return the response (caller reads and releases it) or raise.

        `path_or_url` is an API path (`/v2/...`) or an absolute URL the registry gave us
        (upload locations). A streamed `body` is sent once (not replayable): auth must be
        settled by an earlier request, which is how uploads work anyway (POST before PUT).
        """
        deadline = deadline or Deadline.never()
        registry, host = host, api_host(host)
        replayable = body is None or isinstance(body, bytes)
        attempt = 0
        authenticated_retry = False
        who = "anonymous"
        authorization: str | None = None
        while True:
            try:
                base = await self.base_url(host, deadline)
                url = (
                    URL(path_or_url, encoded=True)
                    if path_or_url.startswith(("http://", "https://"))
                    else URL(base + path_or_url, encoded=True)
                )
                send_headers = dict(headers or {})
                authorization, who = await self._authorization(host, scopes, credentials, deadline)
                if authorization:
                    send_headers["Authorization"] = authorization
                proxy, proxy_headers = self._via_proxy(url, send_headers)
                response = await self.session(host, pool).request(
                    method,
                    url,
                    headers=send_headers,
                    data=body,
                    timeout=self._timeout(deadline),
                    allow_redirects=allow_redirects,
                    proxy=proxy,
                    proxy_headers=proxy_headers,
                )
            except RegistryError:
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = _network_error(method, host, _path(path_or_url), exc, deadline)
                self._passive(registry, exc, error)
                if replayable and _retryable_exception(exc) and attempt + 1 < self.retry.attempts:
                    delay = self.retry.delay(attempt)
                    if deadline.allows(delay):
                        attempt += 1
                        await asyncio.sleep(delay)
                        continue
                raise error from exc

            if response.status in ok:
                return response

            what = f"{method} {host}{_path(path_or_url)}"
            error_body = b""
            if method != "HEAD":
                error_body = await response.content.read(_MAX_ERROR_BODY)
            response.release()
            status = response.status

            if status == 401 and authorization and self._from_cloud(host, credentials):
                assert self.cloud is not None
                self.cloud.invalidate(host)  # refused (revoked, expired early): exchange anew
            if status == 401 and not authenticated_retry:
                challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
                usable = [c for c in challenges if c.scheme in ("bearer", "basic")]
                known = self._challenges.get(host)
                if usable and (known is None or known != usable[0] or known.scheme == "bearer"):
                    # learnt (or re-learnt: token expired or scope widened): authenticate and retry
                    self._challenges[host] = usable[0]
                    authenticated_retry = True
                    if usable[0].scheme == "bearer":
                        self.tokens.drop(host, who, scopes)
                    if replayable:
                        continue
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if status == 429 or (status >= 400 and is_rate_limited(response.headers)):
                classified = error_from_response(status, what, error_body, retry_after=retry_after)
                quota = classified
                if not isinstance(quota, QuotaExceeded):
                    quota = QuotaExceeded(
                        f"{classified.message} (rate limit exceeded)",
                        status=status,
                        details=classified.details,
                        retry_after=retry_after,
                    )
                wait = retry_after
                limit = self.retry.max_retry_after if deadline.at is None else None
                if (
                    replayable
                    and wait is not None
                    and attempt + 1 < self.retry.attempts
                    and deadline.allows(wait)
                    and (limit is None or wait <= limit)
                ):
                    attempt += 1
                    await asyncio.sleep(wait)
                    continue
                raise quota
            failure = error_from_response(status, what, error_body)
            if replayable and status in RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                delay = self.retry.delay(attempt)
                if deadline.allows(delay):
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
            raise failure


def _path(path_or_url: str) -> str:
    """The path of a request for messages: no query (upload state, tokens) ever shown."""
    if path_or_url.startswith(("http://", "https://")):
        return URL(path_or_url, encoded=True).path
    return path_or_url.split("?")[0]


def _retryable_exception(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return False  # the deadline (or a stalled read) is spent: do not pay it again
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorDNSError):
        return False  # deterministic
    return isinstance(
        exc,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientConnectionResetError
        | aiohttp.ClientOSError
        | aiohttp.ClientPayloadError,
    )


def _connection_failure(exc: BaseException) -> bool:
    """Failures that say the registry itself is gone. Not timeouts: silence may be our own
    deadline or a stalled process, and the prober judges silence (two in a row)."""
    return isinstance(
        exc,
        aiohttp.ClientConnectorError  # refused, DNS, TLS handshake, certificate
        | aiohttp.ServerDisconnectedError
        | aiohttp.ClientConnectionResetError
        | aiohttp.ClientSSLError,
    )


def _looks_like_plain_http(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "wrong version number" in text or "record layer" in text or "ssl" in text


def _network_error(
    method: str, host: str, path: str, exc: BaseException, deadline: Deadline
) -> Unreachable:
    where = f"{method} {host}{path}"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        if deadline.at is not None and deadline.expired():
            return Unreachable(f"{where}: deadline exceeded", timed_out=True)
        return Unreachable(f"{where}: timed out ({type(exc).__name__})", timed_out=True)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return Unreachable(
            f"{where}: TLS certificate verification failed ({exc.certificate_error})"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return Unreachable(f"{where}: TLS error ({exc})")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Unreachable(f"{where}: DNS lookup failed ({exc.os_error})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Unreachable(f"{where}: connection failed ({exc.os_error})")
    return Unreachable(f"{where}: {type(exc).__name__}: {exc}")
