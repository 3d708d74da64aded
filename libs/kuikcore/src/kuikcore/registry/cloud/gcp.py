"""Artifact Registry and Container Registry (gcr.io) through google-auth's default credentials.

On GKE with Workload Identity these are the metadata server's tokens for the Kubernetes
ServiceAccount's bound Google service account (`GCE_METADATA_HOST` points google-auth
elsewhere); any other ADC source (a key file in `GOOGLE_APPLICATION_CREDENTIALS`) works too.
The registry takes the access token as the password of user `oauth2accesstoken`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any, Final

from kuikcore.registry.auth import Challenge, Credentials
from kuikcore.registry.cloud.chain import CloudToken, in_thread
from kuikcore.registry.transport import Deadline

if TYPE_CHECKING:
    from kuikcore.registry.transport import Transport

__all__ = ["GCP_USER", "GcpProvider"]

GCP_USER: Final = "oauth2accesstoken"
_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"


@dataclass
class GcpProvider:
    cloud: str = "gcp"
    _credentials: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def token(
        self, transport: Transport, host: str, challenge: Challenge, deadline: Deadline
    ) -> CloudToken:
        def call() -> CloudToken:
            import google.auth
            import google.auth.transport.requests

            with self._lock:
                if self._credentials is None:
                    self._credentials, _ = google.auth.default(scopes=[_SCOPE])
                credentials = self._credentials
                credentials.refresh(google.auth.transport.requests.Request())
                token, expiry = credentials.token, credentials.expiry
            # google-auth's expiry is a naive UTC datetime
            expires = expiry.replace(tzinfo=UTC).timestamp() if expiry else None
            return CloudToken(Credentials(GCP_USER, token), expires)

        token: CloudToken = await in_thread(deadline, call)
        return token

    async def ensure_repository(self, repository: str, deadline: Deadline) -> bool:
        return False  # Artifact Registry creates image paths on push within a repository
