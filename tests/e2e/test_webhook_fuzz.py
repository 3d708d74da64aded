"""Hypothesis throws malformed AdmissionReviews and Pods at a running kuik-webhook's /mutate.

Whatever comes in: never a 5xx, never a crash, never a denied Pod, and every patch applies to
the object it was computed for. The routing resources make loopback images contested (a mirror
CR, a replicated set with `discardAlternative`), so the choosing code runs too, against a
refusing port and a real registry, without ever leaving the machine.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from typing import Any

import jsonpatch
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kuik_testing import RegistryServer, free_port, push_image, synthetic_image
from kuik_testing.processes import ServiceProcess
from kuikcore.api import ORIGINAL_IMAGES_ANNOTATION

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        push_image(server, "app/web", "1", synthetic_image("fuzz"))
        push_image(server, "m/app/web", "1", synthetic_image("fuzz"))
        yield server


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer) -> Iterator[int]:
    root = tmp_path_factory.mktemp("fuzz")
    cluster = root / "cluster"
    cluster.mkdir()
    loopback = {"include": [{"image": r"127\.0\.0\.1:\d+/.*"}]}
    docs = [
        {
            "apiVersion": "kuik.enix.io/v1alpha1",
            "kind": "ClusterImageSetMirror",
            "metadata": {"name": "m"},
            "spec": {"filter": loopback, "mirrors": [{"registry": registry.host, "path": "m"}]},
        },
        {
            "apiVersion": "kuik.enix.io/v1alpha1",
            "kind": "ClusterReplicatedImageSet",
            "metadata": {"name": "r"},
            "spec": {
                "upstreams": [
                    {
                        "registry": "127.0.0.1:1",
                        "path": "old",
                        "discardAlternative": True,
                        "imageFilter": {"include": [".*"]},
                    },
                    {"registry": registry.host, "path": "app"},
                ]
            },
        },
    ]
    (cluster / "crs.yaml").write_text(yaml.safe_dump_all(docs))
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"routing": {"activeCheck": {"timeout": "2s"}}, "webhook": {"deadline": "4s"}}
        )
    )
    port = free_port()
    process = ServiceProcess(
        "webhook",
        ["--config", str(config), "--cluster", f"dir:{cluster}", "--listen", f"127.0.0.1:{port}"],
        log_dir=root,
    ).start()
    process.wait_ready()
    yield port
    assert process.running(), process.log_text()[-3000:]
    assert process.get("/healthz")[0] == 200
    process.stop()


def post(port: int, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- strategies -------------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def images(draw: st.DrawFn) -> Any:
    registry_port = draw(st.sampled_from(["1", "2"]))
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return f"127.0.0.1:{registry_port}/app/web:{draw(st.sampled_from(['1', '2', 'latest']))}"
    if choice == 1:
        return f"127.0.0.1:1/old/web@sha256:{'a' * 64}"
    if choice == 2:
        return draw(st.text(max_size=30))
    if choice == 3:
        return draw(json_values)
    if choice == 4:
        return "nginx"
    if choice == 5:
        return f"127.0.0.1:1/old/{draw(st.from_regex(r'[a-z0-9]{1,8}', fullmatch=True))}:1"
    return (
        f"127.0.0.1:{registry_port}/{draw(st.from_regex(r'[a-z]{1,5}/[a-z]{1,5}', fullmatch=True))}"
    )


containers = st.lists(
    st.fixed_dictionaries(
        {"name": st.text(max_size=10) | json_values, "image": images()},
        optional={
            "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never", "", "bogus"])
            | json_values
        },
    )
    | json_values,
    max_size=4,
)


@st.composite
def pods(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    annotations = draw(
        st.dictionaries(
            st.sampled_from([ORIGINAL_IMAGES_ANNOTATION, "kubernetes.io/config.mirror", "x"]),
            st.text(max_size=40) | st.just('{"a": "b"}') | st.just("{}"),
            max_size=2,
        )
        | json_values
    )
    metadata = {"name": draw(st.text(max_size=8)), "annotations": annotations}
    if draw(st.booleans()):
        metadata["namespace"] = draw(st.sampled_from(["default", "apps", ""]))
    spec: dict[str, Any] = {"containers": draw(containers)}
    if draw(st.booleans()):
        spec["initContainers"] = draw(containers)
    if draw(st.booleans()):
        spec["ephemeralContainers"] = draw(containers)
    if draw(st.booleans()):
        spec["imagePullSecrets"] = draw(
            st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}) | json_values, max_size=2)
        )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


@st.composite
def reviews(draw: st.DrawFn) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": draw(st.uuids().map(str) | st.text(min_size=1, max_size=10)),
        "kind": draw(st.just({"group": "", "version": "v1", "kind": "Pod"}) | json_values),
        "resource": draw(st.just({"group": "", "version": "v1", "resource": "pods"}) | json_values),
        "namespace": draw(st.sampled_from(["default", "apps"]) | json_values),
        "operation": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]) | json_values),
        "object": draw(pods()),
        "oldObject": draw(st.none() | pods()),
        "dryRun": draw(st.booleans() | json_values),
    }
    if draw(st.booleans()):
        request["subResource"] = draw(
            st.sampled_from(["ephemeralcontainers", "status"]) | json_values
        )
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


# --- properties -------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_garbage_bodies_get_400_never_5xx(webhook: int, body: bytes) -> None:
    status, _ = post(webhook, body)
    assert status in (200, 400)


@FUZZ
@given(review=reviews())
def test_reviews_are_always_allowed_and_patches_apply(webhook: int, review: dict[str, Any]) -> None:
    status, raw = post(webhook, json.dumps(review).encode())
    assert status == 200, raw
    body = json.loads(raw)
    response = body["response"]
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is True
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        ops = json.loads(base64.b64decode(response["patch"]))
        patched = jsonpatch.apply_patch(review["request"]["object"], ops)
        metadata = patched.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        if isinstance(annotations, dict) and ORIGINAL_IMAGES_ANNOTATION in annotations:
            assert isinstance(json.loads(annotations[ORIGINAL_IMAGES_ANNOTATION]), dict)
    for warning in response.get("warnings", []):
        assert warning.isprintable()
        assert len(warning) <= 240


def test_fuzz_fixture_is_contested(webhook: int, registry: RegistryServer) -> None:
    """The setup really routes: a missing loopback image goes to the mirror or the upstream."""
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "kind": {"kind": "Pod"},
            "resource": {"resource": "pods"},
            "namespace": "apps",
            "operation": "CREATE",
            "object": {
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "127.0.0.1:1/old/web:1"}]},
            },
        },
    }
    response = json.loads(post(webhook, json.dumps(review).encode())[1])["response"]
    ops = json.loads(base64.b64decode(response["patch"]))
    # CISM before CRIS at equal priority (upstream's type order): the mirror of the upstream
    assert {
        "op": "replace",
        "path": "/spec/containers/0/image",
        "value": f"{registry.host}/m/app/web:1",
    } in ops
