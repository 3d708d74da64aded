"""Status updates validate only what changed, and still refuse what a full parse refuses.

`status_after` validates only the entries a mutation changed, which is only sound because no
status list has a whole-list rule; these tests hold it to a full `parse_resource` (same error,
same field path).
"""

from __future__ import annotations

from typing import Any

import pytest

from kuikcore.api import KINDS, InvalidResource
from kuikcore.api.crd import openapi_schema
from kuikcore.cluster.patch import status_after
from tests.cluster.objects import cisa

CISA = "ClusterImageSetAvailability"


def entry(n: int, status: str = "Available") -> dict[str, Any]:
    return {
        "image": f"registry.example/app:{n}",
        "status": status,
        "lastMonitor": "2026-11-28T12:00:00Z",
        "original": False,
    }


def versioned(images: list[Any], version: int, **status: Any) -> dict[str, Any]:
    obj = cisa("all", filter={"include": [{"image": ".*"}]})
    obj["metadata"]["resourceVersion"] = str(version)
    obj["status"] = {"imageCount": len(images), "images": images, **status}
    return obj


def test_status_after_refuses_a_bad_change_naming_its_whole_list_index() -> None:
    current = versioned([entry(n) for n in range(8)], 1)

    def break_one(status: dict[str, Any]) -> dict[str, Any]:
        status["images"][5]["status"] = "Bogus"  # mutators may change their copy in place
        return status

    with pytest.raises(InvalidResource) as caught:
        status_after(current, break_one)
    assert caught.value.field_path == "status.images[5].status"
    assert current["status"]["images"][5]["status"] == "Available"  # the copy, not current


def test_status_after_returns_the_change_and_none_without_one() -> None:
    current = versioned([entry(n) for n in range(3)], 1)

    def check_one(status: dict[str, Any]) -> dict[str, Any]:
        status["images"][1]["status"] = "NotFound"
        status["images"].append(entry(9, "Scheduled"))
        return status

    new = status_after(current, check_one)
    assert new is not None
    assert [e["status"] for e in new["images"]] == [
        "Available",
        "NotFound",
        "Available",
        "Scheduled",
    ]
    assert status_after(current, lambda status: status) is None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_no_status_list_has_a_whole_list_rule(kind: str) -> None:
    """What makes validating changed entries alone equivalent to validating the whole status:
    if a status list ever gets a length or uniqueness rule, the shortcut must go."""
    status = openapi_schema(KINDS[kind].model)["properties"].get("status", {})
    lists = {
        name: prop
        for name, prop in (status.get("properties") or {}).items()
        if prop.get("type") == "array"
    }
    whole_list_rules = ("maxItems", "minItems", "uniqueItems", "x-kubernetes-validations")
    assert {name: [r for r in whole_list_rules if r in prop] for name, prop in lists.items()} == {
        name: [] for name in lists
    }
