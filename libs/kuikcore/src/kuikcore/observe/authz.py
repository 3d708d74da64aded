"""Who may read /metrics (and a service's extra routes such as the monitor's /status/images).

Off by default: the health server then answers anyone, as Prometheus scrapes usually expect.
With `metrics.secure` (upstream's `--metrics-secure`, controller-runtime's
`WithAuthenticationAndAuthorization`) every such request needs a bearer token that the API server
accepts (TokenReview) and whose user may `get` the request path as a non-resource URL
(SubjectAccessReview), e.g. a ClusterRole with `nonResourceURLs: [/metrics]`. Both answers are
cached for a few seconds per (token, path), so a scrape every 15 s costs the API server at most
two small requests; failures to reach the API server are not cached.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from aiohttp import web

__all__ = ["Authorizer", "Denial", "KubernetesAuthorizer"]


class Denial(NamedTuple):
    """Why a request is refused: the HTTP status (401, 403, 503) and a short reason."""

    status: int
    reason: str


class Authorizer(Protocol):
    """Decides whether a request to a guarded endpoint may be served."""

    async def authorize(self, request: web.Request) -> Denial | None:
        """None when the request may be served, else why not."""
        ...


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class _Unavailable(Exception):
    """The API server could not be asked (answer not cached)."""


class KubernetesAuthorizer:
    """TokenReview then SubjectAccessReview through a kubernetes-asyncio `ApiClient`."""

    def __init__(
        self,
        api_client: Any,
        *,
        ttl: float = 10.0,
        max_entries: int = 1024,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Submodules only: the slim kubernetes-asyncio import stays slim.
        from kubernetes_asyncio.client.api.authentication_v1_api import AuthenticationV1Api
        from kubernetes_asyncio.client.api.authorization_v1_api import AuthorizationV1Api

        self._authn: Any = AuthenticationV1Api(api_client)
        self._authz: Any = AuthorizationV1Api(api_client)
        self._ttl, self._max_entries, self._timeout, self._clock = ttl, max_entries, timeout, clock
        self._cache: OrderedDict[tuple[str, str], tuple[float, Denial | None]] = OrderedDict()
        self.reviews = 0  # API requests made (TokenReviews + SubjectAccessReviews), for tests

    async def authorize(self, request: web.Request) -> Denial | None:
        token = bearer_token(request)
        if token is None:
            return Denial(401, "a bearer token is required")
        # Keyed by a digest, so the cache never holds a usable credential.
        key = (hashlib.sha256(token.encode()).hexdigest(), request.path)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            decision = await self._review(token, request.path)
        except _Unavailable as exc:
            return Denial(503, f"cannot check the token: {exc}")
        self._cache[key] = (now + self._ttl, decision)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return decision

    async def _review(self, token: str, path: str) -> Denial | None:
        review = await self._post(
            self._authn.create_token_review,
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
        )
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return Denial(401, "the token was not accepted")
        user = status.get("user") or {}
        spec: dict[str, Any] = {
            "user": user.get("username", ""),
            "groups": user.get("groups") or [],
            "nonResourceAttributes": {"path": path, "verb": "get"},
        }
        if user.get("uid"):
            spec["uid"] = user["uid"]
        if user.get("extra"):
            spec["extra"] = user["extra"]
        access = await self._post(
            self._authz.create_subject_access_review,
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": spec,
            },
        )
        if not (access.get("status") or {}).get("allowed"):
            return Denial(403, f"{spec['user'] or 'this user'} may not get {path}")
        return None

    async def _post(self, method: Callable[..., Any], body: dict[str, Any]) -> dict[str, Any]:
        self.reviews += 1
        try:
            response = await method(body, _preload_content=False, _request_timeout=self._timeout)
            async with response:
                text = await response.text()
                if response.status >= 300:
                    raise _Unavailable(f"{body['kind']}: HTTP {response.status}")
        except _Unavailable:
            raise
        except Exception as exc:  # connection refused, timeout, TLS: any of them means "unknown"
            raise _Unavailable(f"{body['kind']}: {type(exc).__name__}: {exc}") from exc
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError as exc:
            raise _Unavailable(f"{body['kind']}: not JSON") from exc
        return data
