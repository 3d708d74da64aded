"""One error hierarchy for every registry outcome, so callers branch on a class, not on text.

Each error keeps what the registry itself said (HTTP status, the distribution error codes and
messages of the JSON body) and never any credential: messages are built from the URL path and
the registry's answer only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DigestMismatch",
    "InvalidAuth",
    "NotFound",
    "PlatformNotFound",
    "QuotaExceeded",
    "RegistryError",
    "RegistryErrorDetail",
    "Unreachable",
    "UnsupportedManifest",
    "error_from_response",
    "is_rate_limited",
    "parse_error_body",
]


@dataclass(frozen=True, slots=True)
class RegistryErrorDetail:
    """One entry of the distribution spec's `{"errors": [...]}` body."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


class RegistryError(Exception):
    """Any failure talking to a registry.

    `status` is the HTTP status when there was a response (None for network errors);
    `details` the registry's own error codes and messages.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        details: tuple[RegistryErrorDetail, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(d.code for d in self.details)

    def __str__(self) -> str:
        return self.message


class NotFound(RegistryError):
    """The manifest, blob, tag or repository does not exist (404)."""


class InvalidAuth(RegistryError):
    """Credentials missing, wrong or insufficient (401/403, or the token service refused)."""


class QuotaExceeded(RegistryError):
    """Rate limited (429 or `RateLimit-Remaining: 0;...`); `retry_after` in seconds when known."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        details: tuple[RegistryErrorDetail, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, details=details)
        self.retry_after = retry_after


class Unreachable(RegistryError):
    """The registry could not answer: DNS, TCP, TLS, timeout, or a 5xx.

    `timed_out` tells silence (nothing came back in time: the registry, or our own stalled
    process) from a definite failure (refused, reset, TLS, DNS, 5xx)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        details: tuple[RegistryErrorDetail, ...] = (),
        timed_out: bool = False,
    ) -> None:
        super().__init__(message, status=status, details=details)
        self.timed_out = timed_out


class DigestMismatch(RegistryError):
    """Content did not hash to the digest it was asked for (corrupt or tampered transfer)."""


class UnsupportedManifest(RegistryError):
    """A manifest kind kuik cannot copy (e.g. Docker schema 1)."""


class PlatformNotFound(RegistryError):
    """None of the requested platforms is present in the source image."""


def parse_error_body(body: bytes) -> tuple[RegistryErrorDetail, ...]:
    """The distribution `errors` list of a response body; empty when it is not one."""
    if not body:
        return ()
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ()
    details = []
    for item in errors:
        if isinstance(item, dict):
            code = str(item.get("code") or "UNKNOWN")
            message = str(item.get("message") or "")
            details.append(RegistryErrorDetail(code, message))
    return tuple(details)


def is_rate_limited(headers: Mapping[str, str]) -> bool:
    """Docker Hub style `RateLimit-Remaining: 0;w=21600` (checked like upstream: prefix `0;`)."""
    value = headers.get("RateLimit-Remaining") or headers.get("ratelimit-remaining")
    return value is not None and value.strip().startswith("0;")


def error_from_response(
    status: int,
    what: str,
    body: bytes = b"",
    *,
    retry_after: float | None = None,
) -> RegistryError:
    """Classify a non-success HTTP answer; `what` says which request (method and path)."""
    details = parse_error_body(body)
    said = "; ".join(str(d) for d in details)
    message = f"{what}: HTTP {status}" + (f" ({said})" if said else "")
    if status == 404:
        return NotFound(message, status=status, details=details)
    if status in (401, 403):
        return InvalidAuth(message, status=status, details=details)
    if status == 429:
        if retry_after is not None:
            message += f", retry after {retry_after:g}s"
        return QuotaExceeded(message, status=status, details=details, retry_after=retry_after)
    if status >= 500 or status in (408, 499):
        return Unreachable(message, status=status, details=details)
    return RegistryError(message, status=status, details=details)
