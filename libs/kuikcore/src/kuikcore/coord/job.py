"""Typed job payloads and the envelope that carries them through Redis: pure data, no I/O.

A job is a pydantic model with a `kind` and a payload `version`; it travels as JSON inside an
envelope that adds what the queue needs (de-duplication key, enqueue token, attempt count, last
error). Never pickles: any replica, of any version, can read what another wrote.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from kuikcore.backoff import backoff_delay

__all__ = [
    "ENVELOPE_VERSION",
    "Envelope",
    "Job",
    "JobDecodeError",
    "JobTypes",
    "backoff_delay",
]

#: Version of the envelope layout itself (payload versions are per job kind).
ENVELOPE_VERSION = 1


class Job(BaseModel):
    """Base class of queued work. Subclasses set `kind` (stable name) and bump `version` on
    incompatible payload changes, so an old worker never misreads a new job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = ""
    version: ClassVar[int] = 1

    def job_key(self) -> str:
        """The de-duplication key: two jobs with the same key are one job while it is pending.

        Default: the kind plus a hash of the canonical payload. Override for a shorter, readable key
        (e.g. `copy:<source>-><mirror>`)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return f"{self.kind}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


class JobDecodeError(ValueError):
    """An envelope or payload that this process cannot turn into a job; `retryable` when another
    replica (of another version) might."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Envelope:
    """What one stream entry holds (as JSON in its single field `e`)."""

    kind: str
    version: int
    key: str
    token: str
    payload: Mapping[str, Any]
    enqueued_at_ms: int
    attempt: int = 0
    error: str | None = None

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "kind": self.kind,
                "version": self.version,
                "key": self.key,
                "token": self.token,
                "attempt": self.attempt,
                "enqueued_at_ms": self.enqueued_at_ms,
                "error": self.error,
                "payload": self.payload,
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str) -> Envelope:
        try:
            data = json.loads(text)
            if data.get("v") != ENVELOPE_VERSION:
                raise JobDecodeError(f"envelope version {data.get('v')!r} unknown", retryable=True)
            return cls(
                kind=str(data["kind"]),
                version=int(data["version"]),
                key=str(data["key"]),
                token=str(data["token"]),
                payload=dict(data["payload"]),
                enqueued_at_ms=int(data["enqueued_at_ms"]),
                attempt=int(data["attempt"]),
                error=None if data.get("error") is None else str(data["error"]),
            )
        except JobDecodeError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise JobDecodeError(f"malformed envelope: {exc}", retryable=False) from None

    @classmethod
    def wrap(cls, job: Job, *, token: str, now_ms: int) -> Envelope:
        return cls(
            kind=job.kind,
            version=job.version,
            key=job.job_key(),
            token=token,
            payload=job.model_dump(mode="json"),
            enqueued_at_ms=now_ms,
        )

    def failed(self, error: str, *, count: bool = True) -> Envelope:
        """The envelope for the next try: one more attempt (unless `count` is False), error kept."""
        return replace(self, attempt=self.attempt + (1 if count else 0), error=error)


class JobTypes:
    """The job classes one queue accepts, looked up by (kind, version) when decoding."""

    def __init__(self, types: Iterable[type[Job]]) -> None:
        self._types: dict[tuple[str, int], type[Job]] = {}
        for job_type in types:
            if not job_type.kind:
                raise ValueError(f"job class {job_type.__name__} must set a non-empty `kind`")
            key = (job_type.kind, job_type.version)
            if key in self._types:
                raise ValueError(
                    f"two job classes for kind {job_type.kind!r} version {job_type.version}"
                )
            self._types[key] = job_type

    def __contains__(self, job_type: type[Job]) -> bool:
        return self._types.get((job_type.kind, job_type.version)) is job_type

    def decode(self, envelope: Envelope) -> Job:
        job_type = self._types.get((envelope.kind, envelope.version))
        if job_type is None:
            # another replica, older or newer, may know this kind: let it retry there
            raise JobDecodeError(
                f"no job class for kind {envelope.kind!r} version {envelope.version} here",
                retryable=True,
            )
        try:
            return job_type.model_validate(envelope.payload)
        except ValidationError as exc:
            raise JobDecodeError(
                f"payload of {envelope.kind!r} v{envelope.version} is invalid: {exc}",
                retryable=False,
            ) from None
