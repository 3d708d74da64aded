"""Replicator's pure decisions: selection, wanted status, copy jobs, cleanup and result folding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kuik_replicator.cleanup import CleanupOutcome, Reason, apply_cleanup, due_deletions
from kuik_replicator.planner import (
    copy_jobs,
    credential_secret_for,
    plan_status,
    select_images,
)
from kuik_replicator.status import CopyOutcome, apply_outcomes
from kuik_testing.objects import all_images, cism, ism, mirror, pod
from kuikcore.api import (
    UNUSED_MARKER,
    ClusterImageSetMirror,
    ImageSetMirror,
    parse_resource,
)
from kuikcore.filters import SkipRules, compile_filter
from kuikcore.mirroring import SecretName

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NGINX = "docker.io/library/nginx:1.27"
REDIS = "docker.io/library/redis:7"
MIRROR = mirror("mirror.example", "/m")  # parse_resource copies it: one dict serves all


def plan(
    resource: ClusterImageSetMirror | ImageSetMirror,
    pods: list[dict[str, Any]],
    status: dict[str, Any] | None = None,
    others: tuple[Any, ...] = (),
) -> dict[str, Any]:
    filt = compile_filter(resource)
    selection = select_images(resource, filt, pods, [resource, *others], now=NOW)
    return plan_status(status or {}, resource, filt, selection, now=NOW)


# --- selection ----------------------------------------------------------------------------


def test_selection_matching_in_use_and_mirror_loop_prevention() -> None:
    resource = parse_resource(cism("m", MIRROR, filter=all_images()))
    rerouted = pod(
        "mirror.example/m/library/nginx:1.27",
        "redis:7",
        originals={"c0": "nginx:1.27"},
        namespace="apps",
    )
    sel = select_images(resource, compile_filter(resource), [rerouted], [resource], now=NOW)
    assert sel.matching == {REDIS}  # the mirror copy is never itself mirrored
    assert sel.in_use == {REDIS, NGINX, "mirror.example/m/library/nginx:1.27"}


def test_selection_filter_scope_skip_and_recent() -> None:
    resource = parse_resource(ism("apps", "i", filter={"include": [{"image": ".*nginx.*"}]}))
    pods = [
        pod("nginx:1.27", created=NOW - timedelta(minutes=1), namespace="apps"),
        pod("nginx:1.28", namespace="other"),  # another namespace: not an ISM's business
        pod("nginx:1.29", labels={"skip": "yes"}, namespace="apps"),
        pod("redis:7", namespace="apps"),  # filtered out
    ]
    skip = SkipRules.parse(["skip=yes"], [])
    sel = select_images(resource, compile_filter(resource), pods, [resource], skip=skip, now=NOW)
    assert sel.matching == {NGINX}
    assert sel.recent == {NGINX}
    assert REDIS in sel.in_use  # in use, though not matching


# --- wanted status ------------------------------------------------------------------------


def test_new_images_get_one_entry_per_spec_mirror_in_spec_order() -> None:
    resource = parse_resource(
        cism("m", mirror("b.example", "/x"), mirror("a.example", "/y"), filter=all_images())
    )
    status = plan(resource, [pod("redis:7", "nginx:1.27", namespace="apps")])
    assert [e["image"] for e in status["matchingImages"]] == [NGINX, REDIS]
    assert [m["image"] for m in status["matchingImages"][0]["mirrors"]] == [
        "b.example/x/library/nginx:1.27",
        "a.example/y/library/nginx:1.27",
    ]
    assert status["imageCount"] == 2
    assert status["mirroredCount"] == 0


def test_removed_mirrors_leave_status_unless_cleanup_must_delete_them() -> None:
    old = {
        "matchingImages": [
            {
                "image": NGINX,
                "mirrors": [
                    {
                        "image": "mirror.example/m/library/nginx:1.27",
                        "mirroredAt": "2026-11-01T00:00:00Z",
                    },
                    {"image": "gone.example/never/library/nginx:1.27"},
                    {
                        "image": "gone.example/copied/library/nginx:1.27",
                        "mirroredAt": "2026-11-01T00:00:00Z",
                    },
                ],
            }
        ]
    }
    without_cleanup = plan(
        parse_resource(cism("m", MIRROR, filter=all_images())),
        [pod("nginx:1.27", namespace="apps")],
        old,
    )
    assert [m["image"] for m in without_cleanup["matchingImages"][0]["mirrors"]] == [
        "mirror.example/m/library/nginx:1.27"
    ]
    with_cleanup = plan(
        parse_resource(
            cism(
                "m",
                MIRROR,
                filter=all_images(),
                cleanup={"enabled": True, "retention": "1h"},
            )
        ),
        [pod("nginx:1.27", namespace="apps")],
        old,
    )
    assert [m["image"] for m in with_cleanup["matchingImages"][0]["mirrors"]] == [
        "mirror.example/m/library/nginx:1.27",
        "gone.example/copied/library/nginx:1.27",
    ]


def test_unused_and_out_of_filter_entries() -> None:
    old = plan(
        parse_resource(cism("m", MIRROR, filter=all_images())),
        [pod("nginx:1.27", "redis:7", namespace="apps")],
    )
    narrowed = parse_resource(cism("m", MIRROR, filter={"include": [{"image": ".*nginx.*"}]}))
    status = plan(narrowed, [pod("busybox:1", namespace="apps")], old)
    by_image = {e["image"]: e for e in status["matchingImages"]}
    assert by_image[NGINX]["unusedSince"] == "2026-11-28T12:00:00Z"
    assert by_image[REDIS]["unusedSince"] == UNUSED_MARKER
    assert list(by_image) == [NGINX, REDIS]  # stable order, busybox not matching


# --- copy jobs ----------------------------------------------------------------------------


def test_copy_jobs_only_for_used_images_not_yet_mirrored() -> None:
    resource = parse_resource(
        cism(
            "m",
            mirror("m.example", "/a", credentialSecret={"name": "short", "namespace": "kuik"}),
            mirror("m.example", "/a/b", credentialSecret={"name": "long", "namespace": "kuik"}),
            filter=all_images(),
        )
    )
    status = {
        "matchingImages": [
            {
                "image": NGINX,
                "mirrors": [
                    {
                        "image": "m.example/a/library/nginx:1.27",
                        "mirroredAt": "2026-11-01T00:00:00Z",
                    },
                    {"image": "m.example/a/b/library/nginx:1.27"},
                ],
            },
            {"image": REDIS, "unusedSince": "2026-11-01T00:00:00Z", "mirrors": []},
        ]
    }
    jobs = copy_jobs(status, resource)
    assert [(j.source, j.destination) for j in jobs] == [
        (NGINX, "m.example/a/b/library/nginx:1.27")
    ]
    assert jobs[0].credential_secret == SecretName(namespace="kuik", name="long")  # longest prefix
    assert jobs[0].job_key() == f"copy:{NGINX}->m.example/a/b/library/nginx:1.27"


def test_ism_secret_lives_in_its_namespace() -> None:
    resource = parse_resource(
        ism(
            "apps",
            "i",
            mirror("m.example", "/a", credentialSecret={"name": "s", "namespace": "elsewhere"}),
            filter=all_images(),
        )
    )
    assert credential_secret_for(resource, "m.example/a/x:1") == SecretName(
        namespace="apps", name="s"
    )
    assert credential_secret_for(resource, "other.example/x:1") is None


# --- cleanup decisions --------------------------------------------------------------------


def mirrored(
    image: str, dest: str, unused: str | None = None, digest: str = "sha256:" + "a" * 64
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "image": image,
        "mirrors": [{"image": dest, "mirroredAt": "2026-11-01T00:00:00Z", "digest": digest}],
    }
    if unused:
        entry["unusedSince"] = unused
    return entry


def test_retention_per_mirror_override_and_next_due() -> None:
    resource = parse_resource(
        cism(
            "m",
            mirror("m.example", "/cr"),
            mirror("m.example", "/own", cleanup={"enabled": True, "retention": "10m"}),
            mirror("m.example", "/off", cleanup={"enabled": False}),
            filter=all_images(),
            cleanup={"enabled": True, "retention": "1h"},
        )
    )
    thirty_ago = "2026-11-28T11:30:00Z"
    status = {
        "matchingImages": [
            {
                "image": NGINX,
                "unusedSince": thirty_ago,
                "mirrors": [
                    {"image": f"m.example/{p}/library/nginx:1.27", "mirroredAt": thirty_ago}
                    for p in ("cr", "own", "off")
                ],
            }
        ]
    }
    deletions, next_due = due_deletions(status, resource, now=NOW)
    assert [(d.destination, d.reason) for d in deletions] == [
        ("m.example/own/library/nginx:1.27", Reason.RETENTION)
    ]
    assert next_due == timedelta(minutes=30)


def test_removed_mirror_and_resource_deletion() -> None:
    resource = parse_resource(
        cism(
            "m",
            MIRROR,
            filter=all_images(),
            cleanup={"enabled": True, "retention": "24h"},
        )
    )
    status = {
        "matchingImages": [
            mirrored(NGINX, "mirror.example/m/library/nginx:1.27"),
            mirrored(REDIS, "old.example/gone/library/redis:7"),
        ]
    }
    deletions, _ = due_deletions(status, resource, now=NOW)
    assert [(d.destination, d.reason) for d in deletions] == [
        ("old.example/gone/library/redis:7", Reason.REMOVED_MIRROR)
    ]
    assert deletions[0].credential_secret is None  # nothing covers it: kept and explained
    everything, _ = due_deletions(status, resource, now=NOW, deleting=True)
    assert {d.reason for d in everything} == {Reason.RESOURCE_DELETED}
    assert len(everything) == 2


def test_cleanup_disabled_keeps_everything() -> None:
    status = {
        "matchingImages": [mirrored(NGINX, "mirror.example/m/library/nginx:1.27", UNUSED_MARKER)]
    }
    assert due_deletions(
        status,
        parse_resource(cism("m", MIRROR, filter=all_images())),
        now=NOW,
    ) == ([], None)


def test_apply_cleanup_drops_deleted_and_explains_kept() -> None:
    resource = parse_resource(
        cism(
            "m",
            MIRROR,
            filter=all_images(),
            cleanup={"enabled": True, "retention": "1s"},
        )
    )
    status = {
        "matchingImages": [
            mirrored(NGINX, "mirror.example/m/library/nginx:1.27", "2026-11-01T00:00:00Z"),
            mirrored(REDIS, "mirror.example/m/library/redis:7", "2026-11-01T00:00:00Z"),
            {
                "image": "docker.io/library/busybox:1",
                "unusedSince": "2026-11-01T00:00:00Z",
                "mirrors": [{"image": "mirror.example/m/library/busybox:1", "lastError": "x"}],
            },
        ]
    }
    outcomes = [
        CleanupOutcome(NGINX, "mirror.example/m/library/nginx:1.27", True),
        CleanupOutcome(REDIS, "mirror.example/m/library/redis:7", False, "not deleted: because"),
    ]
    after = apply_cleanup(status, resource, outcomes, now=NOW)
    assert [e["image"] for e in after["matchingImages"]] == [REDIS]
    assert after["matchingImages"][0]["mirrors"][0]["lastError"] == "not deleted: because"
    assert after["mirroredCount"] == 1


# --- folding results ----------------------------------------------------------------------


def test_apply_outcomes() -> None:
    status = {
        "matchingImages": [
            {"image": NGINX, "mirrors": [{"image": "m/nginx:1.27", "lastError": "old"}]},
            {"image": REDIS, "mirrors": [{"image": "m/redis:7"}]},
        ]
    }
    outcomes = [
        CopyOutcome(
            NGINX, "m/nginx:1.27", "2026-11-28T12:00:00Z", "sha256:" + "b" * 64, ("linux/amd64",)
        ),
        CopyOutcome(REDIS, "m/redis:7", "2026-11-28T12:00:00Z", error="boom"),
        CopyOutcome("unknown", "m/x", "2026-11-28T12:00:00Z"),
    ]
    after = apply_outcomes(status, outcomes)
    ok, failed = (e["mirrors"][0] for e in after["matchingImages"])
    assert ok == {
        "image": "m/nginx:1.27",
        "mirroredAt": "2026-11-28T12:00:00Z",
        "digest": "sha256:" + "b" * 64,
        "platforms": ["linux/amd64"],
    }
    assert failed == {"image": "m/redis:7", "lastError": "boom"}
    assert (after["mirroredCount"], after["failedCount"]) == (1, 1)
    assert CopyOutcome.from_json(outcomes[0].to_json()) == outcomes[0]
