"""kuikcore.filters: RE2 patterns, label selectors, unified/legacy filters (upstream cases ported)."""

from __future__ import annotations

from typing import Any

import pytest

from kuik_testing import objects
from kuik_testing.objects import pod
from kuikcore.api import (
    ClusterImageSetAvailability,
    ClusterImageSetMirror,
    ClusterReplicatedImageSet,
    ImageSetMirror,
    ReplicatedImageSet,
)
from kuikcore.filters import (
    InvalidFilter,
    InvalidPattern,
    InvalidSelector,
    PatternSet,
    SkipRules,
    compile_filter,
    compile_pattern,
    compile_upstream,
    parse_selector,
)

# internal/filter/include_exclude_test.go
INCLUDE_EXCLUDE = [
    ("alternation covering entire string", ["a|ab"], [], "ab", True),
    ("alternation short branch", ["a|ab"], [], "a", True),
    ("input exceeds all branches", ["a|ab"], [], "abc", False),
    (
        "typical image pattern",
        [r"docker\.io/library/.*"],
        [],
        "docker.io/library/nginx:latest",
        True,
    ),
    ("other registry", [r"docker\.io/library/.*"], [], "ghcr.io/library/nginx:latest", False),
    ("partial match at end", ["nginx"], [], "nginx-extra", False),
    ("partial match at start", ["nginx"], [], "my-nginx", False),
    ("exact match", ["nginx"], [], "nginx", True),
    ("exclude takes precedence", [".*"], ["nginx"], "nginx", False),
    ("exclude ignores non-matching", [".*"], ["nginx"], "redis", True),
    ("user anchors not doubled", ["^nginx$"], [], "nginx", True),
    ("empty include matches nothing", [], [], "nginx", False),
    ("dot does not match newline", ["a.b"], [], "a\nb", False),
]


@pytest.mark.parametrize(
    ("include", "exclude", "text", "expected"),
    [case[1:] for case in INCLUDE_EXCLUDE],
    ids=[case[0] for case in INCLUDE_EXCLUDE],
)
def test_pattern_set(include: list[str], exclude: list[str], text: str, expected: bool) -> None:
    assert PatternSet(tuple(include), tuple(exclude)).match(text) is expected


@pytest.mark.parametrize("pattern", ["[", "(?=x)", "a{2,1}", r"\8"])
def test_invalid_pattern_names_pattern_and_reason(pattern: str) -> None:
    with pytest.raises(InvalidPattern) as info:
        compile_pattern(pattern)
    assert info.value.pattern == pattern
    assert info.value.reason
    assert repr(pattern) in str(info.value)


def test_re2_syntax_not_python_re() -> None:
    # Python-only syntax must be refused, RE2 syntax accepted: no `re` fallback.
    with pytest.raises(InvalidPattern):
        compile_pattern(r"(?P=name)")
    assert compile_pattern(r"\pL+").fullmatch("héllo")


# internal/filter/pod_filter_test.go (labels/annotations, include/exclude)
POD_FILTER = [
    ("empty matches any", {}, {"app": "foo"}, None, True),
    ("include equality", {"il": ["app=foo"]}, {"app": "foo"}, None, True),
    ("include equality rejects", {"il": ["app=foo"]}, {"app": "bar"}, None, False),
    (
        "exclude equality removes",
        {"el": ["cnpg.io/podRole=instance"]},
        {"cnpg.io/podRole": "instance"},
        None,
        False,
    ),
    (
        "exclude keeps non-matching",
        {"el": ["cnpg.io/podRole=instance"]},
        {"cnpg.io/podRole": "primary"},
        None,
        True,
    ),
    ("exclude wins on tie", {"il": ["app=foo"], "el": ["app=foo"]}, {"app": "foo"}, None, False),
    (
        "presence annotation",
        {"ia": ["my.company.com/custom"]},
        None,
        {"my.company.com/custom": "x"},
        True,
    ),
    ("presence annotation missing", {"ia": ["my.company.com/custom"]}, None, {"other": "v"}, False),
    (
        "absence excludes",
        {"il": ["!cnpg.io/podRole"]},
        {"cnpg.io/podRole": "instance"},
        None,
        False,
    ),
    ("absence keeps", {"il": ["!cnpg.io/podRole"]}, {"app": "foo"}, None, True),
    ("set include", {"il": ["tier in (frontend,backend)"]}, {"tier": "backend"}, None, True),
    ("set include rejects", {"il": ["tier in (frontend,backend)"]}, {"tier": "db"}, None, False),
    ("includes OR'd", {"il": ["app=foo", "app=bar"]}, {"app": "bar"}, None, True),
    ("excludes OR'd", {"el": ["app=foo", "app=bar"]}, {"app": "bar"}, None, False),
    (
        "label and annotation independent",
        {"il": ["app=foo"], "ia": ["trace=on"]},
        {"app": "foo"},
        {"trace": "off"},
        False,
    ),
    (
        "both must pass",
        {"il": ["app=foo"], "ia": ["trace=on"]},
        {"app": "foo"},
        {"trace": "on"},
        True,
    ),
]


