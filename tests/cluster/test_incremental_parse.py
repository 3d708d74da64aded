"""Status updates validate only what changed, and still accept exactly what a full parse accepts.

The store parses a new version of a kuik resource reusing the stored version's models for the
status list entries that did not change, and `status_after` validates only the entries a
mutation changed. Both are only sound because no status list has a whole-list rule; these
tests hold them to a full `parse_resource` (same model, same error, same field path).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuik_testing.objects import cisa
from kuikcore.api import KINDS, InvalidResource, parse_resource
from kuikcore.api.crd import openapi_schema
from kuikcore.cluster import ObjectKey, Store
from kuikcore.cluster.patch import json_copy, status_after

CISA = "ClusterImageSetAvailability"
KEY = ObjectKey(CISA, "", "all")


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


def outcome(parse: Any, raw: dict[str, Any]) -> Any:
    """The model's API shape, or the error's (field path, reason) list."""
    try:
        return parse(raw).to_dict()
    except InvalidResource as error:
        return error.problems


def test_unchanged_entries_reuse_the_stored_models() -> None:
    store = Store(parse_resource)
    store.upsert(CISA, versioned([entry(0), entry(1), entry(2)], 1))
    before = store.resource(CISA, "", "all").status.images
    changed = versioned([entry(0), entry(1, "NotFound"), entry(2), entry(3, "Scheduled")], 2)
    store.upsert(CISA, changed)
    after = store.resource(CISA, "", "all")
    assert after.to_dict() == parse_resource(json_copy(changed)).to_dict()
    assert after.status.images[0] is before[0]
    assert after.status.images[2] is before[2]
    assert after.status.images[1] is not before[1]
    assert after.status.images[1].status == "NotFound"


def test_an_invalid_entry_among_unchanged_ones_is_refused_with_its_whole_list_index() -> None:
    store = Store(parse_resource)
    store.upsert(CISA, versioned([entry(n) for n in range(6)], 1))
    images = [entry(n) for n in range(6)]
    images[4]["status"] = "Bogus"
    store.upsert(CISA, versioned(images, 2))
    assert store.get(KEY) is None  # the invalid version left the store
    (problem,) = store.problems()
    assert problem.reason.startswith("status.images[4].status:")


def test_store_parse_leaves_the_store_alone() -> None:
    store = Store(parse_resource)
    store.upsert(CISA, versioned([entry(0)], 1))
    stored = store.resource(CISA, "", "all")
    parsed = store.parse(CISA, versioned([entry(0), entry(1)], 2))
    assert len(parsed.status.images) == 2
    assert store.resource(CISA, "", "all") is stored
    assert len(stored.status.images) == 1


STATUSES = st.sampled_from(["Available", "NotFound", "Scheduled", "Bogus"])
ENTRIES = st.one_of(
    st.builds(entry, st.integers(0, 4), STATUSES),
    st.fixed_dictionaries({"image": st.just("x"), "unknownField": st.just(1)}),
    st.just("not an object"),
)
VERSIONS = st.lists(st.lists(ENTRIES, max_size=6), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(VERSIONS, st.sampled_from([3, "three"]))
def test_store_parse_agrees_with_a_full_parse(versions: list[list[Any]], count: Any) -> None:
    store = Store(parse_resource)
    for n, images in enumerate(versions, start=1):
        raw = versioned(images, n, imageCount=count if n % 2 else len(images))
        expected = outcome(parse_resource, json_copy(raw))
        assert outcome(lambda r: store.parse(CISA, r), json_copy(raw)) == expected
        store.upsert(CISA, raw)
        stored = store.get(KEY)
        if isinstance(expected, list):
            assert stored is None
        else:
            assert stored is not None
            assert stored.to_dict() == expected


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
