"""Which registry credentials to use for an image: the pull secrets of the Pods that reference it.

Shared by the monitor (upstream §1.11 step 4: the first Pod with a usable secret, else the
registry's `fallbackCredentialSecret`, else anonymous) and the replicator (tries each Pod's
secrets in turn until one works). Like the kubelet, a missing or invalid pull secret is skipped
and the Pod's other secrets are still used (upstream drops the whole set, so one stale name in
`imagePullSecrets` leaves the image failing with 401). The selection and the precedence are pure functions over plain
data; reading Secrets goes through any object with `get_secret(namespace, name)` (a
`kuikcore.cluster.ClusterSource`), and secrets are only read as far as the caller needs.

Secret contents never appear in `repr`, messages or errors: only namespaces and names do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from kuikcore.cluster.interface import ClusterError
from kuikcore.registry.auth import Credentials
from kuikcore.registry.keyring import InvalidDockerConfig, Keyring
from kuikcore.routing import SecretRef

__all__ = [
    "FALLBACK",
    "CredentialChoice",
    "CredentialSet",
    "PodSecrets",
    "SecretReader",
    "candidate_pod_secrets",
    "choose_credentials",
    "pull_secret_refs",
    "read_credential_set",
    "read_credential_sets",
    "read_fallback",
    "resolve_credentials",
]

FALLBACK = "fallback"
"""`CredentialSet.source` of the registry's `fallbackCredentialSecret`."""

_READ_ERRORS: tuple[type[Exception], ...] = (
    ClusterError,
    OSError,
    TimeoutError,
    aiohttp.ClientError,
)


class SecretReader(Protocol):
    """Reads one Secret on demand: the dict, None when it does not exist, raises when it cannot."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...


def pull_secret_refs(pod: Mapping[str, Any]) -> tuple[SecretRef, ...]:
    """A Pod's `imagePullSecrets` as references in its namespace, in spec order, duplicates dropped."""
    meta = pod.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    refs: list[SecretRef] = []
    for entry in (pod.get("spec") or {}).get("imagePullSecrets") or ():
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name:
            ref = SecretRef(name=name, namespace=namespace)
            if ref not in refs:
                refs.append(ref)
    return tuple(refs)


@dataclass(frozen=True, slots=True)
class PodSecrets:
    """The pull secrets one Pod names (not read yet)."""

    pod: str
    """`namespace/name` of the Pod."""
    secrets: tuple[SecretRef, ...]


def candidate_pod_secrets(pods: Iterable[Mapping[str, Any]]) -> list[PodSecrets]:
    """The pull-secret lists to try for an image, given the Pods that reference it.

    `pods` are the Pods using the image as a current or original image (e.g.
    `store.pods_by_image(image)`). Pods without pull secrets are left out (they say nothing about
    credentials). The order is stable, by Pod namespace then name, so every replica and every
    run tries the same list first; Pods naming the very same secrets collapse into the first one.
    """
    ordered = sorted(
        pods,
        key=lambda p: (
            str((p.get("metadata") or {}).get("namespace") or "default"),
            str((p.get("metadata") or {}).get("name") or ""),
        ),
    )
    out: list[PodSecrets] = []
    seen: set[tuple[SecretRef, ...]] = set()
    for pod in ordered:
        refs = pull_secret_refs(pod)
        if not refs or refs in seen:
            continue
        seen.add(refs)
        meta = pod.get("metadata") or {}
        out.append(PodSecrets(f"{refs[0].namespace}/{meta.get('name') or ''}", refs))
    return out


@dataclass(frozen=True, slots=True)
class CredentialSet:
    """One candidate set of secrets, read: usable (`readable`) or the reason it is not (`error`).

    `source` is the Pod (`namespace/name`) or `FALLBACK`. A set is readable when at least one of
    its secrets exists, could be read and holds a valid docker config; the others are skipped, as
    the kubelet does, and said in `skipped` (`error` when none was usable).
    """

    source: str
    secrets: tuple[SecretRef, ...]
    error: str | None = None
    keyring: Keyring = field(default_factory=Keyring, repr=False, compare=False)
    skipped: str | None = None
    """Why some secrets of a readable set were left out (`pod ns/name: secret ... not found`)."""

    @property
    def readable(self) -> bool:
        return self.error is None

    def credentials(self, image: str) -> list[Credentials]:
        """Every credential of this set matching `image` (normalised), best first (kubelet rules)."""
        return self.keyring.lookup(image) if self.readable else []


def _describe(ref: SecretRef) -> str:
    return f"{ref.namespace}/{ref.name}"


