"""Redis connection settings parsed from one URL, as pure data (no I/O), so every form is unit-tested.

A leaf: the operator config validates `redis.url` with it without loading redis-py, and
`kuikcore.coord` connects with what it returns.

Accepted forms:

- ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://...`` (TLS);
- ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db]`` and
  ``rediss+sentinel://...`` (TLS to the sentinels and to the master).

Query parameters: ``ssl_ca_certs`` (CA bundle path), ``ssl_cert_reqs`` (``required`` or ``none``),
``ssl_check_hostname`` (``true``/``false``), ``socket_timeout`` and ``socket_connect_timeout`` (seconds),
``sentinel_username``, ``sentinel_password``, ``db``. Anything else is refused by name, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["InvalidRedisURL", "RedisSettings", "parse_redis_url", "redact_url"]


class InvalidRedisURL(ValueError):
    """A Redis URL or connection option that cannot work; the message never holds the password."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid Redis URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
_SCHEMES = {
    "redis": (False, False),
    "rediss": (True, False),
    "redis+sentinel": (False, True),
    "rediss+sentinel": (True, True),
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where Redis is and how to talk to it. `password`/`sentinel_password` never appear in repr."""

    hosts: tuple[tuple[str, int], ...]
    tls: bool = False
    sentinel_service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    verify: bool = True
    check_hostname: bool = True
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0

    @property
    def is_sentinel(self) -> bool:
        return self.sentinel_service is not None

    def with_overrides(self, **changes: object) -> RedisSettings:
        """Config keys (`redis.password`, `redis.caFile`, ...) override the URL's parts."""
        given = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **given)  # type: ignore[arg-type]

    def redacted(self) -> str:
        """The URL again, with every secret replaced, fit for logs and errors."""
        scheme = ("rediss" if self.tls else "redis") + ("+sentinel" if self.is_sentinel else "")
        auth = ""
        if self.username or self.password:
            auth = quote(self.username or "", safe="")
            auth += ":***" if self.password else ""
            auth += "@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        path = f"/{self.sentinel_service}/{self.db}" if self.is_sentinel else f"/{self.db}"
        return f"{scheme}://{auth}{hosts}{path}"


def redact_url(url: str) -> str:
    """Hide the password of a Redis URL even when the URL is otherwise invalid."""
    try:
        return parse_redis_url(url).redacted()
    except InvalidRedisURL:
        return _redact_unchecked(url)


def parse_redis_url(url: str) -> RedisSettings:
    """Parse a Redis URL into settings; raise `InvalidRedisURL` naming the broken part."""
    shown = _redact_unchecked(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise InvalidRedisURL(
            shown, f"scheme must be one of {', '.join(sorted(_SCHEMES))}, got {scheme!r}"
        )
    tls, sentinel = _SCHEMES[scheme.lower()]
    location, _, query = rest.partition("?")
    authority, _, path = location.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    default_port = DEFAULT_SENTINEL_PORT if sentinel else DEFAULT_PORT
    hosts = tuple(_parse_host(shown, part, default_port) for part in hostlist.split(","))
    if len(hosts) > 1 and not sentinel:
        raise InvalidRedisURL(shown, "several hosts are only allowed with redis+sentinel://")
    segments = [s for s in path.split("/") if s]
    service: str | None = None
    if sentinel:
        if not segments:
            raise InvalidRedisURL(shown, "a sentinel URL needs the service name as its path")
        service, segments = unquote(segments[0]), segments[1:]
    if len(segments) > 1:
        raise InvalidRedisURL(shown, f"unexpected path {path!r}")
    db = _parse_int(shown, "database number", segments[0]) if segments else 0
    settings = RedisSettings(
        hosts=hosts,
        tls=tls,
        sentinel_service=service,
        db=db,
        username=username,
        password=password,
    )
    return _apply_query(shown, settings, query)


def _redact_unchecked(url: str) -> str:
    """Best-effort redaction for error messages raised while parsing."""
    scheme, sep, rest = url.partition("://")
    location, q, query = rest.partition("?")
    if sep and "@" in location:
        userinfo, _, hosts = location.rpartition("@")
        user = userinfo.partition(":")[0] if ":" in userinfo else ""
        location = f"{user}:***@{hosts}"
    if "password" in query:
        query = "&".join(f"{k}=***" if "password" in k else f"{k}={v}" for k, v in parse_qsl(query))
    return f"{scheme}{sep}{location}{q}{query}"


def _parse_host(shown: str, part: str, default_port: int) -> tuple[str, int]:
    if not part:
        raise InvalidRedisURL(shown, "missing host")
    if part.startswith("["):
        host, bracket, tail = part[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise InvalidRedisURL(shown, f"bad IPv6 host {part!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise InvalidRedisURL(shown, f"missing host in {part!r}")
    port = _parse_int(shown, "port", port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise InvalidRedisURL(shown, f"port {port} out of range 1-65535")
    return host, port


def _parse_int(shown: str, what: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidRedisURL(shown, f"{what} must be an integer, got {text!r}") from None
    if value < 0:
        raise InvalidRedisURL(shown, f"{what} must not be negative, got {value}")
    return value


def _parse_float(shown: str, what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRedisURL(shown, f"{what} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise InvalidRedisURL(shown, f"{what} must be positive, got {text!r}")
    return value


def _parse_bool(shown: str, what: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise InvalidRedisURL(shown, f"{what} must be true or false, got {text!r}")


def _apply_query(shown: str, settings: RedisSettings, query: str) -> RedisSettings:
    changes: dict[str, object] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "ssl_ca_certs":
            changes["ca_file"] = value
        elif name == "ssl_cert_reqs":
            if value.lower() not in {"required", "none"}:
                raise InvalidRedisURL(
                    shown, f"ssl_cert_reqs must be required or none, got {value!r}"
                )
            changes["verify"] = value.lower() == "required"
        elif name == "ssl_check_hostname":
            changes["check_hostname"] = _parse_bool(shown, name, value)
        elif name == "socket_timeout":
            changes["socket_timeout"] = _parse_float(shown, name, value)
        elif name in {"socket_connect_timeout", "connect_timeout"}:
            changes["connect_timeout"] = _parse_float(shown, name, value)
        elif name == "sentinel_username":
            changes["sentinel_username"] = value or None
        elif name == "sentinel_password":
            changes["sentinel_password"] = value or None
        elif name == "db":
            changes["db"] = _parse_int(shown, "database number", value)
        else:
            raise InvalidRedisURL(shown, f"unknown query parameter {name!r}")
    if not settings.tls and any(k in changes for k in ("ca_file", "verify", "check_hostname")):
        raise InvalidRedisURL(shown, "TLS options need a rediss:// URL")
    return replace(settings, **changes)  # type: ignore[arg-type]
