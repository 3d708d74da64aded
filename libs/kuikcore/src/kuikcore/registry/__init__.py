"""kuik's OCI distribution client: checks, copies and deletes against any registry.

Async on aiohttp, one pooled session per registry host, bearer/basic auth with a token cache,
kubelet's pull-secret matching, typed errors, retries within a deadline. `RegistryClient` holds
the connections and makes single requests; the operations are functions taking it:
`registry.check(client, ref)`, `registry.copy(client, src, dst)`, `registry.delete(client, ref)`.
"""

from __future__ import annotations

from kuikcore.registry.auth import Credentials
from kuikcore.registry.check import CheckResult, check, classify
from kuikcore.registry.client import ManifestInfo, RegistryClient
from kuikcore.registry.copy import CopyResult, Progress, copy
from kuikcore.registry.delete import DeleteResult, delete
from kuikcore.registry.errors import (
    DigestMismatch,
    InvalidAuth,
    NotFound,
    PlatformNotFound,
    QuotaExceeded,
    RegistryError,
    Unreachable,
    UnsupportedManifest,
)
from kuikcore.registry.keyring import InvalidDockerConfig, Keyring
from kuikcore.registry.mediatypes import Descriptor, ImageManifest
from kuikcore.registry.platforms import Platform, parse_platform
from kuikcore.registry.transport import Deadline, RegistryTLS, RetryPolicy

__all__ = [
    "CheckResult",
    "CopyResult",
    "Credentials",
    "Deadline",
    "DeleteResult",
    "Descriptor",
    "DigestMismatch",
    "ImageManifest",
    "InvalidAuth",
    "InvalidDockerConfig",
    "Keyring",
    "ManifestInfo",
    "NotFound",
    "Platform",
    "PlatformNotFound",
    "Progress",
    "QuotaExceeded",
    "RegistryClient",
    "RegistryError",
    "RegistryTLS",
    "RetryPolicy",
    "Unreachable",
    "UnsupportedManifest",
    "check",
    "classify",
    "copy",
    "delete",
    "parse_platform",
]