async def _read_secret(reader: SecretReader, ref: SecretRef) -> tuple[dict[str, Any] | None, str]:
    """The Secret, or None with why it could not be used."""
    try:
        secret = await reader.get_secret(ref.namespace, ref.name)
    except _READ_ERRORS as exc:
        return None, f"secret {_describe(ref)} could not be read: {exc}"
    if secret is None:
        return None, f"secret {_describe(ref)} not found"
    return secret, ""


async def read_credential_set(
    reader: SecretReader, source: str, secrets: Sequence[SecretRef]
) -> CredentialSet:
    """Read every secret of one candidate and build its keyring from the usable ones (never
    raises for a bad secret): one missing secret must not take the others' credentials away."""
    keyring = Keyring()
    problems: list[str] = []
    usable = 0
    for ref in secrets:
        secret, problem = await _read_secret(reader, ref)
        if secret is None:
            problems.append(problem)
            continue
        try:
            keyring.add_secret(secret)
        except InvalidDockerConfig as exc:
            problems.append(str(exc))
            continue
        usable += 1
    why = None
    if problems:
        why = (f"pod {source}: " if source != FALLBACK else "") + "; ".join(problems)
    if usable == 0 and why is not None:
        return CredentialSet(source, tuple(secrets), why, keyring)
    return CredentialSet(source, tuple(secrets), None, keyring, skipped=why)


async def read_credential_sets(
    reader: SecretReader, candidates: Sequence[PodSecrets]
) -> list[CredentialSet]:
    """Read every candidate, in order (the replicator tries each readable one in turn)."""
    return [await read_credential_set(reader, c.pod, c.secrets) for c in candidates]


async def read_fallback(reader: SecretReader, ref: SecretRef) -> CredentialSet:
    """The registry's `fallbackCredentialSecret`, read."""
    return await read_credential_set(reader, FALLBACK, (ref,))


@dataclass(frozen=True, slots=True)
class CredentialChoice:
    """What to check an image with, and whether a secret problem must be reported.

    `chosen` None means anonymous. `unavailable` is upstream's `lastError` text for status
    `UnavailableSecret` (`unavailable secret: …` or `fallback credential secret ns/name not
    found: …`); the check still runs with `chosen`.
    """

    chosen: CredentialSet | None
    unavailable: str | None = None

    def credentials(self, image: str) -> list[Credentials]:
        """Credentials to try for `image`; empty means anonymous."""
        return self.chosen.credentials(image) if self.chosen is not None else []

    @property
    def source(self) -> str:
        """`pod ns/name`, `fallback` or `anonymous` (for logs)."""
        if self.chosen is None:
            return "anonymous"
        return FALLBACK if self.chosen.source == FALLBACK else f"pod {self.chosen.source}"


def choose_credentials(
    pod_sets: Sequence[CredentialSet],
    fallback_ref: SecretRef | None = None,
    fallback: CredentialSet | None = None,
) -> CredentialChoice:
    """Upstream's precedence (§1.11 step 4), pure.

    1. the first readable Pod set (with `unavailable secret: …` when some of its secrets were
       skipped, so a refusal is explained by the missing secret);
    2. else, when the registry has a `fallbackCredentialSecret` (`fallback_ref`): that secret
       (`fallback`, read) if readable, otherwise anonymous with `fallback credential secret
       <ns>/<name> not found: …`;
    3. else anonymous, with `unavailable secret: …` when some Pod's secrets could not be read.
    """
    for candidate in pod_sets:
        if candidate.readable:
            skipped = candidate.skipped
            return CredentialChoice(
                candidate, None if skipped is None else f"unavailable secret: {skipped}"
            )
    if fallback_ref is not None:
        if fallback is not None and fallback.readable:
            return CredentialChoice(fallback)
        reason = fallback.error if fallback is not None else "not read"
        return CredentialChoice(
            None, f"fallback credential secret {_describe(fallback_ref)} not found: {reason}"
        )
    errors = [c.error for c in pod_sets if c.error]
    if errors:
        return CredentialChoice(None, "unavailable secret: " + "; ".join(errors))
    return CredentialChoice(None)


async def resolve_credentials(
    reader: SecretReader,
    pods: Iterable[Mapping[str, Any]],
    fallback_ref: SecretRef | None = None,
) -> CredentialChoice:
    """`choose_credentials` reading only what it needs: Pod sets up to the first readable one,
    then the fallback secret only if no Pod set was readable. `pods` reference the image."""
    read: list[CredentialSet] = []
    for candidate in candidate_pod_secrets(pods):
        credential_set = await read_credential_set(reader, candidate.pod, candidate.secrets)
        read.append(credential_set)
        if credential_set.readable:
            return choose_credentials(read)
    fallback = None
    if fallback_ref is not None:
        fallback = await read_fallback(reader, fallback_ref)
    return choose_credentials(read, fallback_ref, fallback)
