"""One availability check of one image, exactly upstream's `performCheck` (§1.11 step 4, §6.3).

Credentials: the pull secrets of the first Pod referencing the image (current or original) with
a usable secret (a missing one is skipped, as the kubelet does), else the registry's
`fallbackCredentialSecret`, else anonymous (`kuikcore.credentials`). When a secret could not be
read, the status is `UnavailableSecret` with upstream's `lastError` text, and the check still runs
with what is left: its result replaces that status unless it is `InvalidAuth` (an unreadable
secret explains a refusal better than the refusal does). The request itself is `kuikcore.registry.check` with the registry's `method`,
`timeout` and `resolveDigest`, which gives the seven statuses and upstream's error prefixes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kuikcore import registry
from kuikcore.api import AvailabilityStatus
from kuikcore.config import RegistryMonitoring
from kuikcore.credentials import CredentialChoice, SecretReader, resolve_credentials
from kuikcore.registry import CheckResult, RegistryClient
from kuikcore.routing import SecretRef

__all__ = ["Checker", "Outcome", "outcome_of"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one check concluded, ready for the status, the board and the events."""

    image: str
    status: AvailabilityStatus
    error: str | None
    checked_at: datetime
    digest: str | None = None
    retry_after: float | None = None
    """Seconds the registry asked us to wait (QuotaExceeded with `Retry-After`)."""
    reachable: bool = True
    """The registry answered at all (everything but `Unreachable`): the host's health."""
    credentials: str = "anonymous"
    """Where the credentials came from (`pod ns/name`, `fallback`, `anonymous`), for logs."""


def outcome_of(
    image: str, choice: CredentialChoice, result: CheckResult, checked_at: datetime
) -> Outcome:
    """Fold the credential choice and the registry's answer into upstream's status (pure)."""
    status, error = result.status, result.error
    if choice.unavailable is not None and status is AvailabilityStatus.INVALID_AUTH:
        status, error = AvailabilityStatus.UNAVAILABLE_SECRET, choice.unavailable
    if status is AvailabilityStatus.AVAILABLE:
        error = None
    return Outcome(
        image=image,
        status=status,
        error=error,
        checked_at=checked_at,
        digest=result.digest,
        retry_after=result.retry_after,
        reachable=result.status is not AvailabilityStatus.UNREACHABLE,
        credentials=choice.source,
    )


def _fallback(config: RegistryMonitoring) -> SecretRef | None:
    ref = config.fallback_credential_secret
    return None if ref is None else SecretRef(name=ref.name, namespace=ref.namespace)


@dataclass
class Checker:
    """Checks images with a shared registry client; Pods and Secrets come from the cluster."""

    client: RegistryClient
    secrets: SecretReader
    pods_using: Callable[[str], Iterable[Mapping[str, Any]]]
    """Pods referencing an image, current or original (`store.pods_by_image`)."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def credentials(self, image: str, config: RegistryMonitoring) -> CredentialChoice:
        """Step one (may read Secrets): which credentials the check will use."""
        return await resolve_credentials(self.secrets, self.pods_using(image), _fallback(config))

    async def check(
        self, image: str, config: RegistryMonitoring, choice: CredentialChoice | None = None
    ) -> Outcome:
        """Step two: the registry request(s). Pass `choice` from `credentials` to split the two
        (the monitor spends its budget in between, right before the request goes out)."""
        if choice is None:
            choice = await self.credentials(image, config)
        checked_at = self.clock()
        timeout = config.timeout if config.timeout.total_seconds() > 0 else None
        result = await registry.check(
            self.client,
            image,
            method="GET" if config.method == "GET" else "HEAD",
            timeout=timeout,
            credentials=choice.credentials(image),
            resolve_digest=config.resolve_digest_enabled,
        )
        return outcome_of(image, choice, result, checked_at)
