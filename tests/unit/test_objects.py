"""kuik_testing.objects builds what kube-apiserver accepts: the strict API fake stores every
builder's object, core kinds pass the Kubernetes 1.31 schemas, kuik kinds pass `parse_resource`
(the CRD's rules), and an AdmissionReview carries a Pod that does. A builder drifting from
the API fails here rather than as a puzzling failure in the test that uses it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest

from kuik_testing import objects
from kuik_testing.apiserver import ApiError, FakeApiServer
from kuik_testing.objects import (
    all_images,
    cisa,
    cism,
    container,
    cris,
    docker_secret,
    ism,
    mirror,
    pod,
    review,
    ris,
    secret,
    upstream,
)
from kuikcore.api import ORIGINAL_IMAGES_ANNOTATION, InvalidResource, parse_resource

K8S = "1.31"

PODS = {
    "bare": pod("nginx"),
    "full": pod(
        "nginx:1.27",
        container("side", "redis:7", policy="Always"),
        namespace="apps",
        name="web",
        init=["busybox"],
        ephemeral=["alpine"],
        policy="IfNotPresent",
        labels={"app": "web"},
        annotations={"team": "a"},
        originals={"c0": "nginx:1.27"},
        pull_secrets=["pull"],
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        status={"phase": "Running"},
    ),
}

RESOURCES = {
    "cism": cism("all", mirror(), filter=all_images(), priority=-1),
    "cism with credentials": cism(
        "creds",
        mirror("m.example", "/m", credentialSecret={"name": "c", "namespace": "kuik"}),
        cleanup={"enabled": True, "retention": "1h"},
    ),
    "cism legacy filter": cism("legacy", mirror(), imageFilter={"include": [".*"]}),
    "ism": ism("apps", "team", mirror(), filter=all_images()),
    "cris": cris("r", upstream("docker.io"), upstream("mirror.example", "/u", priority=1)),
    "ris": ris("apps", "r", upstream("docker.io", imageFilter={"include": [".*"]})),
    "cisa": cisa("avail", filter=all_images()),
    "cisa with status": cisa("seen", images=[{"image": "nginx:1", "status": "Available"}]),
}

SECRETS = {
    "opaque": secret("apps", "s", labels={"a": "b"}, token="dA=="),
    "docker": docker_secret("apps", "pull", "registry.example:5000"),
    "docker, as written": docker_secret("apps", "pull", "r.example", string_data=True),
}


def _stored(obj: dict[str, Any]) -> dict[str, Any]:
    return FakeApiServer().create(obj)


@pytest.mark.parametrize("obj", PODS.values(), ids=PODS.keys())
def test_pods_pass_the_schema_and_the_fake(obj: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(obj, K8S, strict=True) == K8S
    assert _stored(obj)["spec"] == obj["spec"]


@pytest.mark.parametrize("obj", SECRETS.values(), ids=SECRETS.keys())
def test_secrets_pass_the_schema_and_the_fake(obj: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(obj, K8S, strict=True) == K8S
    assert _stored(obj)["type"] == obj["type"]


@pytest.mark.parametrize("obj", RESOURCES.values(), ids=RESOURCES.keys())
def test_kuik_kinds_pass_the_crd_rules_and_the_fake(obj: dict[str, Any]) -> None:
    parsed = parse_resource(obj)
    assert (parsed.KIND, parsed.metadata.name) == (obj["kind"], obj["metadata"]["name"])
    assert _stored(obj)["spec"] == obj["spec"]


def test_the_checks_above_do_fail_on_a_drifted_builder() -> None:
    """The same checks refuse what a careless edit of a builder would produce."""
    wrong = pod("nginx", name="Not_A_Name")
    with pytest.raises(ApiError):
        _stored(wrong)
    typo = pod("nginx", spec={"imagePullSecret": [{"name": "x"}]})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S, strict=True)
    with pytest.raises(InvalidResource, match="mirrors"):
        parse_resource(cism("m", mirror(), mirrors="not-a-list"))


def test_pod_shapes() -> None:
    full = PODS["full"]
    spec = full["spec"]
    assert [(c["name"], c["imagePullPolicy"]) for c in spec["containers"]] == [
        ("c0", "IfNotPresent"),
        ("side", "Always"),  # a container's own policy wins
    ]
    assert [c["name"] for c in spec["initContainers"]] == ["i0"]
    assert [c["name"] for c in spec["ephemeralContainers"]] == ["e0"]
    assert spec["imagePullSecrets"] == [{"name": "pull"}]
    meta = full["metadata"]
    assert meta["annotations"] == {"team": "a", ORIGINAL_IMAGES_ANNOTATION: '{"c0": "nginx:1.27"}'}
    assert meta["creationTimestamp"] == "2026-01-02T03:04:05Z"
    assert "namespace" not in pod("nginx", namespace=None)["metadata"]
    assert pod("nginx")["spec"] == {"containers": [{"name": "c0", "image": "nginx"}]}


def test_reviews_carry_the_pod_as_an_api_server_sends_it() -> None:
    obj = PODS["full"]
    sent = review(obj, operation="UPDATE", old=obj, uid="u1", sub_resource="ephemeralcontainers")
    assert sent["apiVersion"] == "admission.k8s.io/v1"
    assert sent["kind"] == "AdmissionReview"
    request = sent["request"]
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert (request["namespace"], request["name"], request["uid"]) == ("apps", "web", "u1")
    assert (request["operation"], request["subResource"], request["dryRun"]) == (
        "UPDATE",
        "ephemeralcontainers",
        False,
    )
    assert kubernetes_validate.validate(request["object"], K8S, strict=True) == K8S
    assert review(pod("nginx", namespace=None))["request"]["namespace"] == "default"
    assert review(obj)["request"]["uid"] != review(obj)["request"]["uid"]
    assert objects.body({"a": 1}) == b'{"a": 1}'
