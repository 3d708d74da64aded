"""`kuik status`: kind names, selection and the text tables (the e2e suite covers --json end to end)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from kuik_testing import objects
from kuikcore.api import parse_resource
from kuikcore.cli.status import command, find_kind, render, select


def test_find_kind_accepts_names_plurals_and_short_names() -> None:
    assert find_kind("cism") == "ClusterImageSetMirror"
    assert find_kind("ImageSetMirrors".lower()) == "ImageSetMirror"
    assert find_kind("ClusterImageSetAvailability") == "ClusterImageSetAvailability"
    with pytest.raises(ValueError, match="unknown kind 'pods'"):
        find_kind("pods")


def test_select_by_name_and_namespace() -> None:
    items = [
        parse_resource(objects.resource("ImageSetMirror", "m", namespace="a")),
        parse_resource(objects.resource("ImageSetMirror", "m", namespace="b")),
    ]
    assert [r.metadata.namespace for r in select(items, "m")] == ["a", "b"]
    assert [r.metadata.namespace for r in select(items, "b/m")] == ["b"]
    assert select(items, "c/m") == []


def test_render_mirror_and_availability_tables() -> None:
    mirror = parse_resource(
        objects.resource(
            "ClusterImageSetMirror",
            "all",
            spec={"mirrors": [{"registry": "m.example", "path": "/m"}]},
            status={
                "matchingImages": [
                    {
                        "image": "docker.io/library/nginx:1.27",
                        "mirrors": [
                            {
                                "image": "m.example/m/library/nginx:1.27",
                                "mirroredAt": "2026-11-28T12:00:00Z",
                                "digest": "sha256:" + "a" * 64,
                                "platforms": ["linux/amd64"],
                            }
                        ],
                    }
                ]
            },
        )
    )
    cisa = parse_resource(
        objects.resource(
            "ClusterImageSetAvailability",
            "watch",
            status={
                "images": [
                    {
                        "image": "docker.io/library/redis:7",
                        "status": "NotFound",
                        "lastError": "gone",
                    }
                ]
            },
        )
    )
    console = Console(record=True, width=300)
    render(
        [mirror, cisa, parse_resource(objects.resource("ClusterReplicatedImageSet", "r"))], console
    )
    text = console.export_text()
    for expected in (
        "ClusterImageSetMirror/all",
        "m.example/m/library/nginx:1.27",
        "2026-11-28T12:00:00Z",
        "sha256:aaaaaaaaaaaa",
        "linux/amd64",
        "ClusterImageSetAvailability/watch",
        "NotFound",
        "gone",
        "ClusterReplicatedImageSet/r: no status",
    ):
        assert expected in text, expected


def test_unknown_kind_and_missing_name_exit_2(tmp_path: Any) -> None:
    runner = CliRunner()
    result = runner.invoke(command, ["pods", "--cluster", f"dir:{tmp_path}"])
    assert result.exit_code == 2
    assert "unknown kind 'pods'" in result.output
    result = runner.invoke(command, ["cism/nope", "--cluster", f"dir:{tmp_path}"])
    assert result.exit_code == 2
    assert "cism/nope not found" in result.output
    result = runner.invoke(command, ["--cluster", f"dir:{tmp_path}", "--json"])
    assert result.exit_code == 0
    assert result.output.strip().replace("\n", "").replace(" ", "") == '{"items":[]}'


def test_render_shows_conditions_and_marks_stale_ones() -> None:
    ready = {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 2,
        "lastTransitionTime": "2026-12-01T10:00:00Z",
        "reason": "Mirrored",
        "message": "all 2 image copies are present in their mirrors",
    }
    degraded = {
        "type": "Degraded",
        "status": "False",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-12-01T09:00:00Z",
        "reason": "AsExpected",
        "message": "no image copy is failing",
    }
    mirror = parse_resource(
        objects.resource(
            "ClusterImageSetMirror",
            "all",
            metadata={"generation": 2},
            status={"observedGeneration": 2, "conditions": [ready, degraded]},
        )
    )
    routing = parse_resource(
        objects.resource(
            "ReplicatedImageSet",
            "r",
            namespace="apps",
            status={"conditions": [{**ready, "reason": "Routing", "message": "routes to 2"}]},
        )
    )
    console = Console(record=True, width=300)
    render([mirror, routing], console)
    text = console.export_text()
    lines: dict[str, str] = {}  # first row of each condition: the mirror's
    for line in text.splitlines():
        if "│" in line:
            lines.setdefault(line.split("│")[1].strip(), line)
    assert "ClusterImageSetMirror/all conditions" in text
    assert "Mirrored" in lines["Ready"]
    assert "2026-12-01T10:00:00Z" in lines["Ready"]
    assert "all 2 image copies are present in their mirrors" in lines["Ready"]
    assert "stale" not in lines["Ready"]
    assert "1 (stale: spec is at 2)" in lines["Degraded"]
    assert "ReplicatedImageSet/apps/r conditions" in text
    assert "routes to 2" in text
    assert "no status" not in text  # a routing-only kind with conditions shows them
