"""Availability checks with upstream's statuses and error texts (§6.3 of the behaviour notes).

The classification is a pure function over the error (`classify`), so the webhook and the
monitor share one mapping; `check` adds the requests: the manifest HEAD/GET, and with
`resolve_digest` the by-digest re-request that catches stale pull-through caches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from kuikcore.names import AvailabilityStatus
from kuikcore.reference import Reference
from kuikcore.registry.auth import Credentials, credential_attempts
from kuikcore.registry.client import RegistryClient, as_reference
from kuikcore.registry.errors import (
    InvalidAuth,
    NotFound,
    QuotaExceeded,
    RegistryError,
    is_rate_limited,
)
from kuikcore.registry.transport import Deadline

__all__ = ["CheckResult", "check", "classify"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: AvailabilityStatus
    error: str | None = None
    digest: str | None = None  # what the tag resolved to, when the registry said
    retry_after: float | None = None  # seconds, for QuotaExceeded when the registry said

    @property
    def available(self) -> bool:
        return self.status is AvailabilityStatus.AVAILABLE


def classify(error: RegistryError) -> CheckResult:
    """Upstream's `availabilityFromError`: status and the prefixed error text."""
    if isinstance(error, QuotaExceeded):
        return CheckResult(
            AvailabilityStatus.QUOTA_EXCEEDED,
            f"rate limit exceeded: {error}",
            retry_after=error.retry_after,
        )
    if isinstance(error, NotFound):
        return CheckResult(AvailabilityStatus.NOT_FOUND, f"image not found: {error}")
    if isinstance(error, InvalidAuth):
        return CheckResult(AvailabilityStatus.INVALID_AUTH, f"authentication failed: {error}")
    return CheckResult(AvailabilityStatus.UNREACHABLE, f"registry unreachable: {error}")


async def check(
    client: RegistryClient,
    ref: Reference | str,
    *,
    method: Literal["HEAD", "GET"] = "HEAD",
    timeout: float | timedelta | None = None,  # noqa: ASYNC109 (becomes the Deadline)
    credentials: Sequence[Credentials] | Credentials | None = None,
    resolve_digest: bool = False,
) -> CheckResult:
    """Is `ref` pullable? One deadline (`timeout`) covers every request of the check.

    Matching credentials are tried in turn while the answer could be theirs (401/403, or a
    404 that a registry hiding private repositories gives); the last answer is reported.
    """
    if method not in ("HEAD", "GET"):
        raise ValueError(f"invalid check method {method!r}: expected HEAD or GET")
    ref = as_reference(ref)
    deadline = Deadline.after(timeout)
    result = CheckResult(AvailabilityStatus.UNREACHABLE, "registry unreachable: no attempt")
    for creds in credential_attempts(credentials):
        result = await _check_once(client, ref, method, creds, resolve_digest, deadline)
        if result.status not in (AvailabilityStatus.INVALID_AUTH, AvailabilityStatus.NOT_FOUND):
            break
    return result


async def _check_once(
    client: RegistryClient,
    ref: Reference,
    method: Literal["HEAD", "GET"],
    credentials: Credentials | None,
    resolve_digest: bool,
    deadline: Deadline,
) -> CheckResult:
    try:
        info, _ = await client.read_manifest(
            ref, method=method, credentials=credentials, deadline=deadline
        )
    except RegistryError as error:
        return classify(error)
    if is_rate_limited(info.headers):
        return CheckResult(AvailabilityStatus.QUOTA_EXCEEDED, "rate limit exceeded")
    if not resolve_digest or ref.is_digest_pinned or info.digest is None:
        return CheckResult(AvailabilityStatus.AVAILABLE, digest=info.digest)

    by_digest = ref.without_tag().with_digest(info.digest)
    try:
        second, _ = await client.read_manifest(
            by_digest, method=method, credentials=credentials, deadline=deadline
        )
    except NotFound as error:
        return CheckResult(
            AvailabilityStatus.NOT_FOUND,
            f"tag/digest inconsistency: {json.dumps(str(ref))} resolves to digest {info.digest} "
            "but the registry does not serve that manifest by digest, pulls from this registry "
            f"will fail on any node that does not already have the image: {error}",
            digest=info.digest,
        )
    except RegistryError as error:
        if error.status in (405, 501):
            # the tag resolved; a HEAD-only refusal does not stop a pull (runtimes GET by
            # digest), a GET refusal does
            if method == "HEAD":
                return CheckResult(AvailabilityStatus.AVAILABLE, digest=info.digest)
            return CheckResult(
                AvailabilityStatus.UNREACHABLE,
                f"registry unreachable: {error}",
                digest=info.digest,
            )
        return classify(error)
    if is_rate_limited(second.headers):
        return CheckResult(AvailabilityStatus.QUOTA_EXCEEDED, "rate limit exceeded")
    return CheckResult(AvailabilityStatus.AVAILABLE, digest=info.digest)
