"""kuik_monitor outputs: status writes, UnavailableSecret rules, Events, metrics, /status/images."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kuik_monitor.checker import Outcome, outcome_of
from kuik_monitor.events import availability_event
from kuik_monitor.http import GROUP_BY_ERROR, go_json, status_images
from kuik_monitor.metrics import MonitoringCollector
from kuik_monitor.status import apply_outcomes, entry_statuses
from kuik_testing import objects
from kuikcore.api import AvailabilityStatus, parse_resource
from kuikcore.cluster import EventType
from kuikcore.cluster.events import invalid_filter_event
from kuikcore.credentials import CredentialChoice, CredentialSet
from kuikcore.filters import InvalidFilter
from kuikcore.registry import CheckResult
from kuikcore.routing import SecretRef

S = AvailabilityStatus
NOW = datetime(2026, 8, 1, 10, 0, 0, tzinfo=UTC)


# --- checker: §1.11 step 4 status rules --------------------------------------------------------


def choice(unavailable: str | None = None) -> CredentialChoice:
    return CredentialChoice(None, unavailable)


@pytest.mark.parametrize(
    ("unavailable", "result", "status", "error"),
    [
        (None, CheckResult(S.AVAILABLE, None, "sha256:x"), S.AVAILABLE, None),
        (None, CheckResult(S.NOT_FOUND, "image not found: x"), S.NOT_FOUND, "image not found: x"),
        # unreadable secret + refusal: UnavailableSecret takes precedence
        (
            "unavailable secret: pod a/p: secret a/s not found",
            CheckResult(S.INVALID_AUTH, "authentication failed: x"),
            S.UNAVAILABLE_SECRET,
            "unavailable secret: pod a/p: secret a/s not found",
        ),
        # anonymous check succeeded after all: the result replaces UnavailableSecret
        ("unavailable secret: x", CheckResult(S.AVAILABLE), S.AVAILABLE, None),
        (
            "fallback credential secret k/f not found: x",
            CheckResult(S.UNREACHABLE, "registry unreachable: x"),
            S.UNREACHABLE,
            "registry unreachable: x",
        ),
    ],
)
def test_outcome_rules(
    unavailable: str | None, result: CheckResult, status: S, error: str | None
) -> None:
    outcome = outcome_of("r.example/a:1", choice(unavailable), result, NOW)
    assert (outcome.status, outcome.error) == (status, error)
    assert outcome.reachable is (result.status is not S.UNREACHABLE)


def test_outcome_keeps_retry_after_and_credential_source() -> None:
    chosen = CredentialSet("ns/pod", (SecretRef("s", "ns"),))
    outcome = outcome_of(
        "r.example/a:1",
        CredentialChoice(chosen),
        CheckResult(S.QUOTA_EXCEEDED, "rate limit exceeded: x", retry_after=7.0),
        NOW,
    )
    assert outcome.retry_after == 7.0
    assert outcome.credentials == "pod ns/pod"
    assert outcome.reachable


# --- status ------------------------------------------------------------------------------------


def test_apply_outcomes_updates_only_listed_entries_and_clears_error() -> None:
    status = {
        "imageCount": 3,
        "images": [
            {"image": "r/a:1", "status": "NotFound", "lastError": "image not found: old"},
            {"image": "r/b:1", "status": "Scheduled"},
            {"image": "r/c:1", "status": "Available", "lastMonitor": "2026-07-01T00:00:00Z"},
        ],
    }
    outcomes = {
        "r/a:1": Outcome("r/a:1", S.AVAILABLE, None, NOW),
        "r/b:1": Outcome("r/b:1", S.UNREACHABLE, "registry unreachable: boom", NOW),
        "r/gone:1": Outcome("r/gone:1", S.AVAILABLE, None, NOW),
    }
    before = copy.deepcopy(status)
    new = apply_outcomes(status, outcomes)
    assert status == before  # the input is left untouched
    assert new == {
        "imageCount": 3,
        "images": [
            {"image": "r/a:1", "status": "Available", "lastMonitor": "2026-08-01T10:00:00Z"},
            {
                "image": "r/b:1",
                "status": "Unreachable",
                "lastMonitor": "2026-08-01T10:00:00Z",
                "lastError": "registry unreachable: boom",
            },
            {"image": "r/c:1", "status": "Available", "lastMonitor": "2026-07-01T00:00:00Z"},
        ],
    }
    assert entry_statuses(new) == {
        "r/a:1": S.AVAILABLE,
        "r/b:1": S.UNREACHABLE,
        "r/c:1": S.AVAILABLE,
    }


# --- events ------------------------------------------------------------------------------------


@pytest.mark.parametrize("outage", [S.NOT_FOUND, S.UNREACHABLE, S.INVALID_AUTH])
def test_events_on_outage_and_recovery(outage: S) -> None:
    warning = availability_event("r/a:1", S.AVAILABLE, outage, "why")
    assert warning is not None
    assert (warning.type, warning.reason) == (EventType.WARNING, "ImageUnavailable")
    assert warning.note == f"image r/a:1 is no longer available: {outage.value}: why"
    normal = availability_event("r/a:1", outage, S.AVAILABLE)
    assert normal is not None
    assert (normal.type, normal.reason) == (EventType.NORMAL, "ImageAvailable")
    assert normal.note == f"image r/a:1 is available again (was {outage.value})"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.SCHEDULED, S.NOT_FOUND),
        (S.AVAILABLE, S.QUOTA_EXCEEDED),
        (S.AVAILABLE, S.UNAVAILABLE_SECRET),
        (S.QUOTA_EXCEEDED, S.AVAILABLE),
        (S.NOT_FOUND, S.UNREACHABLE),
        (None, S.AVAILABLE),
        (S.AVAILABLE, S.AVAILABLE),
    ],
)
def test_no_event_for_other_transitions(old: S | None, new: S) -> None:
    assert availability_event("r/a:1", old, new) is None


def test_invalid_filter_event_is_upstreams() -> None:
    event = invalid_filter_event(
        InvalidFilter("ClusterImageSetAvailability/x", "spec.filter", "bad")
    )
    assert (event.type, event.reason, event.action) == (
        EventType.WARNING,
        "InvalidFilter",
        "ReconcileSkipped",
    )
    assert event.note.startswith("filter is invalid: ")
    assert len(availability_event("i", S.AVAILABLE, S.NOT_FOUND, "x" * 5000).note) == 1024  # type: ignore[union-attr]


# --- metrics and /status/images ----------------------------------------------------------------


CISAS = [
    parse_resource(
        objects.cisa(
            "web",
            images=[
                {
                    "image": "docker.io/library/nginx:1.27",
                    "status": "Available",
                    "original": True,
                    "lastMonitor": "2026-08-01T09:58:00Z",
                },
                {
                    "image": "ghcr.io/acme/app:1.0",
                    "status": "NotFound",
                    "lastError": "image not found: <x> & y",
                    "lastMonitor": "2026-08-01T09:00:00Z",
                    "unusedSince": "2026-07-30T12:00:00Z",
                },
                {"image": "docker.io/library/redis:7", "status": "Scheduled"},
            ],
        )
    ),
    parse_resource(
        objects.cisa(
            "all",
            images=[
                {
                    "image": "docker.io/library/nginx:1.27",
                    "status": "Available",
                    "lastMonitor": "2026-08-01T09:30:00Z",
                    "unusedSince": "0001-01-01T01:00:00Z",
                }
            ],
        )
    ),
]


def test_metrics_names_labels_and_buckets_literally() -> None:
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(lambda: CISAS, [1.0, 5.0, 60.0], clock=lambda: NOW))
    text = generate_latest(registry).decode()
    expected = """\
