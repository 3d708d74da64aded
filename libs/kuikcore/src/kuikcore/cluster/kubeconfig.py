"""Out-of-cluster credentials that stay valid: the kubeconfig's user is re-read while kuik runs.

kubernetes-asyncio reads a kubeconfig's credentials once (`load_kube_config`): with an `exec`
plugin (EKS, GKE), an OIDC provider or a rotated `tokenFile`, every request gets 401 once that
first token expires (15-60 minutes). `CredentialRefresher` is the client configuration's
`refresh_api_key_hook` (called before each request): at most every `every` seconds it has the
loader authenticate again, which reruns an exec plugin or refreshes an OIDC/GCP token only when
theirs is near expiry (the library's 5-minute skew) and re-reads a token file, then sets the
bearer token on the configuration. In-cluster, the library's own hook re-reads the ServiceAccount
token (`load_incluster_config`).

Not covered: an exec plugin that answers with a client certificate instead of a token (the
client's TLS context is built once); kuik logs a warning when the certificate changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["CredentialRefresher"]

log = structlog.get_logger("kuikcore.cluster")


class CredentialRefresher:
    """`configuration.refresh_api_key_hook = CredentialRefresher(loader)`."""

    def __init__(
        self,
        loader: Any,
        *,
        every: float = 60.0,
        retry: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loader = loader
        self.every = every
        self.retry = retry
        self._clock = clock
        self._last = clock()  # the loader has just authenticated
        self._wait = every
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def _due(self) -> bool:
        return self._clock() - self._last >= min(self._wait, self.every)

    async def __call__(self, configuration: Any) -> None:
        if not self._due():
            return
        async with self._lock:
            if not self._due():
                return  # another request refreshed meanwhile
            cert = getattr(self.loader, "cert_file", None)
            try:
                await self.loader.load_and_set(configuration)
            except Exception as exc:  # keep the old token: it may still be valid
                log.warning("could not refresh the kubeconfig credentials", error=str(exc))
                self._last, self._wait = self._clock(), self.retry
                return
            self.refreshes += 1
            self._last, self._wait = self._clock(), self.every
            if getattr(self.loader, "cert_file", None) != cert:
                log.warning(
                    "the kubeconfig's client certificate changed: restart to use it "
                    "(only bearer tokens are refreshed in place)"
                )
