"""kuikcore.routing: upstream's alternative order (§3.6), one test per rule, plus kuik's additions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kuik_testing import objects
from kuik_testing.objects import cism, cris, ism, mirror, ris, upstream
from kuikcore.api import (
    ORIGINAL_IMAGES_ANNOTATION,
    ClusterImageSetMirror,
    ClusterReplicatedImageSet,
    ImageSetMirror,
    Mirror,
    ReplicatedImageSet,
    Resource,
    parse_resource,
)
from kuikcore.filters import SkipRules
from kuikcore.manifests import read_manifests
from kuikcore.routing import (
    ContainerType,
    PodRoute,
    RoutingOptions,
    SecretRef,
    effective_pull_policy,
    is_under_mirror_prefix,
    mirror_destination,
    mirror_prefixes,
    normalised_image,
    original_images,
    pod_images,
    read_containers,
    read_pod,
    route_pod,
    route_view,
)

DATA = Path(__file__).parent.parent / "data" / "routing"
V = "kuik.enix.io/v1alpha1"
NGINX = "docker.io/library/nginx:1.29"
# the legacy filter of every image (model_validate copies it, so one dict serves all)
LEGACY_ALL = {"include": [".*"]}


def images(route: PodRoute, index: int = 0) -> list[str]:
    return [a.image for a in route.containers[index].alternatives]


def sources(route: PodRoute, index: int = 0) -> list[str]:
    return [a.source for a in route.containers[index].alternatives]


# --- upstream's documented examples (docs/concepts/image-routing.md) --------------------


def _example(name: str) -> tuple[dict[str, Any], list[Resource], dict[str, Any]]:
    pod = read_manifests(DATA / name / "pod.yaml")[0].obj
    resources: list[Resource] = [
        parse_resource(m.obj)
        for m in read_manifests(DATA / name / "cluster")
        if m.obj["apiVersion"] == V
    ]
    expected = json.loads((DATA / name / "expected.json").read_text())
    return pod, resources, expected


@pytest.mark.parametrize("example", ["nginx-unprivileged", "team-and-global-mirror"])
def test_documented_examples(example: str) -> None:
    pod, resources, expected = _example(example)
    route = route_pod(pod, resources)
    assert {"containers": [c.to_dict() for c in route.containers]} == expected


# --- sort order (upstream's compareAlternatives cases, through real CRs) ------------------


def test_default_type_order_original_cism_ism_cris_ris() -> None:
    route = route_pod(
        objects.pod(NGINX, policy="IfNotPresent"),
        [
            ReplicatedImageSet.model_validate(
                ris(
                    "default",
                    "r",
                    upstream("docker.io", imageFilter=LEGACY_ALL),
                    upstream("ris.example", imageFilter=LEGACY_ALL),
                )
            ),
            ClusterReplicatedImageSet.model_validate(
                cris(
                    "c",
                    upstream("docker.io", imageFilter=LEGACY_ALL),
                    upstream("cris.example", imageFilter=LEGACY_ALL),
                )
            ),
            ImageSetMirror.model_validate(
                ism("default", "i", mirror("ism.example", "/mirror"), imageFilter=LEGACY_ALL)
            ),
            ClusterImageSetMirror.model_validate(
                cism("g", mirror("cism.example", "/mirror"), imageFilter=LEGACY_ALL)
            ),
        ],
    )
    assert images(route) == [
        NGINX,
        "cism.example/mirror/library/nginx:1.29",
        "ism.example/mirror/library/nginx:1.29",
        "cris.example/library/nginx:1.29",
        "ris.example/library/nginx:1.29",
    ]
    assert sources(route) == [
        "original",
        "ClusterImageSetMirror/g",
        "ImageSetMirror/default/i",
        "ClusterReplicatedImageSet/c",
        "ReplicatedImageSet/default/r",
    ]


def test_cr_priority_ascending_negative_first() -> None:
    route = route_pod(
        objects.pod(NGINX, policy="IfNotPresent"),
        [
            ClusterImageSetMirror.model_validate(
                cism("p0", mirror("p0.example", "/mirror"), imageFilter=LEGACY_ALL)
            ),
            ClusterImageSetMirror.model_validate(
                cism("p5", mirror("p5.example", "/mirror"), priority=5, imageFilter=LEGACY_ALL)
            ),
            ClusterImageSetMirror.model_validate(
                cism("n10", mirror("n10.example", "/mirror"), priority=-10, imageFilter=LEGACY_ALL)
            ),
            ClusterImageSetMirror.model_validate(
                cism("n1", mirror("n1.example", "/mirror"), priority=-1, imageFilter=LEGACY_ALL)
            ),
        ],
    )
    assert [i.split("/")[0] for i in images(route)] == [
        "n10.example",
        "n1.example",
        "docker.io",
        "p0.example",
        "p5.example",
    ]


def test_type_order_breaks_equal_cr_priority() -> None:
    route = route_pod(
        objects.pod(NGINX, policy="IfNotPresent"),
        [
            ImageSetMirror.model_validate(
                ism(
                    "default",
                    "i",
                    mirror("ism.example", "/mirror"),
                    priority=-1,
                    imageFilter=LEGACY_ALL,
                )
            ),
            ClusterImageSetMirror.model_validate(
                cism("c", mirror("cism.example", "/mirror"), priority=-1, imageFilter=LEGACY_ALL)
            ),
        ],
    )
    assert [i.split("/")[0] for i in images(route)] == ["cism.example", "ism.example", "docker.io"]


def test_intra_priority_zero_first_then_ascending_then_declaration_order() -> None:
    route = route_pod(
        objects.pod(NGINX, policy="IfNotPresent"),
        [
            ClusterImageSetMirror.model_validate(
                cism(
                    "c",
                    mirror("prio5.example", "/mirror", priority=5),
                    mirror("prio1.example", "/mirror", priority=1),
                    mirror("first.example", "/mirror"),
                    mirror("second.example", "/mirror"),
                    imageFilter=LEGACY_ALL,
                )
            )
        ],
    )
    assert [i.split("/")[0] for i in images(route)] == [
        "docker.io",
        "first.example",
        "second.example",
        "prio1.example",
        "prio5.example",
    ]
    ranks = [a.rank for a in route.containers[0].alternatives]
    assert ranks == sorted(ranks)


# --- upstream's buildAlternativesList cases -----------------------------------------------


def test_filter_image_dimension_routes_to_mirror() -> None:
    by_filter = ImageSetMirror.model_validate(
        ism(
            "default",
            "global",
            mirror("harbor.example.com", "/mirror"),
            imageFilter={},
            filter={"include": [{"image": r"docker\.io/library/nginx.*"}]},
        )
    )
    assert images(route_pod(objects.pod(NGINX, policy="IfNotPresent"), [by_filter])) == [
        NGINX,
        "harbor.example.com/mirror/library/nginx:1.29",
    ]
    assert images(
        route_pod(objects.pod("docker.io/library/redis:7", policy="IfNotPresent"), [by_filter])
    ) == ["docker.io/library/redis:7"]


def test_replicated_set_ignores_top_level_image_items() -> None:
    # the CRD refuses them; a model built without the CEL rules must still not filter on them
    r = ReplicatedImageSet.model_validate(
        {
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {
                "filter": {"include": [{"image": r"docker\.io/library/nginx.*"}]},
                "upstreams": [
                    upstream("docker.io", imageFilter=LEGACY_ALL),
                    upstream("mirror.example.com", imageFilter=LEGACY_ALL),
                ],
            },
        }
    )
    assert images(
        route_pod(objects.pod("docker.io/library/redis:7", policy="IfNotPresent"), [r])
    ) == [
        "docker.io/library/redis:7",
        "mirror.example.com/library/redis:7",
    ]


def test_every_upstream_invalid_contributes_nothing() -> None:
    bad = ClusterReplicatedImageSet.model_validate(
        cris("r", upstream("mirror.example.com", imageFilter={"include": ["["]}))
    )
    route = route_pod(objects.pod(NGINX, policy="IfNotPresent"), [bad])
    assert images(route) == [NGINX]
    assert [p.field_path for p in route.problems] == ["spec.upstreams[0].imageFilter.include[0]"]


def test_invalid_upstream_skipped_alone() -> None:
    r = ClusterReplicatedImageSet.model_validate(
        cris(
            "r",
            upstream("broken.example.com", imageFilter={"include": ["["]}),
            upstream("docker.io", imageFilter=LEGACY_ALL),
            upstream("mirror.example.com", imageFilter=LEGACY_ALL),
        )
    )
    route = route_pod(objects.pod(NGINX, policy="IfNotPresent"), [r])
    assert images(route) == [NGINX, "mirror.example.com/library/nginx:1.29"]
    assert len(route.problems) == 1


def test_invalid_image_set_mirror_skipped_and_reported() -> None:
    bad = ImageSetMirror.model_validate(
        ism(
            "default",
            "bad",
            mirror("harbor.example.com", "/mirror"),
            imageFilter={"include": ["["]},
        )
    )
    route = route_pod(objects.pod(NGINX, policy="IfNotPresent"), [bad])
    assert images(route) == [NGINX]
    assert [(p.resource, p.field_path) for p in route.problems] == [
        ("ImageSetMirror/default/bad", "spec.imageFilter.include[0]")
    ]


def test_broken_regex_in_one_cr_leaves_the_others_routing() -> None:
    resources: list[Resource] = [
        ClusterImageSetMirror.model_validate(
            cism(
                "a-broken",
                mirror("broken.example", "/mirror"),
                imageFilter={},
                filter={"include": [{"image": "(("}]},
            )
        ),
        ClusterImageSetMirror.model_validate(
            cism("b-good", mirror("good.example", "/mirror"), priority=-1, imageFilter=LEGACY_ALL)
        ),
        ClusterReplicatedImageSet.model_validate(
            cris(
                "c-broken-selector",
                upstream("x.example", imageFilter=LEGACY_ALL),
                filter={"include": [{"label": "==="}]},
            )
        ),
        ClusterReplicatedImageSet.model_validate(
            cris(
                "d-good",
                upstream("docker.io", imageFilter=LEGACY_ALL),
                upstream("hub-mirror.example", imageFilter=LEGACY_ALL),
            )
        ),
    ]
    route = route_pod(objects.pod(NGINX, "quay.io/a/b:1", policy="IfNotPresent"), resources)
    assert images(route, 0) == [
        "good.example/mirror/library/nginx:1.29",
        NGINX,
        "hub-mirror.example/library/nginx:1.29",
    ]
    assert images(route, 1) == ["good.example/mirror/a/b:1", "quay.io/a/b:1"]
    assert sorted(p.resource for p in route.problems) == [
        "ClusterImageSetMirror/a-broken",
        "ClusterReplicatedImageSet/c-broken-selector",
    ]


def test_always_pins_original_first() -> None:
    route = route_pod(
        objects.pod(NGINX, policy="Always"),
        [
            ClusterImageSetMirror.model_validate(
                cism(
                    "g",
                    mirror("harbor.example.com", "/mirror"),
                    priority=-1,
                    imageFilter=LEGACY_ALL,
                )
            )
        ],
    )
    assert images(route) == [NGINX, "harbor.example.com/mirror/library/nginx:1.29"]


def test_always_honours_priorities_when_configured() -> None:
    options = RoutingOptions(honor_priorities_on_always_image_pull_policy=True)
    negative = ClusterImageSetMirror.model_validate(
        cism("g", mirror("harbor.example.com", "/mirror"), priority=-1, imageFilter=LEGACY_ALL)
    )
    route = route_pod(objects.pod(NGINX, policy="Always"), [negative], options)
    assert images(route) == ["harbor.example.com/mirror/library/nginx:1.29", NGINX]
    zero = ClusterImageSetMirror.model_validate(
        cism("g", mirror("harbor.example.com", "/mirror"), imageFilter=LEGACY_ALL)
    )
    assert images(route_pod(objects.pod(NGINX, policy="Always"), [zero], options))[0] == NGINX


def test_if_not_present_honours_negative_priority_whatever_the_flag() -> None:
    negative = [
        ClusterImageSetMirror.model_validate(
            cism("g", mirror("harbor.example.com", "/mirror"), priority=-1, imageFilter=LEGACY_ALL)
        )
    ]
    for options in (
        RoutingOptions(),
        RoutingOptions(honor_priorities_on_always_image_pull_policy=True),
    ):
        assert images(route_pod(objects.pod(NGINX, policy="IfNotPresent"), negative, options)) == [
            "harbor.example.com/mirror/library/nginx:1.29",
            NGINX,
        ]


def test_unset_pull_policy_defaults_like_the_api_server() -> None:
    pod = objects.pod("nginx", policy="IfNotPresent")
    del pod["spec"]["containers"][0]["imagePullPolicy"]
    route = route_pod(
        pod,
        [
            ClusterImageSetMirror.model_validate(
                cism(
                    "g",
                    mirror("harbor.example.com", "/mirror"),
                    priority=-1,
                    imageFilter=LEGACY_ALL,
                )
            )
        ],
    )
    assert (
        images(route)[0] == "docker.io/library/nginx"
    )  # :latest implied => Always => original first


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.29", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ],
)
def test_effective_pull_policy(image: str, policy: str) -> None:
    assert effective_pull_policy({"image": image}) == policy
    assert effective_pull_policy({"image": image, "imagePullPolicy": "Never"}) == "Never"


def test_discarded_upstream_matched_removes_original_too() -> None:
    route = route_pod(
        objects.pod(NGINX, policy="IfNotPresent"),
        [
            ClusterReplicatedImageSet.model_validate(
                cris("r", upstream("docker.io", discardAlternative=True, imageFilter=LEGACY_ALL))
            )
        ],
    )
    assert images(route) == []
    assert route.containers[0].skipped is None


def test_discarded_upstream_keeps_the_active_one() -> None:
    r = ClusterReplicatedImageSet.model_validate(
        cris(
            "r",
            upstream("docker.io", discardAlternative=True, imageFilter=LEGACY_ALL),
            upstream("mirror.example.com", imageFilter=LEGACY_ALL),
        )
    )
    assert images(
        route_pod(objects.pod("mirror.example.com/library/nginx:1.29", policy="IfNotPresent"), [r])
    ) == ["mirror.example.com/library/nginx:1.29"]
    assert images(route_pod(objects.pod(NGINX, policy="IfNotPresent"), [r])) == [
        "mirror.example.com/library/nginx:1.29"
    ]


def test_discarded_upstream_not_matched_keeps_original() -> None:
    r = ClusterReplicatedImageSet.model_validate(
        cris(
            "r",
            upstream("mirror1.example.com", discardAlternative=True, imageFilter=LEGACY_ALL),
            upstream("mirror2.example.com", imageFilter=LEGACY_ALL),
            upstream("docker.io", imageFilter=LEGACY_ALL),
        )
    )
    assert images(route_pod(objects.pod(NGINX, policy="IfNotPresent"), [r])) == [
        NGINX,
        "mirror2.example.com/library/nginx:1.29",
    ]


# --- scope and skip rules -----------------------------------------------------------------


def test_namespaced_crs_apply_only_to_their_namespace() -> None:
    resources: list[Resource] = [
        ImageSetMirror.model_validate(
            ism("team-a", "mine", mirror("a.example", "/mirror"), imageFilter=LEGACY_ALL)
        ),
        ImageSetMirror.model_validate(
            ism("team-b", "theirs", mirror("b.example", "/mirror"), imageFilter=LEGACY_ALL)
        ),
        ReplicatedImageSet.model_validate(
            ris(
                "team-b",
                "theirs",
                upstream("docker.io", imageFilter=LEGACY_ALL),
                upstream("rb.example", imageFilter=LEGACY_ALL),
            )
        ),
    ]
    route = route_pod(objects.pod(NGINX, namespace="team-a", policy="IfNotPresent"), resources)
    assert images(route) == [NGINX, "a.example/mirror/library/nginx:1.29"]


def test_pod_selection_by_labels_annotations_and_namespace() -> None:
    selective = ClusterImageSetMirror.model_validate(
        cism(
            "sel",
            mirror("sel.example", "/mirror"),
            imageFilter={},
            filter={"include": [{"label": "app=api"}], "exclude": [{"namespace": "kube-.*"}]},
        )
    )
    api = objects.pod(NGINX, labels={"app": "api"}, policy="IfNotPresent")
    web = objects.pod(NGINX, labels={"app": "web"}, policy="IfNotPresent")
    assert len(images(route_pod(api, [selective]))) == 2
    assert len(images(route_pod(web, [selective]))) == 1
    kube = objects.pod(NGINX, labels={"app": "api"}, namespace="kube-system", policy="IfNotPresent")
    assert len(images(route_pod(kube, [selective]))) == 1


def test_mirror_pod_skipped_with_reason() -> None:
    pod = objects.pod(
        NGINX, annotations={"kubernetes.io/config.mirror": "abc"}, policy="IfNotPresent"
    )
    route = route_pod(
        pod,
        [
            ClusterImageSetMirror.model_validate(
                cism("g", mirror("m.example", "/mirror"), priority=-1, imageFilter=LEGACY_ALL)
            )
        ],
    )
    assert route.skipped is not None
    assert "kubernetes.io/config.mirror" in route.skipped
    assert route.containers[0].skipped == route.skipped
    assert images(route) == []


def test_skip_labels_and_annotations() -> None:
    options = RoutingOptions(skip=SkipRules.parse(["team in (infra)"], ["kuik/skip"]))
    resources: list[Resource] = [
        ClusterImageSetMirror.model_validate(
            cism("g", mirror("m.example", "/mirror"), imageFilter=LEGACY_ALL)
        )
    ]
    by_label = route_pod(
        objects.pod(NGINX, labels={"team": "infra"}, policy="IfNotPresent"), resources, options
    )
    assert by_label.skipped is not None
    assert "team in (infra)" in by_label.skipped
    by_annotation = route_pod(
        objects.pod(NGINX, annotations={"kuik/skip": ""}, policy="IfNotPresent"), resources, options
    )
    assert by_annotation.skipped is not None
    assert "skipAnnotations" in by_annotation.skipped
    assert (
        route_pod(
            objects.pod(NGINX, labels={"team": "web"}, policy="IfNotPresent"), resources, options
        ).skipped
        is None
    )


def test_never_pull_policy_skipped_unless_configured() -> None:
    resources: list[Resource] = [
        ClusterImageSetMirror.model_validate(
            cism("g", mirror("m.example", "/mirror"), priority=-1, imageFilter=LEGACY_ALL)
        )
    ]
    route = route_pod(objects.pod(NGINX, policy="Never"), resources)
    skipped = route.containers[0].skipped
    assert skipped is not None
    assert "Never" in skipped
    assert images(route) == []
    rewritten = route_pod(
        objects.pod(NGINX, policy="Never"),
        resources,
        RoutingOptions(rewrite_on_never_image_pull_policy=True),
    )
    assert images(rewritten) == ["m.example/mirror/library/nginx:1.29", NGINX]


def test_invalid_image_reference_skipped_with_reason() -> None:
    route = route_pod(
        objects.pod("nginx:tag with space", NGINX, policy="IfNotPresent"),
        [
            ClusterImageSetMirror.model_validate(
                cism("g", mirror("m.example", "/mirror"), imageFilter=LEGACY_ALL)
            )
        ],
    )
    reason = route.containers[0].skipped
    assert reason is not None
    assert reason.startswith("invalid image reference")
    assert images(route, 1) == [NGINX, "m.example/mirror/library/nginx:1.29"]


def test_already_processed_containers_skipped() -> None:
    annotation = json.dumps({"c0": "nginx:1.29", "init:i0": "busybox"})
    pod = objects.pod(
        NGINX,
        "redis:7",
        init=("busybox", "alpine"),
        annotations={ORIGINAL_IMAGES_ANNOTATION: annotation},
        policy="IfNotPresent",
    )
    route = route_pod(
        pod,
        [
            ClusterImageSetMirror.model_validate(
                cism("g", mirror("m.example", "/mirror"), imageFilter=LEGACY_ALL)
            )
        ],
    )
    skipped = [(c.key, c.skipped is not None) for c in route.containers]
    assert skipped == [("c0", True), ("c1", False), ("init:i0", True), ("init:i1", False)]


# --- beyond upstream ----------------------------------------------------------------------


def test_init_and_ephemeral_containers_routed_with_their_keys() -> None:
    pod = objects.pod(NGINX, init=("busybox:1.36",), ephemeral=("alpine:3",), policy="IfNotPresent")
    route = route_pod(
        pod,
        [
            ClusterImageSetMirror.model_validate(
                cism("g", mirror("m.example", "/mirror"), priority=-1, imageFilter=LEGACY_ALL)
            )
        ],
    )
    assert [(c.type, c.key) for c in route.containers] == [
        (ContainerType.CONTAINER, "c0"),
        (ContainerType.INIT, "init:i0"),
        (ContainerType.EPHEMERAL, "ephemeral:e0"),
    ]
    assert images(route, 1) == [
        "m.example/mirror/library/busybox:1.36",
        "docker.io/library/busybox:1.36",
    ]
    assert images(route, 2) == ["m.example/mirror/library/alpine:3", "docker.io/library/alpine:3"]
    assert route.containers[1].to_dict()["type"] == "init"


@pytest.mark.parametrize(
    "image",
    [
        "docker.io/library/nginx@sha256:" + "b" * 64,
        "docker.io/library/nginx:1.29@sha256:" + "b" * 64,
    ],
)
def test_digest_pinned_images_keep_their_digest(image: str) -> None:
    resources: list[Resource] = [
        ClusterImageSetMirror.model_validate(
            cism("g", mirror("m.example", "/mirror"), priority=-1, imageFilter=LEGACY_ALL)
        ),
        ClusterReplicatedImageSet.model_validate(
            cris(
                "hub",
                upstream("docker.io", "/library", imageFilter={"include": ["/library/.+"]}),
                upstream("mirror.gcr.io", "/library", imageFilter=LEGACY_ALL),
            )
        ),
    ]
    route = route_pod(objects.pod(image, policy="IfNotPresent"), resources)
    alternatives = images(route)
    digest = image.partition("@")[2]
    assert image in alternatives
    # original, the other upstream, and one mirror (mirrors drop the host: both copies coincide)
    assert len(alternatives) == 3
    assert all(a.endswith("@" + digest) for a in alternatives)


def test_no_mirror_of_a_mirror() -> None:
    # upstream Appendix B #13: two catch-all CISMs produced mirror-of-mirror candidates
    resources: list[Resource] = [
        ClusterImageSetMirror.model_validate(
            cism("a", mirror("a.example", "/mirror"), imageFilter=LEGACY_ALL)
        ),
        ClusterImageSetMirror.model_validate(
            cism("b", mirror("b.example", "/mirror"), imageFilter=LEGACY_ALL)
        ),
    ]
    assert images(route_pod(objects.pod(NGINX, policy="IfNotPresent"), resources)) == [
        NGINX,
        "a.example/mirror/library/nginx:1.29",
        "b.example/mirror/library/nginx:1.29",
    ]


def test_pod_already_on_a_mirror_is_not_mirrored_again() -> None:
    resources: list[Resource] = [
        ClusterImageSetMirror.model_validate(
            cism("a", mirror("a.example", "/mirror"), imageFilter=LEGACY_ALL)
        )
    ]
    assert images(
        route_pod(
            objects.pod("a.example/mirror/library/nginx:1.29", policy="IfNotPresent"), resources
        )
    ) == ["a.example/mirror/library/nginx:1.29"]


def test_mirrors_of_replicated_upstreams() -> None:
    resources: list[Resource] = [
        ClusterReplicatedImageSet.model_validate(
            cris(
                "docker-library",
                upstream(
                    "public.ecr.aws",
                    "/docker/library/",
                    imageFilter={"include": ["/docker/library/.+"]},
                ),
                upstream("docker.io", "/library/", imageFilter={"include": ["/library/[^/]+"]}),
            )
        ),
        ClusterImageSetMirror.model_validate(
            cism("g", mirror("m.example", "/mirror"), imageFilter=LEGACY_ALL)
        ),
    ]
    # upstream's "second pass" (#550): the mirror also copies the replicated upstream's image;
    # equal sort keys keep insertion order (upstreams first, then the original)
    assert images(route_pod(objects.pod(NGINX, policy="IfNotPresent"), resources)) == [
        NGINX,
        "m.example/mirror/docker/library/nginx:1.29",
        "m.example/mirror/library/nginx:1.29",
        "public.ecr.aws/docker/library/nginx:1.29",
    ]


def test_credential_secrets() -> None:
    to_c = mirror(
        "c.example", "/mirror", credentialSecret={"name": "cs", "namespace": "kuik-system"}
    )
    to_i = mirror("i.example", "/mirror", credentialSecret={"name": "is", "namespace": "elsewhere"})
    resources: list[Resource] = [
        ClusterImageSetMirror.model_validate(cism("g", to_c, priority=-2, imageFilter=LEGACY_ALL)),
        ImageSetMirror.model_validate(ism("team", "i", to_i, priority=-1, imageFilter=LEGACY_ALL)),
        ClusterReplicatedImageSet.model_validate(
            cris(
                "r",
                upstream("docker.io", imageFilter=LEGACY_ALL),
                upstream(
                    "u.example",
                    imageFilter=LEGACY_ALL,
                    credentialSecret={"name": "us", "namespace": "kuik-system"},
                ),
            )
        ),
    ]
    route = route_pod(objects.pod(NGINX, namespace="team", policy="IfNotPresent"), resources)
    secrets = {a.image.split("/")[0]: a.credential_secret for a in route.containers[0].alternatives}
    assert secrets == {
        "c.example": SecretRef("cs", "kuik-system"),
        "i.example": SecretRef("is", "team"),  # forced to the ISM's namespace
        "docker.io": None,
        "u.example": SecretRef("us", "kuik-system"),
    }
    owners = {a.source: a.owner for a in route.containers[0].alternatives}
    assert owners["original"] is None
    assert owners["ClusterImageSetMirror/g"] is resources[0]


def test_resource_input_order_does_not_matter() -> None:
    resources: list[Resource] = [
        ClusterImageSetMirror.model_validate(
            cism("b", mirror("b.example", "/mirror"), imageFilter=LEGACY_ALL)
        ),
        ClusterImageSetMirror.model_validate(
            cism("a", mirror("a.example", "/mirror"), imageFilter=LEGACY_ALL)
        ),
    ]
    forward = route_pod(objects.pod(NGINX, policy="IfNotPresent"), resources)
    backward = route_pod(objects.pod(NGINX, policy="IfNotPresent"), list(reversed(resources)))
    assert (
        images(forward)
        == images(backward)
        == [
            NGINX,
            "a.example/mirror/library/nginx:1.29",
            "b.example/mirror/library/nginx:1.29",
        ]
    )


# --- helpers the replicator and monitor share ---------------------------------------------


def test_pod_images_current_and_original() -> None:
    annotation = json.dumps(
        {"c0": "nginx:1.29", "init:i0": "busybox", "ephemeral:e0": "alpine", "x": "::bad"}
    )
    pod = objects.pod(
        "m.example/mirror/library/nginx:1.29",
        init=("m.example/mirror/library/busybox",),
        ephemeral=("alpine",),
        annotations={ORIGINAL_IMAGES_ANNOTATION: annotation},
        policy="IfNotPresent",
    )
    found = [(i.image, i.container, i.type.value, i.original) for i in pod_images(pod)]
    assert found == [
        ("m.example/mirror/library/nginx:1.29", "c0", "container", False),
        ("m.example/mirror/library/busybox", "i0", "init", False),
        ("docker.io/library/alpine", "e0", "ephemeral", False),
        ("docker.io/library/nginx:1.29", "c0", "container", True),
        ("docker.io/library/busybox", "i0", "init", True),
        ("docker.io/library/alpine", "e0", "ephemeral", True),
    ]
    assert len(pod_images(pod, include_originals=False)) == 3


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"c0": 3}'])
def test_original_images_tolerates_garbage(raw: str) -> None:
    pod = objects.pod(NGINX, annotations={ORIGINAL_IMAGES_ANNOTATION: raw}, policy="IfNotPresent")
    assert original_images(pod) == {}


def test_mirror_destination_and_prefixes() -> None:
    m = Mirror(registry="registry.example.com", path="/mirror/")
    assert mirror_destination(m, "nginx:1.27") == "registry.example.com/mirror/library/nginx:1.27"
    assert (
        mirror_destination(m, "quay.io/prometheus/prometheus:v3")
        == "registry.example.com/mirror/prometheus/prometheus:v3"
    )
    resources: list[Resource] = [
        ClusterImageSetMirror.model_validate(
            cism("c", mirror("c.example", "/m"), imageFilter=LEGACY_ALL)
        ),
        ImageSetMirror.model_validate(
            ism("team", "i", mirror("i.example", ""), imageFilter=LEGACY_ALL)
        ),
        ImageSetMirror.model_validate(
            ism("other", "j", mirror("j.example", "/mirror"), imageFilter=LEGACY_ALL)
        ),
    ]
    assert mirror_prefixes(resources) == ("c.example/m", "i.example", "j.example/mirror")
    assert mirror_prefixes(resources, "team") == ("c.example/m", "i.example")
    assert is_under_mirror_prefix("c.example/m/library/nginx", ["c.example/m"])
    assert not is_under_mirror_prefix("c.example/mx/library/nginx", ["c.example/m"])
    assert not is_under_mirror_prefix("c.example.evil/m/x", ["c.example"])


def test_routing_options_from_config(tmp_path: Path) -> None:
    from kuikcore.config import load_config

    config = tmp_path / "config.yaml"
    config.write_text(
        "skipLabels: ['team=infra']\n"
        "skipAnnotations: ['kuik/skip']\n"
        "routing:\n  honorPrioritiesOnAlwaysImagePullPolicy: true\n"
    )
    options = RoutingOptions.from_config(load_config(config, env={}))
    assert options.honor_priorities_on_always_image_pull_policy is True
    assert options.rewrite_on_never_image_pull_policy is False
    assert (
        options.skip.reason(objects.pod(NGINX, labels={"team": "infra"}, policy="IfNotPresent"))
        is not None
    )
    assert (
        options.skip.reason(
            objects.pod(NGINX, annotations={"kuik/skip": "1"}, policy="IfNotPresent")
        )
        is not None
    )
    assert RoutingOptions.from_config(load_config(None, env={})) == RoutingOptions()


@pytest.mark.parametrize(
    "container",
    [
        {"name": "a", "image": "nginx"},
        {"name": "a", "image": "nginx:latest"},
        {"name": "a", "image": "nginx:1.27"},
        {"name": "a", "image": "nginx@sha256:" + "a" * 64},
        {"name": "a", "image": "nginx:1.27", "imagePullPolicy": "Never"},
        {"name": "a", "image": "Not A Reference"},
    ],
)
def test_one_reading_of_a_container_agrees_with_the_mapping_readers(
    container: dict[str, Any],
) -> None:
    """`read_containers` parses each image once; what it gives routing must be what the readers
    of the API dict give (pull policy default, normal form)."""
    (read,) = read_containers({"spec": {"containers": [container]}})
    assert read.effective_pull_policy == effective_pull_policy(container)
    normal = None if read.reference is None else str(read.reference)
    assert normal == normalised_image(container["image"])


def test_route_view_skips_the_processed_keys_it_is_handed() -> None:
    """The webhook hands routing the keys to skip instead of an annotation to decode again."""
    pod = objects.pod(NGINX, policy="IfNotPresent")
    crs = [
        ClusterImageSetMirror.model_validate(
            cism("g", mirror("cism.example", "/mirror"), imageFilter=LEGACY_ALL)
        )
    ]
    view = read_pod(pod)
    routed = route_view(view, crs)
    assert routed == route_pod(pod, crs)
    assert len(routed.containers[0].alternatives) == 2
    skipped = route_view(replace(view, processed={"c0": NGINX}), crs)
    assert skipped.containers[0].skipped is not None
    assert "already processed" in skipped.containers[0].skipped
    assert not skipped.containers[0].alternatives
