"""A stateful fake of the Kubernetes API server, spoken to over real HTTP.

kuik's cluster tests drive the real kubernetes-asyncio client against this server, so the
informer code sees what a real API server sends: lists with a `resourceVersion`, watch
streams replaying history from a version, bookmarks, `410 Expired` once history is
compacted, the `/status` subresource, JSON merge patches with optimistic concurrency
(`409 Conflict`), finalizers holding deletions, and faults injected on demand (watch
streams cut, bursts of 5xx, slow responses).

It is as strict as kube-apiserver 1.30 where kuik touches it (`strict=True`, the default; see
`kuik_testing.apivalidation`): names and generateName per resource, labels, annotations,
finalizers (none added while deleting), Secret immutability, events.k8s.io/v1 Events, the 3 MiB
request body limit (413) and etcd's 1.5 MiB object limit, each answered with the real `Status`.

Written in-repo on aiohttp rather than taken from `kmock`: the behaviours under test are
exactly the API server's consistency rules (resource versions, compaction, selector
transitions on watch), which a generic HTTP mock leaves to the test author anyway, and
a small server of our own lets the fault switches reach into the watch streams.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from kuik_testing import apivalidation as rules

__all__ = [
    "DEFAULT_RESOURCE_TYPES",
    "FakeApiServer",
    "ResourceType",
    "merge_patch",
    "rules_allow",
]

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One REST collection the fake serves."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    has_status: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """`schema.GroupResource.String()`, as error messages name it: `secrets`,
        `clusterimagesetmirrors.kuik.enix.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_KUIK = "kuik.enix.io"
DEFAULT_RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "pods", "Pod", namespaced=True),
    ResourceType("", "v1", "secrets", "Secret", namespaced=True, has_status=False),
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False),
    ResourceType("", "v1", "events", "Event", namespaced=True, has_status=False),
    ResourceType("events.k8s.io", "v1", "events", "Event", namespaced=True, has_status=False),
    ResourceType(_KUIK, "v1alpha1", "clusterimagesetmirrors", "ClusterImageSetMirror", False),
    ResourceType(_KUIK, "v1alpha1", "imagesetmirrors", "ImageSetMirror", True),
    ResourceType(
        _KUIK, "v1alpha1", "clusterreplicatedimagesets", "ClusterReplicatedImageSet", False
    ),
    ResourceType(_KUIK, "v1alpha1", "replicatedimagesets", "ReplicatedImageSet", True),
    ResourceType(
        _KUIK, "v1alpha1", "clusterimagesetavailabilities", "ClusterImageSetAvailability", False
    ),
)

_TypeKey = tuple[str, str]  # (group, plural)
_ObjKey = tuple[str, str, str, str]  # (group, plural, namespace, name)


class ApiError(Exception):
    """An API-server error answered as a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def response(self) -> web.Response:
        return web.json_response(
            status_body(self.code, self.reason, self.message, self.details), status=self.code
        )


def status_body(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    """A `metav1.Status` failure; like Go's `omitempty`, an empty reason or details is left out."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = _omit_empty(details)
    body["code"] = code
    return body


def _omit_empty(value: Any) -> Any:
    """Go's `omitempty` on StatusDetails and StatusCause: "" and empty lists are left out."""
    if isinstance(value, dict):
        return {k: _omit_empty(v) for k, v in value.items() if v not in ("", None, [])}
    if isinstance(value, list):
        return [_omit_empty(v) for v in value]
    return value


def _invalid(rtype: ResourceType, name: str, errors: list[rules.FieldError]) -> ApiError:
    """`errors.NewInvalid(kind.GroupKind(), name, errs)`: 422 Invalid with one cause per error."""
    qualified = f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind
    return ApiError(
        422,
        "Invalid",
        rules.invalid_message(qualified, name, errors),
        rules.invalid_details(rtype.group, rtype.kind, name, errors),
    )


# utilrand's alphabet (no vowels, no 0/1/3): what SimpleNameGenerator appends
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _verb(request: web.Request, name: str | None) -> str:
    """The RBAC verb of a request (apiserver RequestInfoFactory)."""
    method = request.method
    if method == "GET":
        if request.query.get("watch", "").lower() in ("true", "1"):
            return "watch"
        return "get" if name else "list"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def rules_allow(
    rules: list[JSON], group: str, plural: str, sub: str | None, verb: str, name: str | None
) -> bool:
    """plugin/pkg/auth/authorizer/rbac RuleAllows: group, resource (`plural/sub` for a
    subresource), verb, and `resourceNames` (which never match list, watch or create)."""
    resource = plural + (f"/{sub}" if sub else "")
    for rule in rules:
        if not {"*", group} & set(rule.get("apiGroups") or ()):
            continue
        if not {"*", resource} & set(rule.get("resources") or ()):
            continue
        if not {"*", verb} & set(rule.get("verbs") or ()):
            continue
        names = rule.get("resourceNames") or ()
        if names and (name is None or name not in names):
            continue
        return True
    return False


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_string_data(secret: JSON) -> None:
    """`stringData` is write-only: kube-apiserver's v1 conversion (Convert_v1_Secret_To_core_Secret)
    writes each entry into `data` (base64, over an entry of the same key) and never stores it."""
    string_data = secret.pop("stringData", None)
    if not isinstance(string_data, dict):
        return
    data = secret.get("data")
    data = dict(data) if isinstance(data, dict) else {}
    for key, value in string_data.items():
        if not isinstance(value, str):
            raise ApiError(
                400,
                "BadRequest",
                f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                "Secret.stringData of type string",
            )
        data[key] = base64.b64encode(value.encode()).decode()
    secret["data"] = data


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_selector(text: str) -> list[tuple[str, str, str | None]]:
    """Equality-based label selectors: `k`, `!k`, `k=v`, `k==v`, `k!=v`, comma-separated."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in filter(None, (part.strip() for part in text.split(","))):
        if "!=" in raw:
            key, value = raw.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "=" in raw:
            key, value = raw.replace("==", "=").split("=", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif raw.startswith("!"):
            terms.append(("!", raw[1:].strip(), None))
        else:
            terms.append(("exists", raw, None))
    return terms


def _selector_matches(terms: list[tuple[str, str, str | None]], labels: dict[str, str]) -> bool:
    for op, key, value in terms:
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
    return True


@dataclass(slots=True)
class _Record:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    tkey: _TypeKey
    old: JSON | None
    new: JSON


@dataclass(eq=False)
class _Watch:
    tkey: _TypeKey
    namespace: str | None
    selector: list[tuple[str, str, str | None]]
    name: str | None
    queue: asyncio.Queue[tuple[str, JSON]] = field(default_factory=asyncio.Queue)
    cut: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, record: _Record) -> None:
        """Queue the event this watcher sees for `record` (selector transitions included)."""
        event = self.translate(record)
        if event is not None:
            self.queue.put_nowait(event)

    def _matches(self, obj: JSON | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        return _selector_matches(self.selector, meta.get("labels") or {})

    def translate(self, record: _Record) -> tuple[str, JSON] | None:
        if record.tkey != self.tkey:
            return None
        new_match = self._matches(record.new)
        if record.type != "MODIFIED":
            return (record.type, record.new) if new_match else None
        old_match = self._matches(record.old)
        if old_match and new_match:
            return ("MODIFIED", record.new)
        if new_match:
            return ("ADDED", record.new)
        if old_match:
            return ("DELETED", record.new)
        return None


@dataclass
class _Fault:
    remaining: int
    status: int
    match: str | None


class FakeApiServer:
    """The fake API server. Start with `await start()`; test code drives state directly.

    Direct methods (`create`, `update`, `delete`, `get`, `objects`) act like another
    client of the API server: they bump resource versions and notify watchers exactly as
    HTTP writes do.
    """

    def __init__(
        self,
        resource_types: tuple[ResourceType, ...] = DEFAULT_RESOURCE_TYPES,
        *,
        bookmark_interval: float = 60.0,
        history_limit: int = 10_000,
        strict: bool = True,
    ) -> None:
        self.strict = strict  # kube-apiserver's validation and size limits (module docstring)
        self._grants: dict[str, tuple[str, list[JSON]]] = {}  # token -> (user, RBAC rules)
        self._types = {(t.group, t.plural): t for t in resource_types}
        self._by_kind = {(t.api_version, t.kind): t for t in resource_types}
        self._objects: dict[_ObjKey, JSON] = {}
        self._rv = 100
        self._history: list[_Record] = []
        self._compacted_rv = self._rv
        self._history_limit = history_limit
        self._watches: set[_Watch] = set()
        self._faults: list[_Fault] = []
        self.accept_token: Callable[[str | None], bool] | None = None
        """Authentication: None accepts every request; else only bearer tokens it accepts."""
        self._drop_events = 0
        self._delay: tuple[float, str | None] = (0.0, None)
        self.bookmark_interval = bookmark_interval
        self.requests: list[tuple[str, str]] = []  # (method, path?query) of every HTTP request
        self.watch_requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        # TokenReview / SubjectAccessReview: token -> user, and (user, verb, path) granted.
        self.tokens: dict[str, JSON] = {}
        self.non_resource_grants: set[tuple[str, str, str]] = set()
        self.access_reviews: list[JSON] = []  # every SubjectAccessReview spec received

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeApiServer:
        # the 3 MiB body limit is ours to answer (413 Status), not aiohttp's 1 MiB default
        app = web.Application(
            middlewares=[self._faults_middleware],
            client_max_size=rules.MAX_REQUEST_BODY_BYTES * 4,
        )
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1]
        self.url = f"http://{host}:{bound_port}"
        return self

    async def stop(self) -> None:
        self.cut_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def api_client(self, token: str | None = None) -> Any:
        """A kubernetes-asyncio `ApiClient` talking to this server (close it after use), with
        `token` as its bearer token (see `grant`)."""
        from kubernetes_asyncio import client as k8s

        configuration = k8s.Configuration(host=self.url)
        if token is not None:
            configuration.api_key = {"BearerToken": token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return k8s.ApiClient(configuration)

    def write_kubeconfig(self, path: Path, token: str = "fake-token") -> Path:
        """A kubeconfig pointing at this server, for processes started by tests."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))
        return path

    # ---------------------------------------------------------------- authorization

    def grant(self, token: str, user: str, rules: list[JSON]) -> None:
        """Requests bearing `token` act as `user`, allowed only what `rules` (RBAC PolicyRules,
        e.g. a ClusterRole the chart renders, bound cluster-wide) allow; 403 Forbidden with the
        server's message otherwise. Other tokens (and direct calls) stay unrestricted."""
        self._grants[token] = (user, [dict(rule) for rule in rules])

    def _authorize(
        self,
        request: web.Request,
        rtype: ResourceType,
        namespace: str | None,
        name: str | None,
        sub: str | None,
    ) -> None:
        header = request.headers.get("Authorization", "")
        grant = self._grants.get(header.removeprefix("Bearer ").strip())
        if grant is None:
            return
        user, rules = grant
        verb = _verb(request, name)
        if rules_allow(rules, rtype.group, rtype.plural, sub, verb, name):
            return
        # endpoints/handlers/responsewriters/errors.go forbiddenMessage + errors.NewForbidden
        resource = rtype.plural + (f"/{sub}" if sub else "")
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        reason = (
            f'User "{user}" cannot {verb} resource "{resource}" in API group '
            f'"{rtype.group}" {scope}'
        )
        qualified = rtype.resource
        named = f' "{name}"' if name else ""
        raise ApiError(
            403,
            "Forbidden",
            f"{qualified}{named} is forbidden: {reason}",
            {"name": name, "group": rtype.group, "kind": rtype.plural},
        )

    # ---------------------------------------------------------------- faults

    def fail_requests(self, count: int, status: int = 500, match: str | None = None) -> None:
        """Answer the next `count` requests (whose path contains `match`) with `status`."""
        self._faults.append(_Fault(count, status, match))

    def clear_faults(self) -> None:
        """Forget every pending `fail_requests` (the fault was fixed)."""
        self._faults = []

    def set_delay(self, seconds: float, match: str | None = None) -> None:
        """Delay every response (to paths containing `match`) by `seconds`; 0 turns it off."""
        self._delay = (seconds, match)

    def cut_watches(self) -> int:
        """Drop every open watch connection mid-stream (no clean end). Returns how many."""
        for watch in self._watches:
            watch.cut.set()
        return len(self._watches)

    def drop_events(self, count: int) -> None:
        """Lose the next `count` changes on every open watch (a lossy stream; only a relist
        notices). Stored state and later watches are unaffected."""
        self._drop_events += count

    def compact(self) -> int:
        """Forget history up to now: watches from an older resourceVersion get 410 Expired."""
        self._history.clear()
        self._compacted_rv = self._rv
        return self._rv

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    @property
    def resource_version(self) -> int:
        return self._rv

    # ---------------------------------------------------------------- direct state access

    def type_of(self, obj: JSON) -> ResourceType:
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        try:
            return self._by_kind[key]
        except KeyError:
            raise ValueError(f"fake API server does not serve {key[0]} {key[1]}") from None

    def _type_for_kind(self, api_version: str, kind: str) -> ResourceType:
        return self.type_of({"apiVersion": api_version, "kind": kind})

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> JSON | None:
        rtype = self._type_for_kind(api_version, kind)
        obj = self._objects.get((rtype.group, rtype.plural, namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[JSON]:
        rtype = self._type_for_kind(api_version, kind)
        return [
            copy.deepcopy(obj)
            for (group, plural, ns, _), obj in sorted(self._objects.items())
            if (group, plural) == (rtype.group, rtype.plural) and namespace in (None, ns)
        ]

    def create(self, obj: JSON) -> JSON:
        rtype = self.type_of(obj)
        return copy.deepcopy(self._create(rtype, obj.get("metadata", {}).get("namespace"), obj))

    def update(self, obj: JSON, *, subresource: str | None = None) -> JSON:
        """Replace an object (no resourceVersion check unless `obj` carries one)."""
        rtype = self.type_of(obj)
        meta = obj.get("metadata", {})
        key = self._key(rtype, meta.get("namespace"), meta["name"])
        return copy.deepcopy(self._replace(rtype, key, obj, subresource))

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: JSON,
        *,
        subresource: str | None = None,
    ) -> JSON:
        rtype = self._type_for_kind(api_version, kind)
        key = self._key(rtype, namespace, name)
        return copy.deepcopy(self._patch(rtype, key, patch, subresource))

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> JSON:
        rtype = self._type_for_kind(api_version, kind)
        return copy.deepcopy(self._delete(rtype, self._key(rtype, namespace, name)))

    # ---------------------------------------------------------------- state machine

    def _key(self, rtype: ResourceType, namespace: str | None, name: str) -> _ObjKey:
        if rtype.namespaced and not namespace:
            raise ApiError(400, "BadRequest", f"{rtype.kind} {name!r} needs a namespace")
        return (rtype.group, rtype.plural, (namespace or "") if rtype.namespaced else "", name)

    def _existing(self, rtype: ResourceType, key: _ObjKey) -> JSON:
        obj = self._objects.get(key)
        if obj is None:
            raise ApiError(
                404,
                "NotFound",
                f'{rtype.resource} "{key[3]}" not found',
                {"name": key[3], "group": rtype.group, "kind": rtype.plural},
            )
        return obj

    def _record(self, rtype: ResourceType, kind: str, old: JSON | None, new: JSON) -> None:
        record = _Record(self._rv, kind, (rtype.group, rtype.plural), old, copy.deepcopy(new))
        self._history.append(record)
        if len(self._history) > self._history_limit:
            dropped = self._history.pop(0)
            self._compacted_rv = dropped.rv
        if self._drop_events > 0:
            self._drop_events -= 1
            return
        for watch in self._watches:
            watch.offer(record)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _create(self, rtype: ResourceType, namespace: str | None, body: JSON) -> JSON:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        namespace = namespace or meta.get("namespace")
        if rtype.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            # names.SimpleNameGenerator: the base cut to 58 characters, then 5 random ones
            base = meta["generateName"][:58]
            meta["name"] = base + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
        if rtype.plural == "secrets" and not rtype.group:
            _merge_string_data(obj)
            if not obj.get("type"):
                obj["type"] = "Opaque"  # SetDefaults_Secret
        if self.strict:
            errors = rules.validate_create(rtype.group, rtype.plural, rtype.namespaced, obj)
            if errors:
                raise _invalid(rtype, meta.get("name") or "", errors)
        if not meta.get("name"):
            raise ApiError(422, "Invalid", f"{rtype.kind}: metadata.name is required")
        key = self._key(rtype, namespace, meta["name"])
        if key in self._objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{rtype.resource} "{meta["name"]}" already exists',
                {"name": meta["name"], "group": rtype.group, "kind": rtype.plural},
            )
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            generation=1,
            resourceVersion=self._next_rv(),
        )
        meta.pop("deletionTimestamp", None)
        self._check_stored_size(obj)
        self._objects[key] = obj
        self._record(rtype, "ADDED", None, obj)
        return obj

    def _check_stored_size(self, obj: JSON) -> None:
        """etcd refuses a value over --max-request-bytes (1.5 MiB); kube-apiserver passes the
        error through as a 500 with etcd's message (kubernetes/kubernetes#112152, still open in
        1.30). Measured as compact JSON, which is how CRs are stored (core kinds are protobuf,
        somewhat smaller)."""
        if not self.strict:
            return
        size = len(json.dumps(obj, separators=(",", ":")).encode())
        if size > rules.MAX_STORED_OBJECT_BYTES:
            raise ApiError(500, "", "etcdserver: request is too large")

    def _check_rv(self, current: JSON, incoming: JSON, rtype: ResourceType) -> None:
        wanted = (incoming.get("metadata") or {}).get("resourceVersion")
        have = current["metadata"]["resourceVersion"]
        if wanted not in (None, "") and str(wanted) != have:
            name = current["metadata"]["name"]
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rtype.resource} "{name}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )

    def _commit(
        self, rtype: ResourceType, key: _ObjKey, old: JSON, new: JSON, sub: str | None
    ) -> JSON:
        """Apply subresource rules, generation, finalizer-held deletion; notify watchers."""
        merged = copy.deepcopy(new)
        if rtype.has_status:
            if sub == "status":
                merged = copy.deepcopy(old)
                if "status" in new:
                    merged["status"] = copy.deepcopy(new["status"])
                else:
                    merged.pop("status", None)
            elif "status" in old:
                merged["status"] = copy.deepcopy(old["status"])
            else:
                merged.pop("status", None)
        meta = merged.setdefault("metadata", {})
        for frozen in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp"):
            if frozen in old["metadata"]:
                meta[frozen] = old["metadata"][frozen]
            else:
                meta.pop(frozen, None)
        merged["apiVersion"], merged["kind"] = rtype.api_version, rtype.kind
        if rtype.plural == "secrets" and not rtype.group:
            _merge_string_data(merged)
        spec_of = {k: v for k, v in merged.items() if k not in ("metadata", "status")}
        old_spec = {k: v for k, v in old.items() if k not in ("metadata", "status")}
        meta["generation"] = old["metadata"].get("generation", 1) + (spec_of != old_spec)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if self.strict:
            errors = rules.validate_update(rtype.group, rtype.plural, rtype.namespaced, old, merged)
            if errors:
                raise _invalid(rtype, meta.get("name") or "", errors)
        if merged == old:
            return old  # no-op writes do not bump the resource version
        self._check_stored_size(merged)
        meta["resourceVersion"] = self._next_rv()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self._objects[key]
            self._record(rtype, "DELETED", old, merged)
            return merged
        self._objects[key] = merged
        self._record(rtype, "MODIFIED", old, merged)
        return merged

    def _replace(self, rtype: ResourceType, key: _ObjKey, body: JSON, sub: str | None) -> JSON:
        current = self._existing(rtype, key)
        if rtype.plural == "secrets" and not rtype.group and not body.get("type"):
            body = {**body, "type": "Opaque"}  # SetDefaults_Secret, as on create
        self._check_rv(current, body, rtype)
        return self._commit(rtype, key, current, body, sub)

    def _patch(self, rtype: ResourceType, key: _ObjKey, patch: JSON, sub: str | None) -> JSON:
        current = self._existing(rtype, key)
        self._check_rv(current, patch, rtype)
        return self._commit(rtype, key, current, merge_patch(current, patch), sub)

    def _check_preconditions(self, rtype: ResourceType, key: _ObjKey, wanted: JSON) -> None:
        """DeleteOptions.preconditions (apiserver storage Preconditions.Check): 409 Conflict."""
        meta = self._existing(rtype, key)["metadata"]
        for name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if wanted.get(name) is not None and str(wanted[name]) != str(meta.get(name)):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {rtype.resource} "{key[3]}": '
                    f"Precondition failed: {label} in precondition: {wanted[name]}, "
                    f"{label} in object meta: {meta.get(name)}",
                )

    def _delete(self, rtype: ResourceType, key: _ObjKey) -> JSON:
        current = self._existing(rtype, key)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = _now()
            # markAsDeleting: the first deletion mark changes what the object asks for, so
            # controllers see a new generation (status writes never bump it: see _commit)
            if new["metadata"].get("generation"):
                new["metadata"]["generation"] += 1
            new["metadata"]["resourceVersion"] = self._next_rv()
            self._objects[key] = new
            self._record(rtype, "MODIFIED", current, new)
            return new
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        del self._objects[key]
        self._record(rtype, "DELETED", current, gone)
        return gone

    # ---------------------------------------------------------------- HTTP

    @web.middleware
    async def _faults_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if self.accept_token is not None:
            header = request.headers.get("Authorization", "")
            token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
            if not self.accept_token(token):
                # kube-apiserver's answer to a missing, unknown or expired bearer token
                body = status_body(401, "Unauthorized", "Unauthorized")
                return web.json_response(body, status=401)
        delay, delay_match = self._delay
        if delay and (delay_match is None or delay_match in request.path_qs):
            await asyncio.sleep(delay)
        for fault in self._faults:
            if fault.remaining > 0 and (fault.match is None or fault.match in request.path_qs):
                fault.remaining -= 1
                body = status_body(fault.status, "InternalError", "injected fault")
                return web.json_response(body, status=fault.status)
        self._faults = [f for f in self._faults if f.remaining > 0]
        try:
            response: web.StreamResponse = await handler(request)
        except ApiError as error:
            return error.response()
        return response

    def _route(self, path: str) -> tuple[ResourceType, str | None, str | None, str | None]:
        """Split a REST path into (type, namespace, name, subresource)."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"no route for {path}")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] != "status":
            namespace, rest = rest[1], rest[2:]
        rtype = self._types.get((group, rest[0])) if rest else None
        if rtype is None or len(rest) > 3:
            raise ApiError(404, "NotFound", f"no route for {path}")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub not in (None, "status") or (sub == "status" and not rtype.has_status):
            raise ApiError(404, "NotFound", f"no subresource {sub!r} on {rtype.plural}")
        return rtype, namespace, name, sub

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        review = _REVIEWS.get(request.path)
        if review is not None and request.method == "POST":
            return web.json_response(review(self, await request.json()), status=201)
        rtype, namespace, name, sub = self._route(request.path)
        self._authorize(request, rtype, namespace, name, sub)
        method = request.method
        if name is None:
            if method == "GET":
                if request.query.get("watch", "").lower() in ("true", "1"):
                    return await self._watch(request, rtype, namespace)
                return self._list(request, rtype, namespace)
            if method == "POST":
                return web.json_response(
                    self._create(rtype, namespace, await self._body(request)), status=201
                )
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection")
        key = self._key(rtype, namespace, name)
        if method == "GET":
            return web.json_response(self._existing(rtype, key))
        if method == "PUT":
            return web.json_response(self._replace(rtype, key, await self._body(request), sub))
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "")
            if not content_type.startswith("application/merge-patch+json"):
                raise ApiError(
                    415, "UnsupportedMediaType", f"fake serves merge patches, not {content_type}"
                )
            return web.json_response(self._patch(rtype, key, await self._body(request), sub))
        if method == "DELETE":
            options = await self._body(request) if request.can_read_body else {}
            self._check_preconditions(rtype, key, (options or {}).get("preconditions") or {})
            return web.json_response(self._delete(rtype, key))
        raise ApiError(405, "MethodNotAllowed", method)

    async def _body(self, request: web.Request) -> Any:
        """The JSON body, refused past kube-apiserver's 3 MiB (handlers/rest.go
        limitedReadBody -> errors.NewRequestEntityTooLargeError)."""
        raw = await request.read()
        if self.strict and len(raw) > rules.MAX_REQUEST_BODY_BYTES:
            raise ApiError(
                413,
                "RequestEntityTooLarge",
                f"Request entity too large: limit is {rules.MAX_REQUEST_BODY_BYTES}",
            )
        return json.loads(raw)

    # ---------------------------------------------------------------- authn / authz reviews

    def add_token(self, token: str, username: str, groups: tuple[str, ...] = ()) -> None:
        """Make `token` authenticate as `username` in TokenReviews."""
        self.tokens[token] = {"username": username, "uid": f"uid-{username}", "groups": [*groups]}

    def allow_non_resource(self, user: str, path: str, verb: str = "get") -> None:
        """Let SubjectAccessReviews allow `user` to `verb` the non-resource URL `path`."""
        self.non_resource_grants.add((user, verb, path))

    def _token_review(self, body: JSON) -> JSON:
        user = self.tokens.get(str((body.get("spec") or {}).get("token", "")))
        status: JSON = {"authenticated": user is not None}
        if user is not None:
            status["user"] = user
        return {**body, "status": status}

    def _access_review(self, body: JSON) -> JSON:
        spec = body.get("spec") or {}
        self.access_reviews.append(spec)
        attributes = spec.get("nonResourceAttributes") or {}
        grant = (spec.get("user", ""), attributes.get("verb", ""), attributes.get("path", ""))
        allowed = bool(attributes) and grant in self.non_resource_grants
        return {**body, "status": {"allowed": allowed}}

    def _filtered(
        self, rtype: ResourceType, namespace: str | None, request: web.Request
    ) -> list[JSON]:
        watch = self._make_watch(rtype, namespace, request)
        items = []
        for (group, plural, _ns, _name), obj in sorted(self._objects.items()):
            if (group, plural) == (rtype.group, rtype.plural) and watch._matches(obj):
                items.append(obj)
        return items

    def _make_watch(
        self, rtype: ResourceType, namespace: str | None, request: web.Request
    ) -> _Watch:
        name = None
        for term in filter(None, request.query.get("fieldSelector", "").split(",")):
            field_name, _, value = term.partition("=")
            if field_name == "metadata.name":
                name = value
            elif field_name == "metadata.namespace":
                namespace = value
            else:
                raise ApiError(400, "BadRequest", f"fake does not support field selector {term}")
        selector = _parse_selector(request.query.get("labelSelector", ""))
        return _Watch((rtype.group, rtype.plural), namespace, selector, name)

    def _list(
        self, request: web.Request, rtype: ResourceType, namespace: str | None
    ) -> web.Response:
        items = self._filtered(rtype, namespace, request)
        list_rv, offset = str(self._rv), 0
        token = request.query.get("continue", "")
        if token:  # "<list resourceVersion>:<offset>"; expires with compaction, like etcd's
            list_rv, _, start = token.partition(":")
            if int(list_rv) < self._compacted_rv:
                raise ApiError(410, "Expired", "the provided continue parameter is too old")
            offset = int(start)
        limit = int(request.query.get("limit", "0") or 0)
        end = offset + limit if limit > 0 else len(items)
        more = end < len(items)
        items = copy.deepcopy(items[offset:end])
        if not rtype.group:  # like the real server: core list items carry no kind/apiVersion
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        body = {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": {
                "resourceVersion": list_rv,
                **({"continue": f"{list_rv}:{end}"} if more else {}),
            },
            "items": items,
        }
        return web.json_response(body)

    async def _watch(
        self, request: web.Request, rtype: ResourceType, namespace: str | None
    ) -> web.StreamResponse:
        self.watch_requests += 1
        watch = self._make_watch(rtype, namespace, request)
        since = request.query.get("resourceVersion", "")
        bookmarks = request.query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        timeout = float(request.query.get("timeoutSeconds", "0") or 0)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if since not in ("", "0") and int(since) < self._compacted_rv:
            expired = status_body(
                410, "Expired", f"too old resource version: {since} ({self._compacted_rv})"
            )
            await response.write(json.dumps({"type": "ERROR", "object": expired}).encode() + b"\n")
            return response
        if since in ("", "0"):
            for obj in self._filtered(rtype, namespace, request):
                watch.queue.put_nowait(("ADDED", obj))
        else:
            for record in self._history:
                if record.rv > int(since):
                    watch.offer(record)
        self._watches.add(watch)
        try:
            await self._stream(request, response, watch, rtype, bookmarks, timeout)
        finally:
            self._watches.discard(watch)
        return response

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        watch: _Watch,
        rtype: ResourceType,
        bookmarks: bool,
        lifetime: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + lifetime if lifetime > 0 else None
        next_bookmark = loop.time() + self.bookmark_interval
        if deadline is not None:
            # kube-apiserver's watch cache bookmarks about once a minute and once more shortly
            # before a watch ends by its timeout, so a client resumes from a recent version
            next_bookmark = min(next_bookmark, max(loop.time(), deadline - 2.0))
        while True:
            if watch.cut.is_set():
                if request.transport is not None:
                    request.transport.abort()
                return
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if watch.queue.empty() and bookmarks and now >= next_bookmark:
                mark = {"kind": rtype.kind, "apiVersion": rtype.api_version,
                        "metadata": {"resourceVersion": str(self._rv)}}  # fmt: skip
                await response.write(
                    json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n"
                )
                next_bookmark = now + self.bookmark_interval
                if deadline is not None and next_bookmark > deadline - 2.0 > now:
                    next_bookmark = deadline - 2.0
            wait = min(0.1, *(t - now for t in (deadline, next_bookmark) if t is not None))
            try:
                kind, obj = await asyncio.wait_for(watch.queue.get(), timeout=max(wait, 0.001))
            except TimeoutError:
                continue
            if watch.cut.is_set():
                continue
            with contextlib.suppress(ConnectionResetError):
                await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")


_REVIEWS: dict[str, Callable[[FakeApiServer, JSON], JSON]] = {
    "/apis/authentication.k8s.io/v1/tokenreviews": FakeApiServer._token_review,
    "/apis/authorization.k8s.io/v1/subjectaccessreviews": FakeApiServer._access_review,
}


async def _serve(host: str, port: int, kubeconfig: Path | None) -> None:
    server = await FakeApiServer().start(host, port)
    if kubeconfig is not None:
        server.write_kubeconfig(kubeconfig)
    print(server.url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m kuik_testing.apiserver [--port N] [--kubeconfig PATH]`: serve the fake
    until interrupted, for running kuik services as processes against it (state is then
    driven over HTTP, e.g. with kubectl or kubernetes-asyncio)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kuik_testing.apiserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", type=Path, default=None)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.kubeconfig))


if __name__ == "__main__":
    main()
