"""The Kubernetes backend: informers into the store; status, finalizer, Secret and Event writes.

Only the informers write to the store, so it always reflects what the API server said, in
order. Writes are read-modify-write loops guarded by resourceVersion preconditions (JSON
merge patches carrying `metadata.resourceVersion`): a `409 Conflict` means another writer
got there first, so the loop reads the newest object and applies the caller's change again.
Secrets are cached only when labelled `kuik.enix.io/owner-uid` (kuik's own copies); any
other Secret is read on demand through a small TTL cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import aiohttp
import structlog

from kuikcore.api import OWNER_UID_LABEL, parse_resource
from kuikcore.cluster.bounded import BOUNDED_LISTS, DEFAULT_BUDGET, Overflow, bound_status
from kuikcore.cluster.documents import secret_body
from kuikcore.cluster.events import EventDeduplicator, build_event, regards
from kuikcore.cluster.informer import Informer, InformerSettings, ListFunction
from kuikcore.cluster.interface import (
    NAMESPACE,
    POD,
    SECRET,
    ChangeCallback,
    ClusterError,
    ConflictError,
    EventType,
    InvalidDocument,
    NotFoundError,
    ObjectKey,
    StatusMutator,
)
from kuikcore.cluster.k8sclient import k8s, k8s_config
from kuikcore.cluster.kinds import DEFAULT_KINDS, WatchedKind, watched_kind
from kuikcore.cluster.kubeconfig import CredentialRefresher
from kuikcore.cluster.patch import (
    FinalizerEdit,
    FinalizerWrites,
    merge_patch_between,
    status_after,
)
from kuikcore.cluster.store import Store

__all__ = ["KubernetesCluster", "api_client_from_environment"]

log = structlog.get_logger("kuikcore.cluster")

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
ETCD_TOO_LARGE = "etcdserver: request is too large"


class _ApiError(ClusterError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _call(request: Awaitable[aiohttp.ClientResponse], what: str) -> JSON:
    """Await a kubernetes-asyncio call made with `_preload_content=False`; JSON or _ApiError."""
    response = await request
    async with response:
        body = await response.text()
        if response.status >= 300:
            try:
                message = json.loads(body).get("message") or body
            except ValueError:
                message = body
            raise _ApiError(response.status, f"{what}: HTTP {response.status}: {message}")
    data: JSON = json.loads(body)
    return data


class _PlainJsonApiClient(k8s.ApiClient):
    """kuik passes plain JSON (dicts and lists of str, numbers, bools) and reads raw responses,
    so the generated client's hunt for model objects (a recursive copy of every body, ~0.1 s for
    a 10,000-image status patch) is skipped; anything else still goes through it."""

    def sanitize_for_serialization(self, obj: Any) -> Any:
        if type(obj) in (dict, list):
            return obj
        return super().sanitize_for_serialization(obj)


async def api_client_from_environment() -> k8s.ApiClient:
    """In-cluster service account when running in a Pod, else `$KUBECONFIG` / ~/.kube/config."""
    configuration = k8s.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        # read $KUBECONFIG now: the library's default was fixed when it was imported
        loader = await k8s_config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG", "~/.kube/config"),
            client_configuration=configuration,
            persist_config=False,  # a service never writes the user's kubeconfig back
        )
        configuration.refresh_api_key_hook = CredentialRefresher(loader)
    return _PlainJsonApiClient(configuration)


class KubernetesCluster(FinalizerWrites):
    """`ClusterSource` over a Kubernetes API server (see module docstring)."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        field_manager: str = "kuik",
        kinds: Collection[str] = DEFAULT_KINDS,
        settings: InformerSettings | None = None,
        write_attempts: int = 8,
        transient_attempts: int = 5,
        secret_cache_ttl: float = 30.0,
        secret_cache_size: int = 256,
        event_dedup_window: float = 600.0,
        close_client: bool = False,
        status_list_budget: int = DEFAULT_BUDGET,
    ) -> None:
        self._api = api_client
        self._close_client = close_client  # stop() closes a client this object was given to own
        # Typed Any: every call passes `_preload_content=False` and gets the raw aiohttp
        # response (JSON parsed by us, no model deserialisation), which the stubs do not model.
        self._core: Any = k8s.CoreV1Api(api_client)
        self._custom: Any = k8s.CustomObjectsApi(api_client)
        self._events: Any = k8s.EventsV1Api(api_client)
        self._field_manager = field_manager
        self._settings = settings or InformerSettings()
        self._write_attempts = write_attempts
        self._transient_attempts = transient_attempts
        self._secret_cache: OrderedDict[tuple[str, str], tuple[float, JSON | None]] = OrderedDict()
        self._secret_cache_ttl, self._secret_cache_size = secret_cache_ttl, secret_cache_size
        self._dedup = EventDeduplicator(event_dedup_window)
        self._instance = socket.gethostname()
        self._status_list_budget = status_list_budget  # bytes; kuikcore.cluster.bounded
        self._overflow = Overflow()
        self._store = Store(parse_resource, overflow=self._overflow)
        self._informers = [self._informer(watched_kind(kind)) for kind in kinds]
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle, reading

    @property
    def store(self) -> Store:
        return self._store

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers)

    @property
    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self._informers)

    async def start(self) -> None:
        for informer in self._informers:
            self._tasks.append(
                asyncio.create_task(informer.run(), name=f"informer-{informer.kind}")
            )

    async def wait_synced(self) -> None:
        await asyncio.gather(*(informer.synced.wait() for informer in self._informers))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._close_client:
            await self._api.close()

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        return self._store.subscribe(callback)

    def problems(self) -> list[InvalidDocument]:
        return self._store.problems()

    def _informer(self, info: WatchedKind) -> Informer:
        selector = None
        list_function: ListFunction
        if info.kind == POD:
            list_function = self._core.list_pod_for_all_namespaces
        elif info.kind == SECRET:
            list_function = self._core.list_secret_for_all_namespaces
            selector = OWNER_UID_LABEL  # kuik's copies only, never every Secret of the cluster
        elif info.kind == NAMESPACE:
            list_function = self._core.list_namespace
        else:

            def list_function(**kwargs: Any) -> Awaitable[aiohttp.ClientResponse]:
                result: Awaitable[aiohttp.ClientResponse] = self._custom.list_cluster_custom_object(
                    info.group, info.version, info.plural, **kwargs
                )
                return result

        return Informer(
            info.kind,
            info.api_version,
            list_function,
            self._store,
            self._settings,
            label_selector=selector,
        )

    # ------------------------------------------------------------------ requests

    async def _request(
        self, what: str, method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> JSON:
        """One API call, retried after a 5xx, a 429 or a connection error (an API server
        restarting or overloaded); other errors are raised at once as `_ApiError`."""
        for attempt in range(1, self._transient_attempts + 1):
            try:
                return await _call(
                    method(
                        *args,
                        _preload_content=False,
                        _request_timeout=self._settings.request_timeout,
                        **kwargs,
                    ),
                    what,
                )
            except _ApiError as error:
                if not _transient(error) or attempt == self._transient_attempts:
                    raise
                reason = str(error)
            except (aiohttp.ClientError, TimeoutError) as error:
                if attempt == self._transient_attempts:
                    raise ClusterError(f"{what}: {error or type(error).__name__}") from error
                reason = str(error) or type(error).__name__
            log.debug("API request failed, retrying", request=what, error=reason, attempt=attempt)
            await asyncio.sleep(random.uniform(0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")

    def _custom_object(
        self,
        what: str,
        verb: str,
        info: WatchedKind,
        namespace: str,
        name: str,
        *args: Any,
        **kwargs: Any,
    ) -> Awaitable[JSON]:
        """The namespaced or cluster variant of a CustomObjectsApi method, as `_request`."""
        scope = "namespaced" if info.namespaced else "cluster"
        method = getattr(self._custom, verb.format(scope=scope))
        where = (namespace,) if info.namespaced else ()
        return self._request(
            what, method, info.group, info.version, *where, info.plural, name, *args, **kwargs
        )

    # ------------------------------------------------------------------ kuik resources

    async def _get_resource(self, info: WatchedKind, namespace: str, name: str) -> JSON:
        key = ObjectKey(info.kind, namespace, name)
        try:
            return await self._custom_object(
                f"get {key}", "get_{scope}_custom_object", info, namespace, name
            )
        except _ApiError as error:
            if error.status == 404:
                raise NotFoundError(f"{key} not found") from None
            raise

    async def _patch_resource(
        self, info: WatchedKind, namespace: str, name: str, patch: JSON, *, status: bool
    ) -> JSON:
        verb = "patch_{scope}_custom_object_status" if status else "patch_{scope}_custom_object"
        return await self._custom_object(
            f"patch {ObjectKey(info.kind, namespace, name)}",
            verb,
            info,
            namespace,
            name,
            patch,
            _content_type=MERGE_PATCH,
            field_manager=self._field_manager,
        )

    async def _read_modify_write(
        self,
        kind: str,
        namespace: str,
        name: str,
        change: Callable[[JSON], JSON | None],
        *,
        status: bool,
    ) -> JSON:
        """Apply `change(current) -> merge patch | None` until no other writer interferes."""
        info = watched_kind(kind)
        if not info.is_kuik:
            raise ValueError(f"{kind} is not a kuik kind")
        key = ObjectKey(kind, namespace if info.namespaced else "", name)
        for attempt in range(self._write_attempts):
            current = await self._get_resource(info, key.namespace, name)
            patch = change(current)
            if patch is None:
                return current
            patch.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                "resourceVersion"
            ]
            try:
                return await self._patch_resource(info, key.namespace, name, patch, status=status)
            except _ApiError as error:
                if error.status == 404:
                    raise NotFoundError(f"{key} not found") from None
                if error.status != 409:
                    raise
            log.debug("write conflict, retrying", object=str(key), attempt=attempt + 1)
            await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))
        raise ConflictError(f"{key}: still conflicting after {self._write_attempts} attempts")

    async def update_status(
        self, kind: str, namespace: str, name: str, mutate: StatusMutator
    ) -> Any:
        bounded = BOUNDED_LISTS.get(kind)
        written: list[tuple[JSON, list[JSON]]] = []

        def change(current: JSON) -> JSON | None:
            written.clear()
            # `mutate` sees the whole list (the entries this process left out put back); the
            # API gets it bounded by bytes (kuikcore.cluster.bounded)
            new = status_after(self._store.restored(kind, current), mutate)
            if new is None:
                return None
            omitted: list[JSON] = []
            if bounded is not None:
                new, omitted = bound_status(new, bounded, self._status_list_budget)
            written.append((new, omitted))
            old = current.get("status") or {}
            return {"status": merge_patch_between(old, new)}

        result = await self._read_modify_write(kind, namespace, name, change, status=True)
        if written:
            key = ObjectKey(kind, namespace if watched_kind(kind).namespaced else "", name)
            self._overflow.remember(key, *written[0])
        # parsed like the store parses the watch event that follows: validated, reusing the
        # stored version's models for unchanged status entries, the omitted entries put back
        return self._store.parse(kind, result)

    async def _write_finalizers(
        self, kind: str, namespace: str, name: str, edit: FinalizerEdit
    ) -> None:
        def change(current: JSON) -> JSON | None:
            finalizers = edit(current["metadata"])
            return None if finalizers is None else {"metadata": {"finalizers": finalizers or None}}

        await self._read_modify_write(kind, namespace, name, change, status=False)

    # ------------------------------------------------------------------ Secrets

    async def get_secret(self, namespace: str, name: str) -> JSON | None:
        cached = self._store.secret(namespace, name)
        if cached is not None:
            return cached
        now = time.monotonic()
        hit = self._secret_cache.get((namespace, name))
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            secret: JSON | None = await self._request(
                f"read Secret {namespace}/{name}",
                self._core.read_namespaced_secret,
                name,
                namespace,
            )
        except _ApiError as error:
            if error.status != 404:
                raise
            secret = None
        if secret is not None:
            secret = {k: v for k, v in secret.items() if k != "managedFields"}
            secret.setdefault("apiVersion", "v1")
            secret.setdefault("kind", SECRET)
        self._secret_cache[(namespace, name)] = (now + self._secret_cache_ttl, secret)
        self._secret_cache.move_to_end((namespace, name))
        while len(self._secret_cache) > self._secret_cache_size:
            self._secret_cache.popitem(last=False)
        return secret

    async def apply_secret(self, secret: JSON) -> JSON:
        body = secret_body(secret)
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        self._secret_cache.pop((namespace, name), None)
        what = f"Secret {namespace}/{name}"
        # the informer's copy first (kuik's copies are the labelled Secrets it watches): an
        # admission that finds it up to date writes nothing
        current: JSON | None = self._store.secret(namespace, name)
        for attempt in range(self._write_attempts):
            if current is None:
                try:
                    return await self._request(
                        f"create {what}",
                        self._core.create_namespaced_secret,
                        namespace,
                        body,
                        field_manager=self._field_manager,
                    )
                except _ApiError as error:
                    if error.status != 409:
                        raise
                current = await self._read_secret(what, namespace, name)
                if current is None:
                    continue  # deleted meanwhile: create again
            wanted = _secret_after(current, body)
            if wanted is None:
                return current
            try:
                if _must_recreate(current, body):
                    await self._recreate_secret(what, current)
                    current = None
                    continue
                return await self._request(
                    f"replace {what}",
                    self._core.replace_namespaced_secret,
                    name,
                    namespace,
                    wanted,
                    field_manager=self._field_manager,
                )
            except _ApiError as error:
                if error.status not in (404, 409):
                    raise
            await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))
            current = await self._read_secret(what, namespace, name)
        raise ConflictError(f"{what}: still conflicting after {self._write_attempts} attempts")

    async def _read_secret(self, what: str, namespace: str, name: str) -> JSON | None:
        try:
            return await self._request(
                f"read {what}", self._core.read_namespaced_secret, name, namespace
            )
        except _ApiError as error:
            if error.status == 404:
                return None
            raise

    async def _recreate_secret(self, what: str, current: JSON) -> None:
        """Delete `current` (exactly that version: another writer's newer one stays, and the
        409 sends the caller back to read it) so that it can be created anew; a Secret's
        `type`, and an `immutable` one's data, cannot be changed in place."""
        meta = current["metadata"]
        if OWNER_UID_LABEL not in (meta.get("labels") or {}):
            raise ClusterError(f"{what}: its type cannot change, and it is not kuik's to delete")
        log.info("recreating Secret whose type or immutable data changed", secret=what)
        await self._request(
            f"delete {what}",
            self._core.delete_namespaced_secret,
            meta["name"],
            meta["namespace"],
            body={
                "preconditions": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}
            },
        )

    async def delete_secret(self, namespace: str, name: str) -> bool:
        self._secret_cache.pop((namespace, name), None)
        try:
            await self._request(
                f"delete Secret {namespace}/{name}",
                self._core.delete_namespaced_secret,
                name,
                namespace,
            )
        except _ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    # ------------------------------------------------------------------ Events, identity

    async def emit_event(
        self,
        regarding: ObjectKey,
        type: EventType,
        reason: str,
        note: str,
        *,
        action: str = "",
    ) -> None:
        if not self._dedup.admit(regarding, type, reason, note):
            return
        body = build_event(
            regarding,
            _uid_of(self._store.get(regarding)),
            type,
            reason,
            note,
            action=action,
            controller=f"kuik.enix.io/{self._field_manager}",
            instance=self._instance,
        )
        namespace = body["metadata"]["namespace"]
        try:
            await _call(  # one attempt: Events are best effort and must not hold the caller
                self._events.create_namespaced_event(
                    namespace,
                    body,
                    _preload_content=False,
                    _request_timeout=self._settings.request_timeout,
                ),
                "create Event",
            )
        except (ClusterError, aiohttp.ClientError, TimeoutError) as error:
            self._dedup.forget(regarding, type, reason, note)
            log.warning(
                "could not record event", object=str(regarding), reason=reason, error=str(error)
            )

    async def list_events(self, regarding: ObjectKey | None = None) -> list[JSON]:
        data = await self._request("list Events", self._events.list_event_for_all_namespaces)
        events = [
            e
            for e in data.get("items") or []
            if str(e.get("reportingController", "")).startswith("kuik.enix.io/")
            and (regarding is None or regards(e, regarding))
        ]
        return sorted(
            events, key=lambda e: (e.get("eventTime") or "", e["metadata"].get("name", ""))
        )

    async def cluster_id(self) -> str:
        namespace = await self._request(
            "read Namespace kube-system", self._core.read_namespace, "kube-system"
        )
        uid: str = namespace["metadata"]["uid"]
        return uid


