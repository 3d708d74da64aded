"""kuik_monitor.tracker: CISA image lists from Pods, upstream §1.11 step 2 (digest refs included)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kuik_monitor.tracker import selected_images, sync_status
from kuik_testing.objects import cisa, pod
from kuikcore.api import UNUSED_MARKER, parse_resource
from kuikcore.filters import SkipRules, compile_filter

NOW = datetime(2026, 8, 1, 10, 0, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64


ALL = compile_filter(parse_resource(cisa("all", filter={"include": [{"image": ".*"}]})))


def test_all_container_kinds_originals_and_digest_refs_are_selected() -> None:
    pods = [
        pod(
            "nginx:1.27",
            f"quay.io/app@{DIGEST}",
            name="web",
            init=["busybox"],
            ephemeral=["debian:12"],
            originals={"c0": "nginx:1.26"},
        )
    ]
    assert selected_images(pods, ALL) == {
        "docker.io/library/nginx:1.27": False,
        f"quay.io/app@{DIGEST}": False,
        "docker.io/library/busybox": False,
        "docker.io/library/debian:12": False,
        "docker.io/library/nginx:1.26": True,
    }


def test_original_flag_within_pod_original_wins_across_pods_last_pod_decides() -> None:
    same = "mirror.example/library/nginx:1.27"
    a = pod(same, name="a", originals={"other": same})  # used and original in one pod
    b = pod(same, name="b")
    assert selected_images([a], ALL) == {same: True}
    assert selected_images([a, b], ALL) == {same: False}
    assert selected_images([b, a], ALL) == {same: True}


def test_filters_and_skip_rules_select_pods_and_images() -> None:
    selection = compile_filter(
        parse_resource(
            cisa(
                "all",
                filter={
                    "include": [{"image": "docker.io/.*"}, {"label": "team=a"}],
                    "exclude": [{"image": ".*:debug"}],
                },
            )
        )
    )
    pods = [
        pod("nginx:1", "nginx:debug", "quay.io/x:1", name="in", labels={"team": "a"}),
        pod("redis:7", name="other-team", labels={"team": "b"}),
        pod("alpine:3", name="skipped", labels={"team": "a", "kuik": "off"}),
    ]
    skip = SkipRules.parse(["kuik=off"])
    assert selected_images(pods, selection, skip) == {"docker.io/library/nginx:1": False}


def test_new_images_scheduled_with_flag_and_count() -> None:
    result = sync_status(
        {},
        current={"docker.io/library/b:1": False, "docker.io/library/a:1": True},
        matches=ALL.matches_image,
        now=NOW,
        expiry=None,
    )
    assert result.status == {
        "images": [
            {"image": "docker.io/library/a:1", "status": "Scheduled", "original": True},
            {"image": "docker.io/library/b:1", "status": "Scheduled", "original": False},
        ],
        "imageCount": 2,
    }
    assert result.tracked.added == ["docker.io/library/a:1", "docker.io/library/b:1"]


def entry(image: str, status: str = "Available", **extra: Any) -> dict[str, Any]:
    return {"image": image, "status": status, "lastMonitor": "2026-08-01T09:00:00Z", **extra}


def test_unused_since_set_once_marker_for_never_checked_and_out_of_filter() -> None:
    only_a = compile_filter(
        parse_resource(cisa("all", filter={"include": [{"image": "docker.io/library/a.*"}]}))
    )
    status = {
        "images": [
            entry("docker.io/library/a:used"),
            entry("docker.io/library/a:gone"),
            entry("docker.io/library/a:gone-before", unusedSince="2026-07-01T00:00:00Z"),
            {"image": "docker.io/library/a:never", "status": "Scheduled"},
            entry("docker.io/library/b:out-of-filter"),
        ]
    }
    result = sync_status(
        status,
        current={"docker.io/library/a:used": False},
        matches=only_a.matches_image,
        now=NOW,
        expiry=None,
    )
    unused = {e["image"]: e.get("unusedSince") for e in result.status["images"]}
    assert unused == {
        "docker.io/library/a:used": None,
        "docker.io/library/a:gone": "2026-08-01T10:00:00Z",
        "docker.io/library/a:gone-before": "2026-07-01T00:00:00Z",
        "docker.io/library/a:never": UNUSED_MARKER,
        "docker.io/library/b:out-of-filter": UNUSED_MARKER,
    }
    assert result.status["imageCount"] == 5  # expiry 0: nothing removed, not even marked ones


def test_expiry_removes_entries_and_in_use_clears_unused_since() -> None:
    status = {
        "images": [
            entry("docker.io/library/old:1", unusedSince="2026-08-01T08:59:59Z"),
            entry("docker.io/library/young:1", unusedSince="2026-08-01T09:30:00Z"),
            entry("docker.io/library/back:1", unusedSince="2026-08-01T08:00:00Z"),
            {"image": "docker.io/library/never:1", "status": "Scheduled"},
        ]
    }
    result = sync_status(
        status,
        current={"docker.io/library/back:1": False},
        matches=ALL.matches_image,
        now=NOW,
        expiry=timedelta(hours=1),
    )
    images = {e["image"]: e for e in result.status["images"]}
    assert sorted(images) == ["docker.io/library/back:1", "docker.io/library/young:1"]
    assert "unusedSince" not in images["docker.io/library/back:1"]
    assert [e["image"] for e in result.tracked.expired] == [
        "docker.io/library/old:1",
        "docker.io/library/never:1",  # never checked and unused: instant expiry
    ]
    assert result.status["imageCount"] == 2


def test_backfill_original_on_existing_entries() -> None:
    status = {"images": [entry("docker.io/library/a:1", original=False)]}
    result = sync_status(
        status,
        current={"docker.io/library/a:1": True},
        matches=ALL.matches_image,
        now=NOW,
        expiry=None,
    )
    assert result.status["images"][0]["original"] is True
    # an unchanged status stays equal (so the leader writes nothing)
    again = sync_status(
        result.status,
        current={"docker.io/library/a:1": True},
        matches=ALL.matches_image,
        now=NOW,
        expiry=None,
    )
    assert again.status == result.status
