"""Names kuik shares with the cluster: API group, annotations, labels, finalizers.

Kept in one module so the webhook, replicator, monitor and CLI spell each name once,
exactly as upstream kuik v2 does (so existing clusters keep working).
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

__all__ = [
    "API_VERSION",
    "CONFIG_MIRROR_ANNOTATION",
    "GROUP",
    "MIRROR_CLEANUP_FINALIZER",
    "MODE_LABEL",
    "ORIGINAL_IMAGES_ANNOTATION",
    "OWNER_GROUP_LABEL",
    "OWNER_KIND_LABEL",
    "OWNER_NAME_LABEL",
    "OWNER_UID_LABEL",
    "OWNER_VERSION_LABEL",
    "REROUTE_REASONS_ANNOTATION",
    "SECRET_CLEANUP_FINALIZER",
    "UNUSED_MARKER",
    "VERSION",
    "AvailabilityStatus",
    "label_value",
]

GROUP = "kuik.enix.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Pod annotation written by the webhook: JSON {"<container name>": "<original image>"};
# init containers are keyed "init:<name>", ephemeral containers "ephemeral:<name>".
ORIGINAL_IMAGES_ANNOTATION = "kuik.enix.io/original-images"
# kuik: why each rerouted container was rerouted, same keys, short texts (the `Rerouted` Event's
# "why"; the webhook knows it at admission, the replicator writes the Event once the Pod exists).
REROUTE_REASONS_ANNOTATION = "kuik.enix.io/reroute-reasons"
# kuik: Namespace label overriding the webhook's `webhook.mode` (`enforce` or `audit`).
MODE_LABEL = "kuik.enix.io/mode"
# Static (mirror) pods carry this annotation; kuik never touches them.
CONFIG_MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

# Labels on pull-secret copies made by the webhook (upstream §1.10).
OWNER_VERSION_LABEL = "kuik.enix.io/owner-version"
OWNER_GROUP_LABEL = "kuik.enix.io/owner-group"
OWNER_KIND_LABEL = "kuik.enix.io/owner-kind"
OWNER_UID_LABEL = "kuik.enix.io/owner-uid"
OWNER_NAME_LABEL = "kuik.enix.io/owner-name"

# apimachinery IsValidLabelValue: at most 63 characters, alphanumeric at both ends
_LABEL_VALUE_MAX = 63
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def label_value(text: str) -> str:
    """`text` as a label value the API server accepts: itself when valid, else its first
    characters, '-' and 16 hex of its SHA-256 (63 in all; distinct texts stay distinct).

    CR names may have 253 characters, label values 63. Whoever selects by such a label must
    derive the value with this function too."""
    if len(text) <= _LABEL_VALUE_MAX and _LABEL_VALUE.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", text[: _LABEL_VALUE_MAX - 17])
    head = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", head)
    return f"{head}-{digest}" if head else digest


MIRROR_CLEANUP_FINALIZER = "kuik.enix.io/mirror-cleanup"
SECRET_CLEANUP_FINALIZER = "kuik.enix.io/secret-cleanup"

# `unusedSince` value meaning "no longer matches the filter": expires at once (upstream marker).
UNUSED_MARKER = "0001-01-01T01:00:00Z"


class AvailabilityStatus(StrEnum):
    """Result of an image availability check (CISA `status.images[].status`)."""

    SCHEDULED = "Scheduled"
    AVAILABLE = "Available"
    NOT_FOUND = "NotFound"
    UNREACHABLE = "Unreachable"
    INVALID_AUTH = "InvalidAuth"
    UNAVAILABLE_SECRET = "UnavailableSecret"
    QUOTA_EXCEEDED = "QuotaExceeded"
