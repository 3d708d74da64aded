"""AdmissionReview (`admission.k8s.io/v1`) in and out, and JSONPatch operations: pure, no I/O.

Only a body that is not an AdmissionReview at all (not UTF-8 JSON, nested deeper than
`MAX_DEPTH`, no `request`, no `uid`) is refused (`MalformedReview`, HTTP 400): everything inside
the request is looked at later, and whatever is wrong there admits the Pod unchanged with a
warning.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "ADMISSION_API_VERSION",
    "MAX_DEPTH",
    "MAX_WARNING_LENGTH",
    "AdmissionRequest",
    "MalformedReview",
    "ResponseTemplate",
    "decode_review",
    "dumps",
    "encode_response",
    "escape_pointer",
]

ADMISSION_API_VERSION = "admission.k8s.io/v1"
MAX_WARNING_LENGTH = 240  # the API server keeps warnings short; longer ones are cut here
_MAX_WARNINGS = 8
MAX_DEPTH = 254
"""Arrays and objects nested deeper than this are refused: a Pod is a few dozen levels deep,
the code after decoding may recurse, and orjson's encoder checks exactly this bound at C speed."""


class MalformedReview(ValueError):
    """The body is not an `admission.k8s.io/v1` AdmissionReview with a request uid."""


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of `request` the webhook reads. `object`/`old_object` are None when absent."""

    uid: str
    operation: str = ""
    namespace: str = ""
    name: str = ""
    resource: str = ""
    sub_resource: str = ""
    kind: str = ""
    dry_run: bool = False
    object: Any = field(default=None, repr=False)
    old_object: Any = field(default=None, repr=False)

    @property
    def is_pod(self) -> bool:
        return self.resource == "pods" and self.kind == "Pod"

    @property
    def is_ephemeral_containers(self) -> bool:
        return self.sub_resource == "ephemeralcontainers"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _group_kind(value: object, key: str) -> str:
    return _text(value.get(key)) if isinstance(value, Mapping) else ""


def _loads(body: bytes | str) -> Any:
    """orjson (several times faster), or the stdlib for what orjson refuses and JSON allows
    (integers beyond 64 bits, NaN, lone surrogate escapes): the same bodies are accepted."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _within_depth(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when `value` nests at most `limit` arrays and objects.

    orjson refuses to encode deeper values, so a successful encode (~4 us for a Pod) proves it;
    only what it cannot encode (too deep, or stdlib-decoded oddities) is walked, iteratively."""
    try:
        orjson.dumps(value)
        return True
    except TypeError:
        pass
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return True


def dumps(value: Any) -> bytes:
    """Compact JSON; the stdlib for what orjson cannot encode (values decoded by the stdlib)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def decode_review(body: bytes | str) -> AdmissionRequest:
    """Parse a request body; raises `MalformedReview` naming what is missing."""
    try:
        review = _loads(body)
    except UnicodeDecodeError as exc:
        raise MalformedReview(f"body is not UTF-8: {exc}") from None
    except ValueError as exc:
        raise MalformedReview(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedReview(f"body nests deeper than {MAX_DEPTH} levels") from None
    if not isinstance(review, dict):
        raise MalformedReview("body is not a JSON object")
    if not _within_depth(review):
        raise MalformedReview(f"body nests deeper than {MAX_DEPTH} levels")
    api_version = review.get("apiVersion")
    if api_version != ADMISSION_API_VERSION:
        raise MalformedReview(
            f"apiVersion must be {ADMISSION_API_VERSION!r}, got {api_version!r} "
            "(register the webhook with admissionReviewVersions: [v1])"
        )
    if review.get("kind") != "AdmissionReview":
        raise MalformedReview(f"kind must be 'AdmissionReview', got {review.get('kind')!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("request is missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing or not a string")
    dry_run = request.get("dryRun")
    return AdmissionRequest(
        uid=uid,
        operation=_text(request.get("operation")),
        namespace=_text(request.get("namespace")),
        name=_text(request.get("name")),
        resource=_group_kind(request.get("resource"), "resource"),
        sub_resource=_text(request.get("subResource")),
        kind=_group_kind(request.get("kind"), "kind"),
        # anything but an explicit false is treated as a dry run: no side effect is the safe side
        dry_run=dry_run is not None and dry_run is not False,
        object=request.get("object"),
        old_object=request.get("oldObject"),
    )


def _clean_warning(text: str) -> str:
    flat = " ".join(text.split())
    printable = "".join(c if c.isprintable() else "?" for c in flat)
    if len(printable) > MAX_WARNING_LENGTH:
        printable = printable[: MAX_WARNING_LENGTH - 3] + "..."
    return printable


_PREFIX = b'{"apiVersion":"%s","kind":"AdmissionReview","response":{"uid":' % (
    ADMISSION_API_VERSION.encode()
)


@dataclass(frozen=True, slots=True)
class ResponseTemplate:
    """An allowing AdmissionReview response for any uid: identical admissions share one."""

    rest: bytes
    """What follows the uid in the encoded review."""

    @classmethod
    def of(
        cls, *, patch: Sequence[Mapping[str, Any]] = (), warnings: Sequence[str] = ()
    ) -> ResponseTemplate:
        """The JSONPatch only when there is something to do; warnings cleaned and capped."""
        rest = b',"allowed":true'
        if patch:
            encoded = base64.b64encode(dumps(list(patch)))
            rest += b',"patchType":"JSONPatch","patch":"' + encoded + b'"'
        cleaned = [_clean_warning(w) for w in warnings if w][:_MAX_WARNINGS]
        if cleaned:
            rest += b',"warnings":' + dumps(cleaned)
        return cls(rest + b"}}")

    def render(self, uid: str) -> bytes:
        return _PREFIX + dumps(uid) + self.rest


def encode_response(
    uid: str,
    *,
    patch: Sequence[Mapping[str, Any]] = (),
    warnings: Sequence[str] = (),
) -> bytes:
    """An allowing AdmissionReview response; the JSONPatch only when there is something to do."""
    return ResponseTemplate.of(patch=patch, warnings=warnings).render(uid)


def escape_pointer(token: str) -> str:
    """One JSON Pointer reference token (RFC 6901): `~` -> `~0`, `/` -> `~1`."""
    return token.replace("~", "~0").replace("/", "~1")