@pytest.mark.parametrize(
    ("dims", "labels", "annotations", "expected"),
    [case[1:] for case in POD_FILTER],
    ids=[case[0] for case in POD_FILTER],
)
def test_pod_dimensions(
    dims: dict[str, list[str]], labels: Any, annotations: Any, expected: bool
) -> None:
    field = {
        "il": ("include", "label"),
        "el": ("exclude", "label"),
        "ia": ("include", "annotation"),
    }
    filter_: dict[str, list[dict[str, str]]] = {}
    for key, values in dims.items():
        side, dimension = field[key]
        filter_.setdefault(side, []).extend({dimension: v} for v in values)
    compiled = compile_filter(
        ImageSetMirror.model_validate(objects.ism("default", "m", filter=filter_))
    )
    assert compiled.matches_pod(pod(labels=labels, annotations=annotations)) is expected


SELECTORS = [
    # (selector, labels, matches)
    ("", {}, True),
    ("a", {"a": ""}, True),
    ("a", {}, False),
    ("!a", {}, True),
    ("a=b", {"a": "b"}, True),
    ("a==b", {"a": "b"}, True),
    ("a!=b", {}, True),
    ("a!=b", {"a": "c"}, True),
    ("a!=b", {"a": "b"}, False),
    ("a notin (b,c)", {}, True),
    ("a notin (b,c)", {"a": "c"}, False),
    ("a in (b,c)", {}, False),
    ("a=", {"a": ""}, True),
    ("a in ()", {"a": ""}, True),
    ("a in (,b)", {"a": ""}, True),
    ("a in (b,)", {"a": ""}, True),
    ("a in (b,,c)", {"a": ""}, True),
    ("a>1", {"a": "2"}, True),
    ("a>1", {"a": "x"}, False),
    ("a<1", {"a": "-3"}, True),
    ("a<1", {}, False),
    ("a=b, c", {"a": "b"}, False),
    ("a=b,c", {"a": "b", "c": "x"}, True),
    ("  a  =  b  ", {"a": "b"}, True),
    ("in=notin", {"in": "notin"}, True),
    ("example.com/role in (db)", {"example.com/role": "db"}, True),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), SELECTORS)
def test_selector_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(selector).matches(labels) is expected


@pytest.mark.parametrize(
    "selector",
    [
        "===",
        "BAD KEY=value",
        "a=b,",
        "a in x",
        "!a=b",
        "a in (b",
        "a=b c",
        "a/b/c=d",
        "-a=b",
        "a=-b",
        "Example.com/a=b",
        "a>b",
        "a=" + "x" * 64,
        "x" * 64,
        ",a",
    ],
)
def test_selector_errors(selector: str) -> None:
    with pytest.raises(InvalidSelector) as info:
        parse_selector(selector)
    assert info.value.selector == selector
    assert repr(selector) in str(info.value)


# api/kuik/v1alpha1/filter_types_test.go and filter_precedence_test.go


