"""kuikcore.api: models (API shape in and out) and validation like the CRD (CEL rules included)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kuikcore.api import (
    KINDS,
    UNUSED_MARKER,
    AvailabilityStatus,
    ClusterImageSetAvailability,
    ClusterImageSetMirror,
    ClusterReplicatedImageSet,
    ImageSetMirror,
    ImageSetMirrorStatus,
    InvalidResource,
    MatchingImage,
    MirrorStatus,
    MonitoredImage,
    ReplicatedImageSet,
    check_rules,
    format_time,
    join_path,
    parse_resource,
)

V = "kuik.enix.io/v1alpha1"

# the samples of the behaviour reference §2.5 (from upstream's docs), plus one of each other kind
SAMPLES: list[dict[str, Any]] = [
    {
        "apiVersion": V,
        "kind": "ClusterImageSetMirror",
        "metadata": {"name": "global-mirror"},
        "spec": {
            "priority": -1,
            "filter": {
                "include": [{"image": ".*"}],
                "exclude": [{"label": "cnpg.io/podRole=instance"}, {"namespace": "kube-.*"}],
            },
            "cleanup": {"enabled": True, "retention": "168h"},
            "mirrors": [
                {
                    "registry": "registry.example.com",
                    "path": "/mirror",
                    "priority": 1,
                    "credentialSecret": {"name": "registry-secret", "namespace": "kuik-system"},
                    "cleanup": {"enabled": False},
                }
            ],
        },
        "status": {
            "matchingImages": [
                {
                    "image": "docker.io/library/nginx:1.27",
                    "mirrors": [
                        {
                            "image": "registry.example.com/mirror/library/nginx:1.27",
                            "mirroredAt": "2026-07-13T09:47:32Z",
                            "digest": "sha256:" + "a" * 64,
                            "platforms": ["linux/amd64", "linux/arm64/v8"],
                        }
                    ],
                },
                {"image": "quay.io/prometheus/prometheus:v3.1.0", "unusedSince": UNUSED_MARKER},
            ]
        },
    },
    {
        "apiVersion": V,
        "kind": "ClusterReplicatedImageSet",
        "metadata": {"name": "docker-library"},
        "spec": {
            "upstreams": [
                {
                    "registry": "public.ecr.aws",
                    "path": "/docker/library/",
                    "priority": 1,
                    "imageFilter": {"include": ["/docker/library/.+"]},
                },
                {
                    "registry": "docker.io",
                    "path": "/library/",
                    "discardAlternative": True,
                    "imageFilter": {"include": ["/library/[^/]+"]},
                    "credentialSecret": {"name": "hub", "namespace": "kuik-system"},
                },
            ]
        },
    },
    {
        "apiVersion": V,
        "kind": "ClusterImageSetAvailability",
        "metadata": {"name": "monitor-public-critical-images"},
        "spec": {
            "unusedImageExpiry": "24h",
            "filter": {"include": [{"image": ".*/bitnami/.+"}, {"image": "docker.io/library/.+"}]},
        },
        "status": {
            "imageCount": 1,
            "images": [
                {
                    "image": "docker.io/library/redis:7.2",
                    "status": "Available",
                    "original": True,
                    "lastMonitor": "2026-08-01T10:00:00Z",
                }
            ],
        },
    },
    {
        "apiVersion": V,
        "kind": "ImageSetMirror",
        "metadata": {"name": "team", "namespace": "my-app", "uid": "u-1", "resourceVersion": "7"},
        "spec": {
            "imageFilter": {"include": ["docker.io/.+"]},
            "mirrors": [{"registry": "r", "path": "/p"}],
        },
    },
    {
        "apiVersion": V,
        "kind": "ReplicatedImageSet",
        "metadata": {"name": "r", "namespace": "my-app"},
        "spec": {
            "filter": {"include": [{"label": "app=api"}]},
            "upstreams": [{"registry": "a.example", "path": "/x"}],
        },
    },
]


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["kind"] for s in SAMPLES])
def test_round_trip_is_the_api_shape(sample: dict[str, Any]) -> None:
    resource = parse_resource(sample)
    assert sample["kind"] == type(resource).KIND
    assert resource.to_dict() == sample
    assert parse_resource(resource.to_dict()).to_dict() == sample


def test_kinds_table() -> None:
    assert {k: (i.plural, i.short_name, i.namespaced) for k, i in KINDS.items()} == {
        "ClusterImageSetMirror": ("clusterimagesetmirrors", "cism", False),
        "ImageSetMirror": ("imagesetmirrors", "ism", True),
        "ClusterReplicatedImageSet": ("clusterreplicatedimagesets", "cris", False),
        "ReplicatedImageSet": ("replicatedimagesets", "ris", True),
        "ClusterImageSetAvailability": ("clusterimagesetavailabilities", "cisa", False),
    }


def test_availability_status_values() -> None:
    assert [s.value for s in AvailabilityStatus] == [
        "Scheduled",
        "Available",
        "NotFound",
        "Unreachable",
        "InvalidAuth",
        "UnavailableSecret",
        "QuotaExceeded",
    ]
    assert AvailabilityStatus("NotFound") == "NotFound"


def test_snake_case_attributes() -> None:
    cism = parse_resource(SAMPLES[0])
    assert isinstance(cism, ClusterImageSetMirror)
    mirror = cism.spec.mirrors[0]
    assert mirror.credential_secret is not None
    assert mirror.credential_secret.namespace == "kuik-system"
    assert cism.spec.cleanup.retention_delta == timedelta(hours=168)
    status = cism.status.matching_images
    assert status is not None
    assert status[0].mirrors is not None
    assert status[0].mirrors[0].mirrored_at == datetime(2026, 7, 13, 9, 47, 32, tzinfo=UTC)
    assert status[1].unused_since == datetime(1, 1, 1, 1, tzinfo=UTC)
    assert cism.key == "ClusterImageSetMirror/global-mirror"


def test_mirror_cleanup_overrides_cr_cleanup() -> None:
    cism = parse_resource(SAMPLES[0])
    assert isinstance(cism, ClusterImageSetMirror)
    assert cism.spec.cleanup_for(cism.spec.mirrors[0]).enabled is False
    cism.spec.mirrors[0].cleanup = None
    assert cism.spec.cleanup_for(cism.spec.mirrors[0]).enabled is True


def test_status_built_in_code_serialises_only_what_it_sets() -> None:
    status = ImageSetMirrorStatus(
        matching_images=[
            MatchingImage(
                image="docker.io/library/nginx:1.27",
                mirrors=[
                    MirrorStatus(
                        image="r/m/library/nginx:1.27",
                        mirrored_at=datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
                    )
                ],
            )
        ]
    )
    assert status.to_dict() == {
        "matchingImages": [
            {
                "image": "docker.io/library/nginx:1.27",
                "mirrors": [
                    {"image": "r/m/library/nginx:1.27", "mirroredAt": "2026-01-02T03:04:05Z"}
                ],
            }
        ]
    }
    assert MonitoredImage(image="a").to_dict() == {"image": "a"}
    assert MonitoredImage(image="a").status is AvailabilityStatus.SCHEDULED


def test_time_format() -> None:
    assert format_time(datetime(1, 1, 1, 1, tzinfo=UTC)) == UNUSED_MARKER
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 7, 13, 11, 0, 0, tzinfo=plus_two)) == "2026-07-13T09:00:00Z"
    assert format_time(datetime(2026, 7, 13, 11, 0, 0)) == "2026-07-13T11:00:00Z"


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        (
            ("registry.example.com", "/mirror", "library/nginx:1.27"),
            "registry.example.com/mirror/library/nginx:1.27",
        ),
        (("docker.io", "/library/"), "docker.io/library"),
        (("docker.io", ""), "docker.io"),
        (("a", "//b//", "c/"), "a/b/c"),
        (("", ""), ""),
        (("a", "./b/../c"), "a/c"),
    ],
)
def test_join_path_is_go_path_join(elements: tuple[str, ...], expected: str) -> None:
    assert join_path(*elements) == expected


def test_namespaced_kind_defaults_to_default_namespace() -> None:
    doc = {"apiVersion": V, "kind": "ImageSetMirror", "metadata": {"name": "m"}}
    ism = parse_resource(doc)
    assert ism.metadata.namespace == "default"
    assert ism.key == "ImageSetMirror/default/m"
    cluster = parse_resource(
        {
            "apiVersion": V,
            "kind": "ClusterImageSetMirror",
            "metadata": {"name": "c", "namespace": "x"},
        }
    )
    assert cluster.namespace is None


def _invalid(doc: dict[str, Any]) -> InvalidResource:
    with pytest.raises(InvalidResource) as info:
        parse_resource(doc)
    return info.value


def _with(
    kind: str, spec: dict[str, Any], name: str = "bad", namespace: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": V, "kind": kind, "metadata": meta, "spec": spec}


ONE_OF = "each filter item must set exactly one of image, label or annotation"
ONE_OF_CLUSTER = "each filter item must set exactly one of image, label, annotation or namespace"
EXCLUSIVE = (
    "spec.filter and the deprecated spec.imageFilter are mutually exclusive; "
    "fold imageFilter patterns into spec.filter image items"
)

# (case id, document, field path, reason fragment)
INVALID = [
    (
        "two selectors in one item",
        _with(
            "ClusterImageSetMirror",
            {"filter": {"include": [{"label": "a"}, {"label": "b"}, {"image": "x", "label": "y"}]}},
        ),
        "spec.filter.include[2]",
        ONE_OF_CLUSTER,
    ),
    (
        "empty item",
        _with("ImageSetMirror", {"filter": {"exclude": [{}]}}, namespace="n"),
        "spec.filter.exclude[0]",
        ONE_OF,
    ),
    (
        "empty string counts as set (CEL has())",
        _with(
            "ImageSetMirror", {"filter": {"include": [{"image": "", "label": "a"}]}}, namespace="n"
        ),
        "spec.filter.include[0]",
        ONE_OF,
    ),
    (
        "namespace item on a namespaced kind",
        _with("ImageSetMirror", {"filter": {"include": [{"namespace": "a"}]}}, namespace="n"),
        "spec.filter.include[0].namespace",
        "unknown field",
    ),
    (
        "filter and imageFilter together",
        _with(
            "ClusterImageSetAvailability",
            {"imageFilter": {"include": []}, "filter": {"exclude": [{"image": "x"}]}},
        ),
        "spec",
        EXCLUSIVE,
    ),
    (
        "image items on a ReplicatedImageSet",
        _with(
            "ReplicatedImageSet",
            {"filter": {"exclude": [{"label": "a"}, {"image": "x"}]}},
            namespace="n",
        ),
        "spec.filter.exclude[1]",
        "spec.filter image items are not supported on ReplicatedImageSet; "
        "image selection is per-upstream via spec.upstreams[].imageFilter",
    ),
    (
        "image items on a ClusterReplicatedImageSet",
        _with("ClusterReplicatedImageSet", {"filter": {"include": [{"image": "x"}]}}),
        "spec.filter.include[0]",
        "not supported on ClusterReplicatedImageSet",
    ),
    (
        "more than 16 filter items",
        _with("ClusterImageSetMirror", {"filter": {"include": [{"image": "x"}] * 17}}),
        "spec.filter.include",
        "at most 16",
    ),
    (
        "more than 16 imageFilter patterns",
        _with("ClusterImageSetMirror", {"imageFilter": {"exclude": ["x"] * 17}}),
        "spec.imageFilter.exclude",
        "at most 16",
    ),
    (
        "pattern longer than 128",
        _with("ClusterImageSetMirror", {"imageFilter": {"include": ["x" * 129]}}),
        "spec.imageFilter.include[0]",
        "at most 128",
    ),
    (
        "invalid imageFilter regex",
        _with("ClusterImageSetMirror", {"imageFilter": {"include": ["ok", "(unclosed"]}}),
        "spec.imageFilter.include[1]",
        "include contains an invalid regular expression",
    ),
    (
        "invalid upstream regex",
        _with(
            "ClusterReplicatedImageSet",
            {"upstreams": [{"registry": "a", "path": "/", "imageFilter": {"exclude": ["["]}}]},
        ),
        "spec.upstreams[0].imageFilter.exclude[0]",
        "exclude contains an invalid regular expression",
    ),
    (
        "invalid filter image regex",
        _with("ClusterImageSetMirror", {"filter": {"include": [{"image": "a**"}]}}),
        "spec.filter.include[0].image",
        "image contains an invalid regular expression",
    ),
    (
        "invalid namespace regex",
        _with("ClusterImageSetAvailability", {"filter": {"include": [{"namespace": "[z-a]"}]}}),
        "spec.filter.include[0].namespace",
        "namespace contains an invalid regular expression",
    ),
    (
        "more than 32 upstreams",
        _with("ClusterReplicatedImageSet", {"upstreams": [{"registry": "a", "path": "/"}] * 33}),
        "spec.upstreams",
        "at most 32",
    ),
    (
        "upstream without path",
        _with("ReplicatedImageSet", {"upstreams": [{"registry": "a"}]}, namespace="n"),
        "spec.upstreams[0].path",
        "required",
    ),
    (
        "negative intra-CR priority",
        _with("ClusterImageSetMirror", {"mirrors": [{"registry": "a", "priority": -1}]}),
        "spec.mirrors[0].priority",
        "greater than or equal to 0",
    ),
    (
        "bad retention",
        _with("ClusterImageSetMirror", {"cleanup": {"enabled": True, "retention": "7 days"}}),
        "spec.cleanup.retention",
        "7 days",
    ),
    (
        "bad unusedImageExpiry",
        _with("ClusterImageSetAvailability", {"unusedImageExpiry": "1y"}),
        "spec.unusedImageExpiry",
        "1y",
    ),
    (
        "typo in a field name",
        _with("ClusterImageSetMirror", {"mirors": []}),
        "spec.mirors",
        "unknown field",
    ),
    (
        "wrong type",
        _with("ClusterImageSetMirror", {"priority": "high"}),
        "spec.priority",
        "integer",
    ),
    (
        "unknown status value",
        {
            **_with("ClusterImageSetAvailability", {}),
            "status": {"images": [{"image": "a", "status": "Gone"}]},
        },
        "status.images[0].status",
        "Scheduled",
    ),
]


@pytest.mark.parametrize(
    ("doc", "field_path", "reason"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_resources_name_cr_path_and_reason(
    doc: dict[str, Any], field_path: str, reason: str
) -> None:
    error = _invalid(doc)
    assert error.kind == doc["kind"]
    assert error.name.endswith("bad")
    assert error.field_path == field_path
    assert reason in error.reason
    assert field_path in str(error)
    assert "bad" in str(error)


def test_every_problem_is_reported() -> None:
    error = _invalid(
        _with(
            "ClusterImageSetMirror",
            {"imageFilter": {"include": ["["]}, "filter": {"include": [{}]}},
        )
    )
    assert [p for p, _ in error.problems] == [
        "spec.filter.include[0]",
        "spec.imageFilter.include[0]",
        "spec",
    ]


@pytest.mark.parametrize(
    ("doc", "field_path"),
    [
        (
            {
                "kind": "ClusterImageSetMirror",
                "apiVersion": "kuik.enix.io/v1",
                "metadata": {"name": "x"},
            },
            "apiVersion",
        ),
        ({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x"}}, "kind"),
        ({"kind": "ClusterImageSetMirror", "apiVersion": V, "metadata": {}}, "metadata.name"),
        ({"kind": "ClusterImageSetMirror", "apiVersion": V}, "metadata.name"),
    ],
)
def test_envelope_errors(doc: dict[str, Any], field_path: str) -> None:
    assert _invalid(doc).field_path == field_path


def test_exclusivity_needs_both_sides_set() -> None:
    # an imageFilter object without include/exclude does not conflict (CEL: has(include) || has(exclude))
    parse_resource(
        _with("ClusterImageSetMirror", {"imageFilter": {}, "filter": {"include": [{"image": "x"}]}})
    )
    parse_resource(
        _with("ClusterImageSetMirror", {"imageFilter": {"include": ["x"]}, "filter": {}})
    )


def test_check_rules_on_models_built_in_code() -> None:
    ism = ImageSetMirror.model_validate(
        {"metadata": {"name": "m", "namespace": "n"}, "spec": {"imageFilter": {"include": ["["]}}}
    )
    assert [path for path, _ in check_rules(ism)] == ["spec.imageFilter.include[0]"]
    assert list(check_rules(ClusterImageSetAvailability(metadata={"name": "ok"}))) == []  # type: ignore[arg-type]


def test_parse_does_not_mutate_input() -> None:
    doc = _with("ImageSetMirror", {"mirrors": []})
    before = copy.deepcopy(doc)
    parse_resource(doc)
    assert doc == before


def test_models_are_distinct_per_kind() -> None:
    assert isinstance(parse_resource(SAMPLES[1]), ClusterReplicatedImageSet)
    assert isinstance(parse_resource(SAMPLES[4]), ReplicatedImageSet)