# HELP kube_image_keeper_monitoring_images Number of monitored image
# TYPE kube_image_keeper_monitoring_images gauge
kube_image_keeper_monitoring_images{name="all",original="false",registry="docker.io",status="Available",used="false"} 1.0
kube_image_keeper_monitoring_images{name="web",original="true",registry="docker.io",status="Available",used="true"} 1.0
kube_image_keeper_monitoring_images{name="web",original="false",registry="docker.io",status="Scheduled",used="true"} 1.0
kube_image_keeper_monitoring_images{name="web",original="false",registry="ghcr.io",status="NotFound",used="false"} 1.0
# HELP kube_image_keeper_monitoring_image_last_monitor_age_minutes Histogram of image last monitor age in minutes.
# TYPE kube_image_keeper_monitoring_image_last_monitor_age_minutes histogram
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="1.0",name="all",registry="docker.io"} 0.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="5.0",name="all",registry="docker.io"} 0.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="60.0",name="all",registry="docker.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="+Inf",name="all",registry="docker.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_count{name="all",registry="docker.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_sum{name="all",registry="docker.io"} 30.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="1.0",name="web",registry="docker.io"} 0.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="5.0",name="web",registry="docker.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="60.0",name="web",registry="docker.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="+Inf",name="web",registry="docker.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_count{name="web",registry="docker.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_sum{name="web",registry="docker.io"} 2.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="1.0",name="web",registry="ghcr.io"} 0.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="5.0",name="web",registry="ghcr.io"} 0.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="60.0",name="web",registry="ghcr.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="+Inf",name="web",registry="ghcr.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_count{name="web",registry="ghcr.io"} 1.0
kube_image_keeper_monitoring_image_last_monitor_age_minutes_sum{name="web",registry="ghcr.io"} 60.0
"""
    assert text == expected


def test_metrics_disabled_buckets_leave_only_inf() -> None:
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(lambda: CISAS[1:], None, clock=lambda: NOW))
    lines = [
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket")
    ]
    assert lines == [
        'kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{le="+Inf",name="all",registry="docker.io"} 1.0'
    ]


def test_status_images_flat_literally() -> None:
    code, body = status_images(CISAS)
    assert code == 200
    assert go_json(body) == (
        '{"items":['
        '{"cisa":"all","image":"docker.io/library/nginx:1.27","registry":"docker.io","status":"Available",'
        '"unusedSince":"0001-01-01T01:00:00Z","lastMonitor":"2026-08-01T09:30:00Z"},'
        '{"cisa":"web","image":"docker.io/library/nginx:1.27","registry":"docker.io","status":"Available",'
        '"unusedSince":null,"lastMonitor":"2026-08-01T09:58:00Z"},'
        '{"cisa":"web","image":"ghcr.io/acme/app:1.0","registry":"ghcr.io","status":"NotFound",'
        '"unusedSince":"2026-07-30T12:00:00Z","lastError":"image not found: \\u003cx\\u003e \\u0026 y",'
        '"lastMonitor":"2026-08-01T09:00:00Z"},'
        '{"cisa":"web","image":"docker.io/library/redis:7","registry":"docker.io","status":"Scheduled",'
        '"unusedSince":null,"lastMonitor":null}'
        '],"total":4}'
    )


def test_status_images_grouped_and_bad_group() -> None:
    code, body = status_images(CISAS, "registry")
    assert code == 200
    assert list(body) == ["groupBy", "groups", "total"]
    assert body["groupBy"] == "registry"
    assert list(body["groups"]) == ["docker.io", "ghcr.io"]
    assert body["groups"]["ghcr.io"] == [
        {
            "cisa": "web",
            "image": "ghcr.io/acme/app:1.0",
            "status": "NotFound",
            "unusedSince": "2026-07-30T12:00:00Z",
            "lastError": "image not found: <x> & y",
            "lastMonitor": "2026-08-01T09:00:00Z",
        }
    ]
    assert body["total"] == 4
    code, body = status_images(CISAS, "cisa")
    assert list(body["groups"]) == ["all", "web"]
    assert "cisa" not in body["groups"]["web"][0]
    assert body["groups"]["web"][0]["registry"] == "docker.io"
    assert status_images(CISAS, "namespace") == (400, {"error": GROUP_BY_ERROR})
    assert (
        go_json({"error": GROUP_BY_ERROR})
        == '{"error":"groupBy must be \\"cisa\\" or \\"registry\\""}'
    )
    assert json.loads(go_json(body)) == body
