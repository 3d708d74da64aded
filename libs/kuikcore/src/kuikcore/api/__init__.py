"""kuik's Kubernetes API: the five `kuik.enix.io/v1alpha1` kinds and the names kuik writes."""

from __future__ import annotations

from kuikcore.api.names import (
    API_VERSION,
    CONFIG_MIRROR_ANNOTATION,
    GROUP,
    MIRROR_CLEANUP_FINALIZER,
    ORIGINAL_IMAGES_ANNOTATION,
    OWNER_GROUP_LABEL,
    OWNER_KIND_LABEL,
    OWNER_NAME_LABEL,
    OWNER_UID_LABEL,
    OWNER_VERSION_LABEL,
    SECRET_CLEANUP_FINALIZER,
    UNUSED_MARKER,
    VERSION,
    AvailabilityStatus,
)

__all__ = [
    "API_VERSION",
    "CONFIG_MIRROR_ANNOTATION",
    "GROUP",
    "MIRROR_CLEANUP_FINALIZER",
    "ORIGINAL_IMAGES_ANNOTATION",
    "OWNER_GROUP_LABEL",
    "OWNER_KIND_LABEL",
    "OWNER_NAME_LABEL",
    "OWNER_UID_LABEL",
    "OWNER_VERSION_LABEL",
    "SECRET_CLEANUP_FINALIZER",
    "UNUSED_MARKER",
    "VERSION",
    "AvailabilityStatus",
]