def test_empty_image_dimension_matches_everything() -> None:
    compiled = compile_filter(
        ImageSetMirror.model_validate(
            objects.ism("default", "m", filter={"include": [{"label": "app=foo"}]})
        )
    )
    assert compiled.matches_image("docker.io/library/nginx:latest")


def test_image_items_are_ored_and_exclude_wins() -> None:
    compiled = compile_filter(
        ImageSetMirror.model_validate(
            objects.ism(
                "default",
                "m",
                filter={
                    "include": [
                        {"image": "docker.io/library/nginx.*"},
                        {"image": "docker.io/library/redis.*"},
                    ],
                    "exclude": [{"image": "docker.io/library/redis:7.*"}],
                },
            )
        )
    )
    assert compiled.matches_image("docker.io/library/redis:6")
    assert compiled.matches_image("docker.io/library/nginx:1")
    assert not compiled.matches_image("docker.io/library/redis:7.2")
    assert not compiled.matches_image("docker.io/library/postgres:16")


def test_dimensions_are_anded() -> None:
    compiled = compile_filter(
        ImageSetMirror.model_validate(
            objects.ism(
                "default",
                "m",
                filter={"include": [{"label": "app=foo"}, {"annotation": "monitoring=enabled"}]},
            )
        )
    )
    assert compiled.matches_pod(pod(labels={"app": "foo"}, annotations={"monitoring": "enabled"}))
    assert not compiled.matches_pod(pod(labels={"app": "foo"}))


def test_namespace_dimension_on_cluster_kinds() -> None:
    cism = ClusterImageSetMirror.model_validate(
        {
            "metadata": {"name": "c"},
            "spec": {"filter": {"include": [{"namespace": "allowed"}, {"label": "app=foo"}]}},
        }
    )
    compiled = compile_filter(cism)
    assert compiled.matches_pod(pod(namespace="allowed", labels={"app": "foo"}))
    assert not compiled.matches_pod(pod(namespace="denied", labels={"app": "foo"}))
    assert not compiled.matches_pod(pod(namespace="allowed", labels={"app": "bar"}))
    excluded = compile_filter(
        ClusterImageSetMirror.model_validate(
            {"metadata": {"name": "c"}, "spec": {"filter": {"exclude": [{"namespace": "kube-.*"}]}}}
        )
    )
    assert not excluded.matches_pod(pod(namespace="kube-system"))
    assert not excluded.selects(pod(namespace="kube-system"), "quay.io/a/b:1")
    assert excluded.selects(pod(namespace="apps"), "quay.io/a/b:1")
    assert excluded.matches_pod(pod(namespace="kube"))
    # the CISM with only an exclude item selects every image
    assert excluded.matches_image("quay.io/a/b:1")


def test_namespace_dimension_absent_on_namespaced_kinds() -> None:
    assert (
        compile_filter(
            ImageSetMirror.model_validate(
                objects.ism("default", "m", filter={"include": [{"label": "a"}]})
            )
        ).pods.namespaces
        is None
    )


def test_filter_wins_over_deprecated_image_filter() -> None:
    ism = ImageSetMirror.model_validate(
        objects.ism(
            "default",
            "m",
            filter={"include": [{"image": "nginx"}]},
            imageFilter={"include": ["legacy-only"]},
        )
    )
    compiled = compile_filter(ism)
    assert compiled.matches_image("nginx")
    assert not compiled.matches_image("legacy-only")


def test_deprecated_image_filter_when_filter_empty() -> None:
    ism = ImageSetMirror.model_validate(
        {"metadata": {"name": "m"}, "spec": {"imageFilter": {"include": ["legacy-only"]}}}
    )
    compiled = compile_filter(ism)
    assert compiled.matches_image("legacy-only")
    assert not compiled.matches_image("nginx")
    assert compiled.matches_pod(pod(labels={"any": "thing"}))