def _transient(error: _ApiError) -> bool:
    """Worth another attempt: a 5xx or a 429, except etcd refusing the object's size, which
    kube-apiserver passes on as a 500 (kubernetes/kubernetes#112152) and which the same write
    meets every time."""
    if ETCD_TOO_LARGE in str(error):
        return False
    return error.status >= 500 or error.status == 429


def _secret_after(current: JSON, body: JSON) -> JSON | None:
    """`current` with the type, data, labels and annotations `body` (a `secret_body`) sets;
    None when they are already so. The server omits empty data and defaults the type, so
    those compare as the body's defaults."""
    wanted = copy.deepcopy(current)
    wanted["metadata"].update(body["metadata"])
    if (current.get("type") or "Opaque") != body["type"]:
        wanted["type"] = body["type"]
    if (current.get("data") or {}) != body["data"]:
        wanted["data"] = body["data"]
    return None if wanted == current else wanted


def _must_recreate(current: JSON, body: JSON) -> bool:
    """ValidateSecretUpdate: `type` is immutable, so is an `immutable: true` Secret's data."""
    if (current.get("type") or "Opaque") != body["type"]:
        return True
    return bool(current.get("immutable")) and body["data"] != (current.get("data") or {})


def _uid_of(obj: Any) -> str | None:
    if obj is None:
        return None
    if isinstance(obj, dict):
        uid: str | None = (obj.get("metadata") or {}).get("uid")
        return uid
    meta = getattr(obj, "metadata", None)
    return getattr(meta, "uid", None)
