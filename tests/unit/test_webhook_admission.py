"""The webhook's pure parts: AdmissionReview in/out, the Pod plan, JSONPatch, secret names."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from kuik_testing import objects
from kuik_testing.objects import admission_review, all_images, body, cism, container, mirror, pod
from kuik_webhook.chooser import Candidate, Source, Verdict, pick
from kuik_webhook.handler import reroute_reason
from kuik_webhook.pod_plan import NotAPod, build_patch, image_path, plan_pod
from kuik_webhook.review import (
    AdmissionRequest,
    MalformedReview,
    decode_review,
    encode_response,
)
from kuik_webhook.secrets import copy_name, copy_of, pull_secret_name
from kuikcore.api import ORIGINAL_IMAGES_ANNOTATION, AvailabilityStatus, parse_resource
from kuikcore.api.models import Resource
from kuikcore.names import REROUTE_REASONS_ANNOTATION
from kuikcore.pods import PodContainer, read_pod
from kuikcore.routing import ORIGINAL, Alternative, ContainerType, RoutingOptions, SecretRef

FIXTURES = Path("/work/shared/fixtures/admissionreview")
ANN = ORIGINAL_IMAGES_ANNOTATION
REASONS = REROUTE_REASONS_ANNOTATION
# the one CISM most tests route with (parsed once: nothing here changes it)
MIRRORS = parse_resource(
    cism(
        "mirrors",
        mirror("mirror.local:5000", "m"),
        metadata={"uid": "uid-mirrors"},
        filter=all_images(),
    )
)


def request(
    obj: Any, *, operation: str = "CREATE", old: Any = None, sub: str = ""
) -> AdmissionRequest:
    return AdmissionRequest(
        uid="u1",
        operation=operation,
        namespace="apps",
        resource="pods",
        kind="Pod",
        sub_resource=sub,
        object=obj,
        old_object=old,
    )


# --- AdmissionReview -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body is not JSON"),
        (b"[1]", "body is not a JSON object"),
        (
            b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}',
            "apiVersion must be",
        ),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}', "kind must be 'AdmissionReview'"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request is missing"),
        (body(admission_review({"operation": "CREATE"})), "request.uid is missing"),
        (body(admission_review({"uid": 5})), "request.uid is missing"),
    ],
)
def test_malformed_reviews_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(MalformedReview, match=message):
        decode_review(body)


def test_real_admission_review_decodes() -> None:
    req = decode_review((FIXTURES / "admissionreview-simple.json").read_bytes())
    assert req.uid == "c78e0c58-7389-4838-b4f5-28d6005c1cc3"
    assert (req.operation, req.resource, req.kind, req.dry_run) == ("CREATE", "pods", "Pod", False)
    assert req.is_pod
    assert not req.is_ephemeral_containers
    assert req.object["metadata"]["namespace"] == "default"
    assert req.old_object is None


@pytest.mark.parametrize(
    ("value", "dry"), [(False, False), (None, False), (True, True), ("yes", True)]
)
def test_dry_run_unless_explicitly_false(value: object, dry: bool) -> None:
    assert decode_review(body(admission_review({"uid": "x", "dryRun": value}))).dry_run is dry


def test_response_carries_patch_and_clean_warnings() -> None:
    ops = [{"op": "replace", "path": "/spec/containers/0/image", "value": "a/b"}]
    body = json.loads(encode_response("u", patch=ops, warnings=["line\nbreak\x00", "x" * 1000]))
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == "u"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == ops
    assert response["warnings"][0] == "line break?"
    assert len(response["warnings"][1]) <= 240
    assert response["warnings"][1].endswith("...")


def test_response_without_changes_has_no_patch() -> None:
    response = json.loads(encode_response("u"))["response"]
    assert response == {"uid": "u", "allowed": True}


# --- plan ---------------------------------------------------------------------------------


def test_create_records_every_container_kind_and_targets_routed_ones() -> None:
    obj = pod(
        container("web", "registry.local/web:1"),
        container("never", "registry.local/x:1", policy="Never"),
        init=[container("setup", "registry.local/setup:1")],
        ephemeral=[container("debug", "busybox")],
        namespace="apps",
    )
    plan = plan_pod(request(obj), [MIRRORS], RoutingOptions())
    assert plan.annotation == {
        "web": "registry.local/web:1",
        "never": "registry.local/x:1",
        "init:setup": "registry.local/setup:1",
        "ephemeral:debug": "busybox",
    }
    assert [t.container.key for t in plan.targets] == ["web", "init:setup", "ephemeral:debug"]
    web = plan.targets[0]
    assert [a.image for a in web.route.alternatives] == [
        "registry.local/web:1",
        "mirror.local:5000/m/web:1",
    ]
    assert image_path(web.container) == "/spec/containers/0/image"
    assert image_path(plan.targets[1].container) == "/spec/initContainers/0/image"
    assert plan.can_add_pull_secrets


def test_reinvocation_changes_nothing() -> None:
    first = pod(
        container("web", "registry.local/web:1"),
        init=[container("i", "registry.local/i:1")],
        namespace="apps",
    )
    plan = plan_pod(request(first), [MIRRORS], RoutingOptions())
    assert plan.annotation is not None
    patched = jsonpatch.apply_patch(first, build_patch(first, [], plan.annotation))
    again = plan_pod(request(patched), [MIRRORS], RoutingOptions())
    assert again.targets == ()
    assert again.annotation is None


def test_namespace_comes_from_the_request_when_the_pod_has_none() -> None:
    ism = parse_resource(
        objects.ism("apps", "ns-mirror", mirror("ns.local", "m"), filter=all_images())
    )
    plan = plan_pod(
        request(pod(container("c", "a.local/x:1"), namespace=None)),
        [ism],
        RoutingOptions(),
    )
    assert plan.namespace == "apps"
    assert [a.image for a in plan.targets[0].route.alternatives][-1] == "ns.local/m/x:1"


def test_mirror_pod_and_skip_selectors_are_left_alone() -> None:
    mirror_pod = pod(
        container("c", "a.local/x:1"),
        annotations={"kubernetes.io/config.mirror": "x"},
        namespace="apps",
    )
    plan = plan_pod(request(mirror_pod), [MIRRORS], RoutingOptions())
    assert plan.skipped
    assert plan.annotation is None
    assert plan.targets == ()


@pytest.mark.parametrize(
    "bad",
    [None, "pod", {"metadata": {}}, {"spec": {"containers": "x"}}, {"spec": {}, "metadata": []}],
)
def test_unreadable_objects_raise_not_a_pod(bad: object) -> None:
    with pytest.raises(NotAPod):
        plan_pod(request(bad), [], RoutingOptions())


def test_update_reconsiders_only_changed_images() -> None:
    old = pod(
        container("a", "mirror.local:5000/m/a:1"),
        container("b", "b.local/b:1"),
        annotations={ANN: json.dumps({"a": "a.local/a:1", "b": "b.local/b:1"})},
        namespace="apps",
    )
    new = copy.deepcopy(old)
    new["spec"]["containers"][1]["image"] = "b.local/b:2"
    plan = plan_pod(request(new, operation="UPDATE", old=old), [MIRRORS], RoutingOptions())
    assert [t.container.key for t in plan.targets] == ["b"]
    assert plan.annotation == {"a": "a.local/a:1", "b": "b.local/b:2"}
    assert plan.can_add_pull_secrets is False  # Pod updates cannot change imagePullSecrets


def test_update_without_changes_is_a_no_op_and_restores_a_dropped_annotation() -> None:
    old = pod(
        container("a", "mirror.local:5000/m/a:1"),
        annotations={ANN: '{"a":"a.local/a:1"}'},
        namespace="apps",
    )
    same = plan_pod(
        request(copy.deepcopy(old), operation="UPDATE", old=old), [MIRRORS], RoutingOptions()
    )
    assert same.targets == ()
    assert same.annotation is None
    dropped = copy.deepcopy(old)
    dropped["metadata"]["annotations"] = {}
    plan = plan_pod(request(dropped, operation="UPDATE", old=old), [MIRRORS], RoutingOptions())
    assert plan.targets == ()
    assert plan.annotation == {"a": "a.local/a:1"}


def test_ephemeral_subresource_routes_new_containers_without_annotation_or_secrets() -> None:
    old = pod(
        container("a", "a.local/a:1"), annotations={ANN: '{"a":"a.local/a:1"}'}, namespace="apps"
    )
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "tools.local/dbg:1"}]
    plan = plan_pod(
        request(new, operation="UPDATE", old=old, sub="ephemeralcontainers"),
        [MIRRORS],
        RoutingOptions(),
    )
    assert [t.container.key for t in plan.targets] == ["ephemeral:dbg"]
    assert image_path(plan.targets[0].container) == "/spec/ephemeralContainers/0/image"
    assert plan.annotation is None
    assert plan.can_add_pull_secrets is False


# --- JSONPatch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {"name": "p"},
        {"name": "p", "annotations": {"other": "1"}},
        {"annotations": {ANN: "{}"}},
    ],
)
def test_patch_applies_whatever_the_metadata_looks_like(metadata: dict[str, Any] | None) -> None:
    obj: dict[str, Any] = {"spec": {"containers": [{"name": "c", "image": "a"}]}}
    if metadata is not None:
        obj["metadata"] = metadata
    container = PodContainer(ContainerType.CONTAINER, 0, "c", "a", None)
    ops = build_patch(obj, [(container, "mirror.local/m/a")], {"c": "a"}, ["s1", "s1"])
    out = jsonpatch.apply_patch(obj, ops)
    assert out["spec"]["containers"][0]["image"] == "mirror.local/m/a"
    assert json.loads(out["metadata"]["annotations"][ANN]) == {"c": "a"}
    assert out["spec"]["imagePullSecrets"] == [{"name": "s1"}]
    if metadata and "other" in (metadata.get("annotations") or {}):
        assert out["metadata"]["annotations"]["other"] == "1"


def test_patch_appends_only_missing_pull_secrets() -> None:
    obj = pod(container("c", "a"), pull_secrets=["mine"], namespace="apps")
    out = jsonpatch.apply_patch(obj, build_patch(obj, [], None, ["mine", "kuik-x"]))
    assert out["spec"]["imagePullSecrets"] == [{"name": "mine"}, {"name": "kuik-x"}]


def test_annotation_is_encoded_like_go() -> None:
    obj = pod(container("c", "a"), namespace="apps")
    ops = build_patch(obj, [], {"z": "é", "a": "<x>&"})
    value = ops[-1]["value"][ANN]
    assert value == '{"a":"\\u003cx\\u003e\\u0026","z":"é"}'
    assert json.loads(value) == {"z": "é", "a": "<x>&"}


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {"name": "p"},
        {"name": "p", "annotations": {"other": "1"}},
        {"annotations": {ANN: '{"b":"x"}', REASONS: '{"b":"older","gone":"stale"}'}},
    ],
)
def test_reasons_written_beside_the_originals_and_merged(metadata: dict[str, Any] | None) -> None:
    """The why of each reroute, for the replicator's Rerouted Event: what the Pod said before
    is kept for containers still recorded, the new reasons win."""
    obj: dict[str, Any] = {"spec": {"containers": [{"name": "c", "image": "a"}]}}
    if metadata is not None:
        obj["metadata"] = metadata
    container = PodContainer(ContainerType.CONTAINER, 0, "c", "a", None)
    recorded = {"c": "a", "b": "x"}
    ops = build_patch(obj, [(container, "m/a")], recorded, [], {"c": "NotFound (check)"})
    out = jsonpatch.apply_patch(obj, ops)
    reasons = json.loads(out["metadata"]["annotations"][REASONS])
    expected = {"c": "NotFound (check)"}
    if metadata and REASONS in (metadata.get("annotations") or {}):
        expected["b"] = "older"  # kept; "gone" is no recorded container any more
    assert reasons == expected
    assert json.loads(out["metadata"]["annotations"][ANN]) == recorded


def test_no_reasons_annotation_without_a_reroute() -> None:
    obj = pod(container("c", "a"), namespace="apps")
    out = jsonpatch.apply_patch(obj, build_patch(obj, [], {"c": "a"}, [], {}))
    assert REASONS not in out["metadata"]["annotations"]
    # nor where metadata cannot be written (the ephemeral containers subresource)
    assert build_patch(obj, [], None, [], {"c": "why"}) == []


def _candidate(image: str, source: str) -> Candidate:
    return Candidate(Alternative(image=image, source=source))


def test_reroute_reason_says_why_the_original_was_left() -> None:
    original = "registry.a/x:1"
    rejected = [
        {"image": original, "reason": "Unreachable: registry.a is down since 12:00 (probe)"}
    ]
    chosen = _candidate("registry.b/m/x:1", "ClusterImageSetMirror/m")
    assert reroute_reason(original, rejected, chosen) == rejected[0]["reason"]
    # a CR ranking before the original: the original was never in the way
    assert (
        reroute_reason(original, [], chosen) == "ClusterImageSetMirror/m ranks before the original"
    )
    long = [{"image": original, "reason": "x" * 1000}]
    assert len(reroute_reason(original, long, chosen)) == 256


# --- pull secrets -------------------------------------------------------------------------


def test_copy_name_is_upstreams_format() -> None:
    name = copy_name(SecretRef("registry-creds", "kuik-system"), "1234-uid")
    prefix, _, digest = name.rpartition("-")
    assert prefix == "kuik-registry-creds"
    assert len(digest) == 16
    assert int(digest, 16) >= 0
    assert name != copy_name(SecretRef("registry-creds", "other"), "1234-uid")
    assert name != copy_name(SecretRef("registry-creds", "kuik-system"), "5678-uid")
    long = copy_name(SecretRef("s" * 300, "ns"), "u")
    assert len(long) == 253
    assert long.startswith("kuik-" + "s" * 231 + "-")


def test_copy_name_zero_pads_the_hash() -> None:
    # xxhash64("ns/6") = 0x0a0e... has a leading zero nibble; Go's %016x keeps it
    for i in range(200):
        name = copy_name(SecretRef("s", "ns"), str(i))
        assert len(name.rpartition("-")[2]) == 16


def test_pull_secret_name_copies_only_across_namespaces() -> None:
    owner = MIRRORS
    same = Alternative("m/x", "ImageSetMirror/apps/x", SecretRef("creds", "apps"), owner)
    other = Alternative("m/x", owner.key, SecretRef("creds", "kuik-system"), owner)
    assert pull_secret_name(same, "apps") == "creds"
    assert pull_secret_name(other, "apps") == copy_name(
        SecretRef("creds", "kuik-system"), "uid-mirrors"
    )
    assert pull_secret_name(Alternative("x", ORIGINAL), "apps") is None


def test_copy_keeps_type_and_data_and_labels_the_owner() -> None:
    source = {
        "metadata": {
            "name": "creds",
            "namespace": "kuik-system",
            "labels": {"team": "x"},
            "annotations": {"a": "b"},
        },
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "e30="},
    }
    out = copy_of(source, "apps", "kuik-creds-0123456789abcdef", MIRRORS)
    assert out["metadata"] == {
        "name": "kuik-creds-0123456789abcdef",
        "namespace": "apps",
        "labels": {
            "kuik.enix.io/owner-version": "v1alpha1",
            "kuik.enix.io/owner-group": "kuik.enix.io",
            "kuik.enix.io/owner-kind": "ClusterImageSetMirror",
            "kuik.enix.io/owner-uid": "uid-mirrors",
            "kuik.enix.io/owner-name": "mirrors",
        },
    }
    assert out["type"] == source["type"]
    assert out["data"] == source["data"]


# --- choosing -----------------------------------------------------------------------------

ORIG = Candidate(Alternative("a.local/x:1", ORIGINAL))
M1 = Candidate(Alternative("m1.local/x:1", "ClusterImageSetMirror/one"))
M2 = Candidate(Alternative("m2.local/x:1", "ClusterImageSetMirror/two"))
UP = Verdict(AvailabilityStatus.AVAILABLE, Source.CHECK)
DOWN = Verdict(AvailabilityStatus.NOT_FOUND, Source.CHECK)


@pytest.mark.parametrize(
    ("cands", "verdicts", "final", "expected"),
    [
        ([ORIG, M1], [UP, None], False, (0, None)),
        ([ORIG, M1], [None, UP], False, (None, 0)),  # an earlier unknown is awaited
        ([ORIG, M1], [DOWN, UP], False, (1, None)),
        ([ORIG, M1], [DOWN, DOWN], False, (None, None)),
        ([ORIG, M1], [None, UP], True, (None, None)),  # unknown original at the deadline: keep it
        ([M1, ORIG, M2], [None, DOWN, UP], True, (2, None)),  # unknown mirror passed over
        ([M1, M2, ORIG], [None, None, UP], True, (2, None)),
        ([M1, M2], [None, None], True, (None, None)),
    ],
)
def test_pick_first_available_in_order(
    cands: list[Candidate],
    verdicts: list[Verdict | None],
    final: bool,
    expected: tuple[int | None, int | None],
) -> None:
    assert pick(cands, verdicts, final=final) == expected


def test_cache_key_includes_credentials() -> None:
    from kuikcore.registry import Credentials

    a = Candidate(Alternative("m/x", "o"), (Credentials("u", "p1"),))
    b = Candidate(Alternative("m/x", "o"), (Credentials("u", "p2"),))
    assert a.cache_key != b.cache_key
    assert a.cache_key[0] == b.cache_key[0]
    assert "p1" not in repr(a.cache_key)


# --- routing cache ------------------------------------------------------------------------


def test_route_cache_reuses_routes_of_identical_pods_until_invalidated() -> None:
    from kuik_webhook.routes import RouteCache

    asked: list[str] = []
    crs = [MIRRORS]

    def resources(namespace: str) -> list[Resource]:
        asked.append(namespace)
        return crs

    cache = RouteCache(resources, RoutingOptions())
    first = pod(container("web", "registry.local/web:1"), namespace="apps")
    twin = copy.deepcopy(first)
    twin["metadata"]["name"] = "other-replica"
    plans = [plan_pod(request(p), router=cache.route) for p in (first, twin)]
    assert asked == ["apps"]  # the second Pod of the "ReplicaSet" was routed from the cache
    assert plans[0].targets == plans[1].targets
    assert plans[0].targets == plan_pod(request(first), crs, RoutingOptions()).targets
    labelled = copy.deepcopy(first)
    labelled["metadata"]["labels"] = {"canary": "true"}  # filters may select on labels
    plan_pod(request(labelled), router=cache.route)
    assert asked == ["apps", "apps"]
    crs[:] = [
        parse_resource(
            cism(
                "mirrors",
                mirror("elsewhere.local", "m"),
                metadata={"uid": "uid-mirrors"},
                filter=all_images(),
            )
        )
    ]
    cache.invalidate()  # what a CR change does
    plan = plan_pod(request(first), router=cache.route)
    assert plan.targets[0].route.alternatives[-1].image == "elsewhere.local/m/web:1"


def test_route_cache_is_bounded_in_bytes() -> None:
    """Pods carry any text: 2,048 routes of 20 KB labels each kept ~40 MiB before."""
    from kuik_webhook.routes import MAX_BYTES, MAX_KEY_BYTES, RouteCache

    cache = RouteCache(lambda namespace: [MIRRORS], RoutingOptions())
    for n in range(1000):
        big = pod(container("web", "registry.local/web:1"), namespace="apps")
        big["metadata"]["labels"] = {"l": f"{n}" + "x" * 20_000}
        cache.route(read_pod(big), "apps")
        assert cache.bytes <= MAX_BYTES
    assert 0 < len(cache._entries) <= MAX_BYTES // 20_000
    huge = pod(container("web", "registry.local/web:1"), namespace="apps")
    huge["metadata"]["labels"] = {"l": "x" * MAX_KEY_BYTES}
    before = cache.bytes
    assert cache.route(read_pod(huge), "apps").containers  # routed, not remembered
    assert cache.route(read_pod(huge), "apps") is not cache.route(read_pod(huge), "apps")
    assert cache.bytes == before


async def test_single_candidate_is_used_without_a_check() -> None:
    """discardAlternative left one alternative: it is used (upstream's docs); an original alone
    stays. No registry is contacted: the candidates point at a refusing port."""
    from prometheus_client import CollectorRegistry

    from kuik_webhook.chooser import Chooser
    from kuik_webhook.metrics import WebhookMetrics
    from kuikcore.registry import RegistryClient

    metrics = WebhookMetrics(CollectorRegistry())
    async with RegistryClient() as client:
        chooser = Chooser(client, board=None, metrics=metrics, check_timeout=1, cache_ttl=5)
        lone = Candidate(Alternative("127.0.0.1:1/up/x:1", "ClusterReplicatedImageSet/r"))
        original = Candidate(Alternative("127.0.0.1:1/x:1", ORIGINAL))
        decisions = await chooser.decide([[lone], [original]], deadline=float("inf"))
        await chooser.close()
    assert [d.chosen for d in decisions] == [0, None]
    assert decisions[0].reason == "single candidate"
    assert len(chooser.flights) == 0
    assert len(chooser.cache) == 0


def test_update_without_old_object_never_adds_pull_secrets() -> None:
    obj = pod(container("a", "a.local/a:1"), namespace="apps")
    plan = plan_pod(request(obj, operation="UPDATE", old=None), [MIRRORS], RoutingOptions())
    assert [t.container.key for t in plan.targets] == ["a"]
    assert plan.can_add_pull_secrets is False


async def test_decide_cached_only_when_the_cache_knows_every_candidate() -> None:
    """What identical admissions may reuse: the decision `decide` gives without reading or
    checking anything, and until when (the first of its verdicts to expire)."""
    from prometheus_client import CollectorRegistry

    from kuik_webhook.chooser import Chooser
    from kuik_webhook.metrics import WebhookMetrics
    from kuikcore.registry import RegistryClient

    now = [100.0]
    metrics = WebhookMetrics(CollectorRegistry())
    async with RegistryClient() as client:
        chooser = Chooser(
            client,
            board=None,
            metrics=metrics,
            check_timeout=1,
            cache_ttl=5,
            clock=lambda: now[0],
            wall=lambda: now[0],
        )
        chooser.cache._clock = lambda: now[0]
        original = Candidate(Alternative("127.0.0.1:1/x:1", ORIGINAL))
        near = Candidate(Alternative("127.0.0.1:1/m/x:1", "ClusterImageSetMirror/near"))
        far = Candidate(Alternative("127.0.0.1:1/f/x:1", "ClusterImageSetMirror/far"))
        lists = [[original, near, far]]
        assert chooser.decide_cached(lists) is None  # nothing known
        version = chooser.cache.version
        chooser.cache.set(
            original.cache_key, Verdict(AvailabilityStatus.NOT_FOUND, Source.CHECK, at=now[0])
        )
        now[0] += 2
        chooser.cache.set(
            near.cache_key, Verdict(AvailabilityStatus.AVAILABLE, Source.CHECK, at=now[0])
        )
        assert chooser.cache.version == version + 2  # every new verdict shows
        # `decide` would still start a check of `far`: not a cache-only decision
        assert chooser.decide_cached(lists) is None
        chooser.cache.set(
            far.cache_key, Verdict(AvailabilityStatus.AVAILABLE, Source.CHECK, at=now[0])
        )
        found = chooser.decide_cached(lists)
        assert found is not None
        decisions, valid_until = found
        assert [d.chosen for d in decisions] == [1]
        assert valid_until == 105.0  # the original's verdict, set first, expires first
        assert decisions == await chooser.decide(lists, deadline=float("inf"))
        now[0] = 105.0
        assert chooser.decide_cached(lists) is None  # expired: checks again
        await chooser.close()


def test_response_template_renders_any_uid() -> None:
    from kuik_webhook.review import ResponseTemplate

    ops = [{"op": "replace", "path": "/spec/containers/0/image", "value": "é/b<&>"}]
    template = ResponseTemplate.of(patch=ops, warnings=["w"])
    for uid in ("a", 'quote"and\\slash', "ünï"):
        body = json.loads(template.render(uid))
        assert body == json.loads(encode_response(uid, patch=ops, warnings=["w"]))
        assert body["response"]["uid"] == uid
        assert json.loads(base64.b64decode(body["response"]["patch"])) == ops


@pytest.mark.parametrize(
    "odd",
    ["NaN", "123456789012345678901234567890", '"\\ud800"'],
    ids=["nan", "huge-int", "lone-surrogate"],
)
def test_json_the_fast_decoder_refuses_is_still_read(odd: str) -> None:
    """The stdlib reads these and orjson does not: the same bodies are accepted as before."""
    text = (
        '{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", '
        f'"request": {{"uid": "u", "object": {{"odd": {odd}}}}}}}'
    )
    req = decode_review(text.encode())
    assert req.uid == "u"
    assert "odd" in req.object


def test_a_string_the_fast_encoder_refuses_is_still_encoded() -> None:
    lone = "registry.local/x\ud800:1"  # what a lone surrogate escape in a Pod decodes to
    body = json.loads(encode_response("u", patch=[{"op": "add", "path": "/x", "value": lone}]))
    assert json.loads(base64.b64decode(body["response"]["patch"]))[0]["value"] == lone


async def test_verdicts_live_as_long_as_their_host_is_known_up_and_die_with_a_transition() -> None:
    """Past `cacheTTL`, a verdict on a host the probes confirm up is still used at once (no
    waiting at admission) and revalidated in the background; a host known down overrides any
    verdict; a transition since the verdict voids it."""
    from prometheus_client import CollectorRegistry

    from kuik_webhook.chooser import Chooser
    from kuik_webhook.metrics import WebhookMetrics
    from kuikcore.health import Observation
    from kuikcore.health.keeper import HealthKeeper, HealthSettings
    from kuikcore.registry import RegistryClient

    now = [1000.0]
    async with RegistryClient() as client:
        keeper = HealthKeeper(
            client.transport,
            coord=None,
            settings=HealthSettings(),
            identity="t",
            service="test",
            registry=CollectorRegistry(),
            clock=lambda: now[0],
        )
        chooser = Chooser(
            client,
            board=None,
            metrics=WebhookMetrics(CollectorRegistry()),
            check_timeout=0.2,
            cache_ttl=5,
            health=keeper,
            clock=lambda: now[0],
            wall=lambda: now[0],
        )
        chooser.cache._clock = lambda: now[0]
        host = "127.0.0.1:1"  # nothing listens: a background recheck fails at once
        original = Candidate(Alternative(f"{host}/x:1", ORIGINAL))
        mirror = Candidate(Alternative("127.0.0.2:1/m/x:1", "ClusterImageSetMirror/m"))
        lists = [[original, mirror]]

        def up(host: str) -> None:
            keeper.view.observe(host, Observation(True, now[0], "probe"), up_after=2)

        up(host)
        up("127.0.0.2:1")
        chooser.cache.set(
            original.cache_key, Verdict(AvailabilityStatus.AVAILABLE, Source.CHECK, at=now[0])
        )
        now[0] += 30  # past cacheTTL (5 s), within the verdict's life (60 s)
        assert chooser.decide_cached(lists) is None  # not reusable as is: it must be revalidated
        up(host)  # still confirmed up by the probes
        [decision] = await chooser.decide(lists, deadline=now[0] + 1)
        assert decision.chosen == 0  # the last known answer serves, at once
        assert original.cache_key in chooser.flights._running  # rechecked in the background
        await chooser.flights.cancel_all()

        # unconfirmed host (the prober gone): the old verdict is not worth acting on
        now[0] += 10
        verdict, _ = chooser._known(original, now[0])
        assert verdict is None

        # known down: rejected at once whatever the cache says
        version = chooser.version
        keeper.view.observe(host, Observation(False, now[0], "probe p", "refused"), up_after=2)
        assert chooser.version != version  # remembered admissions are dropped
        chooser.cache.set(
            original.cache_key, Verdict(AvailabilityStatus.AVAILABLE, Source.CHECK, at=now[0])
        )
        verdict, _ = chooser._known(original, now[0])
        assert verdict is not None
        assert (verdict.status, verdict.source) == (AvailabilityStatus.UNREACHABLE, Source.HEALTH)
        assert "down since" in (verdict.error or "")
        assert "probe p" in (verdict.error or "")

        # back up (two answers): what was known before the transition is void
        now[0] += 1
        keeper.view.observe(host, Observation(True, now[0], "probe"), up_after=2)
        now[0] += 0.5
        keeper.view.observe(host, Observation(True, now[0], "probe"), up_after=2)
        assert chooser._known(original, now[0])[0] is None
        await chooser.close()