@pytest.mark.parametrize(
    ("image_filter", "image", "expected"),
    [
        ({}, "docker.io/library/nginx", False),  # neither filter: selects nothing
        (
            {"exclude": ["docker.io/library/redis.*"]},
            "docker.io/library/nginx",
            True,
        ),  # main: include .*
        ({"exclude": ["docker.io/library/redis.*"]}, "docker.io/library/redis:7", False),
        ({"include": [], "exclude": []}, "docker.io/library/nginx", False),
    ],
)
def test_deprecated_image_filter_build(
    image_filter: dict[str, Any], image: str, expected: bool
) -> None:
    cisa = ClusterImageSetAvailability.model_validate(
        {"metadata": {"name": "a"}, "spec": {"imageFilter": image_filter}}
    )
    assert compile_filter(cisa).matches_image(image) is expected


def test_replicated_sets_select_no_image_at_cr_level() -> None:
    ris = ReplicatedImageSet.model_validate(
        {
            "metadata": {"name": "r", "namespace": "n"},
            "spec": {"filter": {"include": [{"label": "app=foo"}]}},
        }
    )
    compiled = compile_filter(ris)
    assert compiled.images is None
    assert not compiled.matches_image("docker.io/library/nginx")
    assert compiled.matches_pod(pod(namespace="n", labels={"app": "foo"}))


def test_upstream_prefix_filter() -> None:
    cris = ClusterReplicatedImageSet.model_validate(
        {
            "metadata": {"name": "docker-library"},
            "spec": {
                "upstreams": [
                    {
                        "registry": "docker.io",
                        "path": "/library/",
                        "imageFilter": {"include": ["/library/[^/]+"]},
                    }
                ]
            },
        }
    )
    upstream = compile_upstream(cris, 0, cris.spec.upstreams[0])
    assert upstream.match("docker.io/library/nginx:1.27")
    assert not upstream.match("docker.io/bitnami/nginx:1.27")
    assert not upstream.match("quay.io/library/nginx:1.27")


def test_invalid_pattern_names_cr_and_item() -> None:
    ism = ImageSetMirror.model_validate(
        objects.ism(
            "team", "m", filter={"include": [{"label": "a"}, {"image": "ok"}, {"image": "["}]}
        )
    )
    with pytest.raises(InvalidFilter) as info:
        compile_filter(ism)
    assert info.value.resource == "ImageSetMirror/team/m"
    assert info.value.field_path == "spec.filter.include[2].image"
    assert "ImageSetMirror/team/m" in str(info.value)
    assert "spec.filter.include[2].image" in str(info.value)


def test_invalid_selector_names_cr_and_item() -> None:
    cism = ClusterImageSetMirror.model_validate(
        {"metadata": {"name": "c"}, "spec": {"filter": {"exclude": [{"annotation": "==="}]}}}
    )
    with pytest.raises(InvalidFilter) as info:
        compile_filter(cism)
    assert info.value.field_path == "spec.filter.exclude[0].annotation"
    assert info.value.resource == "ClusterImageSetMirror/c"


def test_invalid_upstream_pattern_names_upstream() -> None:
    cris = ClusterReplicatedImageSet.model_validate(
        {
            "metadata": {"name": "r"},
            "spec": {
                "upstreams": [{"registry": "a", "path": "/", "imageFilter": {"exclude": ["("]}}]
            },
        }
    )
    with pytest.raises(InvalidFilter) as info:
        compile_upstream(cris, 0, cris.spec.upstreams[0])
    assert info.value.field_path == "spec.upstreams[0].imageFilter.exclude[0]"


def test_skip_rules() -> None:
    rules = SkipRules.parse(["kube-image-keeper.enix.io/image-caching-policy=ignore"], ["skip-me"])
    assert rules.reason(pod()) is None
    reason = rules.reason(pod(labels={"kube-image-keeper.enix.io/image-caching-policy": "ignore"}))
    assert reason is not None
    assert "skipLabels" in reason
    annotated = rules.reason(pod(annotations={"skip-me": "yes"}))
    assert annotated is not None
    assert "skipAnnotations" in annotated
    with pytest.raises(InvalidSelector):
        SkipRules.parse(["==="])
