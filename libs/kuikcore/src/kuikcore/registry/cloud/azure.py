"""ACR through azure-identity and the registry's own `/oauth2/exchange`.

azure-identity gets a Microsoft Entra token for the workload identity (`AZURE_CLIENT_ID`,
`AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`, as the Azure Workload
Identity webhook sets them; a managed identity otherwise). ACR exchanges it for a refresh
token, which is the password of the null-GUID user in its bearer token flow (`/oauth2/token`).
The exchange endpoint sits beside the token realm the registry's challenge names.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from yarl import URL

from kuikcore.registry.auth import Challenge, Credentials
from kuikcore.registry.cloud.chain import CloudToken, in_thread
from kuikcore.registry.errors import InvalidAuth
from kuikcore.registry.transport import Deadline

if TYPE_CHECKING:
    from kuikcore.registry.transport import Transport

__all__ = ["ACR_USER", "AcrProvider", "arm_scope"]

ACR_USER: Final = "00000000-0000-0000-0000-000000000000"
# ACR accepts Entra tokens for Azure Resource Manager of the registry's cloud
_ARM_SCOPES: Final = {
    "azurecr.cn": "https://management.chinacloudapi.cn/.default",
    "azurecr.us": "https://management.usgovcloudapi.net/.default",
}
_DEFAULT_SCOPE: Final = "https://management.azure.com/.default"


def arm_scope(host: str) -> str:
    """The Entra scope ACR exchanges for `host`'s cloud (public, China, US Government)."""
    for suffix, scope in _ARM_SCOPES.items():
        if host.endswith("." + suffix):
            return scope
    return _DEFAULT_SCOPE


def _jwt_expiry(token: str) -> float | None:
    """`exp` of a JWT, read (not verified: the registry verifies it) to know when to refresh."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


@dataclass
class AcrProvider:
    cloud: str = "azure"
    _credential: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _entra_token(self, scope: str) -> tuple[str, float]:
        with self._lock:
            if self._credential is None:
                from azure.identity import ManagedIdentityCredential, WorkloadIdentityCredential

                if os.environ.get("AZURE_FEDERATED_TOKEN_FILE"):
                    # the authority is AZURE_AUTHORITY_HOST as the webhook sets it: no discovery
                    self._credential = WorkloadIdentityCredential(disable_instance_discovery=True)
                else:
                    self._credential = ManagedIdentityCredential()
            credential = self._credential
        access = credential.get_token(scope)
        return access.token, float(access.expires_on)

    async def token(
        self, transport: Transport, host: str, challenge: Challenge, deadline: Deadline
    ) -> CloudToken:
        if challenge.scheme != "bearer" or not challenge.realm:
            raise InvalidAuth(f"ACR {host}: expected a bearer challenge with a realm")
        entra, entra_expires = await in_thread(deadline, lambda: self._entra_token(arm_scope(host)))
        exchange = URL(challenge.realm).with_path("/oauth2/exchange").with_query(None)
        form = {
            "grant_type": "access_token",
            "service": challenge.params.get("service", host),
            "access_token": entra,
        }
        tenant = os.environ.get("AZURE_TENANT_ID")
        if tenant:
            form["tenant"] = tenant
        doc = await transport.post_form(host, str(exchange), form, deadline)
        refresh = doc.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise InvalidAuth(f"ACR {host}: the exchange answered no refresh token")
        expires = _jwt_expiry(refresh) or entra_expires
        return CloudToken(Credentials(ACR_USER, refresh), expires)

    async def ensure_repository(self, repository: str, deadline: Deadline) -> bool:
        return False  # ACR creates repositories on push
