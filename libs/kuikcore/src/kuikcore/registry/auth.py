"""Registry authentication: credentials, `WWW-Authenticate` challenges, and the token cache.

Pure data and parsing; the HTTP exchange with a token service lives in `transport`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Challenge",
    "Credentials",
    "TokenCache",
    "credential_attempts",
    "parse_challenges",
    "scope_for",
]


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username/password pair (or an identity token as password). Never printed."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>)"

    __str__ = __repr__

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """`USER:PASS` as on the command line (the password may contain colons)."""
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise ValueError("invalid credentials: expected USER:PASSWORD")
        return cls(user, password)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    @property
    def fingerprint(self) -> str:
        """A stable key for caches that must not hold the secret itself."""
        digest = hashlib.sha256(f"{self.username}\0{self.password}".encode()).hexdigest()
        return digest[:16]


@dataclass(frozen=True, slots=True)
class Challenge:
    """One `WWW-Authenticate` challenge: scheme (lower case) and its parameters."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse RFC 7235 challenges (`Bearer realm="…",service="…",scope="…"`, `Basic realm=…`).

    Tolerant: unknown syntax ends parsing and what was read so far is returned.
    """
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        while pos < len(header) and header[pos] in ", \t":
            pos += 1
        scheme_match = _SCHEME_RE.match(header, pos)
        if scheme_match is None:
            break
        # a scheme is a token NOT followed by "=" (that would be a parameter)
        rest = header[scheme_match.end() :]
        if rest.startswith("="):
            break
        scheme = scheme_match.group(1).lower()
        pos = scheme_match.end()
        params: dict[str, str] = {}
        while True:
            param = _PARAM_RE.match(header, pos)
            if param is None:
                break
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[param.group(1).lower()] = value
            pos = param.end()
            if pos < len(header) and header[pos] == ",":
                pos += 1
            else:
                break
        challenges.append(Challenge(scheme, params))
    return challenges


def scope_for(repository: str, actions: Iterable[str]) -> str:
    """A token scope: `repository:library/nginx:pull,push`."""
    return f"repository:{repository}:{','.join(actions)}"


@dataclass
class _Entry:
    token: str
    expires_at: float


@dataclass
class TokenCache:
    """Bearer tokens per (host, credentials fingerprint, scope) until shortly before expiry.

    A token granted for `pull,push` also serves `pull`, so lookups try the wider scope too.
    """

    clock: Callable[[], float] = time.monotonic
    margin: float = 10.0  # seconds: never hand out a token about to expire mid-request
    _entries: dict[tuple[str, str, str], _Entry] = field(default_factory=dict)

    def get(self, host: str, who: str, scopes: tuple[str, ...]) -> str | None:
        key = (host, who, " ".join(scopes))
        entry = self._entries.get(key)
        if entry is None and all(s.endswith(":pull") for s in scopes):
            wider = " ".join(s + ",push" for s in scopes)
            entry = self._entries.get((host, who, wider))
        if entry is None:
            return None
        if entry.expires_at <= self.clock():
            self._entries.pop(key, None)
            return None
        return entry.token

    def put(
        self, host: str, who: str, scopes: tuple[str, ...], token: str, expires_in: float
    ) -> None:
        # distribution's default lifetime is 60 s when the service does not say
        lifetime = expires_in if expires_in > 0 else 60.0
        usable = lifetime - min(self.margin, lifetime / 2)
        self._entries[(host, who, " ".join(scopes))] = _Entry(token, self.clock() + usable)

    def drop(self, host: str, who: str, scopes: tuple[str, ...]) -> None:
        """Forget a token the registry refused (revoked, or its scope no longer enough)."""
        self._entries.pop((host, who, " ".join(scopes)), None)

    def __len__(self) -> int:
        return len(self._entries)


def credential_attempts(
    credentials: Sequence[Credentials] | Credentials | None,
) -> list[Credentials | None]:
    """Each credential in turn; anonymous when there is none (upstream's default keychain)."""
    if credentials is None:
        return [None]
    if isinstance(credentials, Credentials):
        return [credentials]
    return list(credentials) or [None]
