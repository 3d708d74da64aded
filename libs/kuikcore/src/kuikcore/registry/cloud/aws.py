"""ECR through the AWS SDK (boto3): GetAuthorizationToken, and CreateRepository on first push.

boto3's default credential chain is the workload identity: IRSA's web-identity token file
(`AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE` -> STS AssumeRoleWithWebIdentity) and EKS Pod
Identity (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), refreshed by botocore itself; `AWS_ENDPOINT_URL`
points it elsewhere (private endpoints, tests). boto3 is imported on first use only.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kuikcore.registry.auth import Challenge, Credentials
from kuikcore.registry.cloud.chain import CloudToken, in_thread
from kuikcore.registry.transport import Deadline

if TYPE_CHECKING:
    from kuikcore.registry.transport import Transport

__all__ = ["EcrProvider"]


@dataclass
class EcrProvider:
    """One ECR registry: its region, its account (None: the identity's own), FIPS endpoints."""

    region: str
    registry_id: str | None = None
    fips: bool = False
    cloud: str = "ecr"
    _client: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _ecr(self) -> Any:
        with self._lock:  # boto3 sessions are not thread-safe; the client they make is
            if self._client is None:
                import boto3
                from botocore.config import Config

                session = boto3.session.Session(region_name=self.region)
                self._client = session.client(
                    "ecr", config=Config(use_fips_endpoint=self.fips, retries={"mode": "standard"})
                )
            return self._client

    def _registry(self) -> dict[str, Any]:
        return {"registryId": self.registry_id} if self.registry_id else {}

    async def token(
        self, transport: Transport, host: str, challenge: Challenge, deadline: Deadline
    ) -> CloudToken:
        def call() -> CloudToken:
            ids = {"registryIds": [self.registry_id]} if self.registry_id else {}
            data = self._ecr().get_authorization_token(**ids)["authorizationData"][0]
            user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
            expires = data.get("expiresAt")
            return CloudToken(Credentials(user, password), expires.timestamp() if expires else None)

        token: CloudToken = await in_thread(deadline, call)
        return token

    async def ensure_repository(self, repository: str, deadline: Deadline) -> bool:
        """CreateRepository with ECR's defaults (tag mutability, lifecycle: the user's to set)."""

        def call() -> bool:
            client = self._ecr()
            # another worker (or cluster) may have created it first
            with contextlib.suppress(client.exceptions.RepositoryAlreadyExistsException):
                client.create_repository(repositoryName=repository, **self._registry())
            return True

        created: bool = await in_thread(deadline, call)
        return created
