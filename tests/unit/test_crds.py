"""Generated CRDs: committed files fresh, valid apiextensions.k8s.io/v1, structural, upstream's CEL."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kuikcore.api import KINDS
from kuikcore.api.crd import crd_files, main

CRD_DIR = Path(__file__).parents[2] / "charts" / "kube-image-keeper" / "crds"
FILES = crd_files()


@functools.cache
def _parsed(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(
        FILES[name], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )
    return document


def _crd(kind: str) -> dict[str, Any]:
    plural = KINDS[kind].plural
    return copy.deepcopy(_parsed(f"kuik.enix.io_{plural}.yaml"))


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = _crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crds_are_up_to_date() -> None:
    committed = {p.name: p.read_text() for p in CRD_DIR.glob("*.yaml")}
    assert committed == FILES, "charts/kube-image-keeper/crds is stale: run `make crds`"
    assert main(["--check", str(CRD_DIR)]) == 0


def test_check_mode_detects_stale_and_extra_files(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    target = next(iter(sorted(tmp_path.iterdir())))
    target.write_text(target.read_text().replace("maxItems: 16", "maxItems: 17"))
    assert main(["--check", str(tmp_path)]) == 1
    assert main([str(tmp_path)]) == 0
    (tmp_path / "kuik.enix.io_oldkinds.yaml").write_text("{}")
    assert main(["--check", str(tmp_path)]) == 1
    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / "kuik.enix.io_oldkinds.yaml").exists()


@pytest.mark.parametrize("name", sorted(FILES))
def test_valid_apiextensions_v1_strict(name: str) -> None:
    document = copy.deepcopy(_parsed(name))
    assert kubernetes_validate.validate(document, "1.31", strict=True) == "1.31"


def test_an_invalid_crd_is_caught_by_the_validator() -> None:
    document = _crd("ImageSetMirror")
    document["spec"]["scope"] = 42
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, "1.31", strict=True)


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_structural_schema(kind: str) -> None:
    for path, node in _nodes(_schema(kind)):
        assert "type" in node, f"{kind}{path}: no type"
        for forbidden in (
            "$ref",
            "anyOf",
            "oneOf",
            "allOf",
            "title",
            "additionalProperties",
            "const",
        ):
            assert forbidden not in node, f"{kind}{path}: {forbidden}"
        if "properties" in node:
            assert node["type"] == "object"
        if "default" in node:
            assert path == ".status.images[].status", f"{kind}{path}: unexpected default"


def test_names_scope_and_subresources() -> None:
    seen = {}
    for kind, info in KINDS.items():
        crd = _crd(kind)
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{info.plural}.kuik.enix.io"
        assert spec["group"] == "kuik.enix.io"
        assert spec["names"]["listKind"] == f"{kind}List"
        assert spec["names"]["singular"] == kind.lower()
        version = spec["versions"][0]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
        assert spec["names"]["categories"] == ["kuik"]  # `kubectl get kuik`
        seen[kind] = (spec["scope"], spec["names"]["shortNames"])
    assert seen == {
        "ClusterImageSetMirror": ("Cluster", ["cism"]),
        "ImageSetMirror": ("Namespaced", ["ism"]),
        "ClusterReplicatedImageSet": ("Cluster", ["cris"]),
        "ReplicatedImageSet": ("Namespaced", ["ris"]),
        "ClusterImageSetAvailability": ("Cluster", ["cisa"]),
    }


def test_printer_columns() -> None:
    cisa = _crd("ClusterImageSetAvailability")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert cisa[0] == {
        "name": "Images",
        "type": "integer",
        "jsonPath": ".status.imageCount",
        "description": "Total number of monitored images",
    }
    ism_columns = [
        c["name"] for c in _crd("ImageSetMirror")["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert ism_columns == [
        "Priority",
        "Mirrors",
        "Images",
        "Mirrored",
        "Failed",
        "Ready",
        "Reason",
        "Age",
    ]
    # every column path exists in the schema; every kind shows its Ready condition
    for kind in KINDS:
        schema = _schema(kind)
        columns = _crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
        ready = next(c for c in columns if c["name"] == "Ready")
        assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
        assert next(c for c in columns if c["name"] == "Reason").get("priority") == 1
        for column in columns:
            node: dict[str, Any] = {
                "properties": {
                    **schema["properties"],
                    "metadata": {"properties": {"creationTimestamp": {}}},
                }
            }
            path = re.sub(r"\[[^]]*\]", "", column["jsonPath"])  # [*] and [?(...)] filters
            for part in path.strip(".").split("."):
                node = node.get("items", node)["properties"][part]


# upstream's CEL rules, copied from config/crd/bases/*.yaml at db2d839
UPSTREAM_ONE_OF = "self.all(item, (has(item.image) ? 1 : 0) + (has(item.label) ? 1 : 0) + (has(item.annotation) ? 1 : 0) == 1)"
UPSTREAM_ONE_OF_CLUSTER = (
    "self.all(item, (has(item.image) ? 1 : 0) + (has(item.label) ? 1 : 0) + (has(item.annotation) ? 1 : 0)"
    " + (has(item.namespace) ? 1 : 0) == 1)"
)
UPSTREAM_REGEX = "self.all(p, ''.matches(p) ? true : true)"
UPSTREAM_EXCLUSIVE = (
    "!((has(self.imageFilter) && (has(self.imageFilter.include) || has(self.imageFilter.exclude)))"
    " && (has(self.filter) && (has(self.filter.include) || has(self.filter.exclude))))"
)
UPSTREAM_NO_IMAGE = (
    "!has(self.filter) || ((!has(self.filter.include) || self.filter.include.all(i, !has(i.image)))"
    " && (!has(self.filter.exclude) || self.filter.exclude.all(i, !has(i.image))))"
)


def _rules(node: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v["rule"], v["message"]) for v in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize(
    ("kind", "one_of", "message"),
    [
        (
            "ImageSetMirror",
            UPSTREAM_ONE_OF,
            "each filter item must set exactly one of image, label or annotation",
        ),
        (
            "ReplicatedImageSet",
            UPSTREAM_ONE_OF,
            "each filter item must set exactly one of image, label or annotation",
        ),
        (
            "ClusterImageSetMirror",
            UPSTREAM_ONE_OF_CLUSTER,
            "each filter item must set exactly one of image, label, annotation or namespace",
        ),
        (
            "ClusterReplicatedImageSet",
            UPSTREAM_ONE_OF_CLUSTER,
            "each filter item must set exactly one of image, label, annotation or namespace",
        ),
        (
            "ClusterImageSetAvailability",
            UPSTREAM_ONE_OF_CLUSTER,
            "each filter item must set exactly one of image, label, annotation or namespace",
        ),
    ],
)
def test_upstream_cel_rules(kind: str, one_of: str, message: str) -> None:
    spec = _schema(kind)["properties"]["spec"]
    for side in ("include", "exclude"):
        items = spec["properties"]["filter"]["properties"][side]
        assert _rules(items) == [(one_of, message)]
        assert items["maxItems"] == 16
    if kind.endswith("ReplicatedImageSet"):
        assert _rules(spec) == [
            (
                UPSTREAM_NO_IMAGE,
                f"spec.filter image items are not supported on {kind}; "
                "image selection is per-upstream via spec.upstreams[].imageFilter",
            )
        ]
        assert spec["properties"]["upstreams"]["maxItems"] == 32
        image_filter = spec["properties"]["upstreams"]["items"]["properties"]["imageFilter"]
        assert spec["properties"]["upstreams"]["items"]["required"] == ["registry", "path"]
    else:
        assert _rules(spec) == [
            (
                UPSTREAM_EXCLUSIVE,
                "spec.filter and the deprecated spec.imageFilter are mutually exclusive; "
                "fold imageFilter patterns into spec.filter image items",
            )
        ]
        image_filter = spec["properties"]["imageFilter"]
    for side in ("include", "exclude"):
        patterns = image_filter["properties"][side]
        assert _rules(patterns) == [
            (UPSTREAM_REGEX, f"{side} contains an invalid regular expression")
        ]
        assert (patterns["maxItems"], patterns["items"]["maxLength"]) == (16, 128)


def _bare(node: dict[str, Any]) -> dict[str, Any]:
    """A schema node without its description (docs/crds.md's source, tested there)."""
    return {k: v for k, v in node.items() if k != "description"}


def test_status_list_maps_and_beyond_upstream_fields() -> None:
    status = _schema("ClusterImageSetMirror")["properties"]["status"]
    matching = status["properties"]["matchingImages"]
    assert matching["x-kubernetes-list-type"] == "map"
    assert matching["x-kubernetes-list-map-keys"] == ["image"]
    mirrors = matching["items"]["properties"]["mirrors"]
    assert mirrors["x-kubernetes-list-map-keys"] == ["image"]
    mirror = mirrors["items"]["properties"]
    assert _bare(mirror["digest"]) == {"type": "string"}
    assert _bare(mirror["platforms"]) == {"type": "array", "items": {"type": "string"}}
    assert _bare(mirror["mirroredAt"]) == {"type": "string", "format": "date-time"}
    assert mirrors["items"]["required"] == ["image"]
    images = _schema("ClusterImageSetAvailability")["properties"]["status"]["properties"]["images"]
    assert images["x-kubernetes-list-map-keys"] == ["image"]
    assert images["items"]["properties"]["status"]["enum"] == [
        "Scheduled",
        "Available",
        "NotFound",
        "Unreachable",
        "InvalidAuth",
        "UnavailableSecret",
        "QuotaExceeded",
    ]
    assert images["items"]["properties"]["status"]["default"] == "Scheduled"
    spec_mirror = _schema("ImageSetMirror")["properties"]["spec"]["properties"]["mirrors"]["items"]
    assert _bare(spec_mirror["properties"]["priority"]) == {"type": "integer", "minimum": 0}
    assert set(spec_mirror["properties"]["cleanup"]["properties"]) == {"enabled", "retention"}
