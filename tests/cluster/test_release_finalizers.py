"""`kuik release-finalizers` (the chart's post-delete hook) against the API fake: deletions that
kuik's finalizers hold finish once no replicator is left to release them (issue 20, point 6)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kuik_testing.apiserver import FakeApiServer
from kuik_testing.objects import KUIK, cism, ism, mirror
from kuikcore.cli import main
from kuikcore.cli.finalizers import kuik_finalizers


def test_only_kuiks_own_finalizers_are_taken() -> None:
    assert kuik_finalizers(
        ["kuik.enix.io/mirror-cleanup", "other.example/keep", "kuik.enix.io/secret-cleanup"]
    ) == ["kuik.enix.io/mirror-cleanup", "kuik.enix.io/secret-cleanup"]
    assert kuik_finalizers(None) == []


def held(doc: dict[str, object], *finalizers: str) -> dict[str, object]:
    doc["metadata"]["finalizers"] = list(finalizers)  # type: ignore[index]
    return doc


async def test_held_deletions_finish_and_foreign_finalizers_stay(
    apiserver: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apiserver.create(
        held(cism("both", mirror()), "kuik.enix.io/mirror-cleanup", "kuik.enix.io/secret-cleanup")
    )
    apiserver.create(
        held(cism("shared", mirror()), "kuik.enix.io/mirror-cleanup", "other.example/keep")
    )
    apiserver.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    apiserver.create(held(ism("team", "local", mirror()), "kuik.enix.io/mirror-cleanup"))
    apiserver.create(cism("untouched", mirror()))
    for namespace, kind, name in (
        (None, "ClusterImageSetMirror", "both"),
        (None, "ClusterImageSetMirror", "shared"),
        ("team", "ImageSetMirror", "local"),
    ):
        apiserver.delete(KUIK, kind, namespace, name)
        assert apiserver.get(KUIK, kind, namespace, name) is not None  # held
    monkeypatch.setenv("KUBECONFIG", str(apiserver.write_kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    dry = await asyncio.to_thread(
        CliRunner().invoke, main, ["release-finalizers", "--dry-run", "--json"]
    )
    assert dry.exit_code == 0, dry.output
    assert len(json.loads(dry.output)["items"]) == 4
    assert apiserver.get(KUIK, "ImageSetMirror", "team", "local") is not None

    result = await asyncio.to_thread(CliRunner().invoke, main, ["release-finalizers"])
    assert result.exit_code == 0, result.output
    assert "removed kuik.enix.io/mirror-cleanup from ImageSetMirror/team/local" in result.output
    assert apiserver.get(KUIK, "ClusterImageSetMirror", None, "both") is None
    assert apiserver.get(KUIK, "ImageSetMirror", "team", "local") is None
    shared = apiserver.get(KUIK, "ClusterImageSetMirror", None, "shared")
    assert shared is not None  # still held, by somebody else's finalizer
    assert shared["metadata"]["finalizers"] == ["other.example/keep"]
    assert apiserver.get(KUIK, "ClusterImageSetMirror", None, "untouched") is not None
    again = await asyncio.to_thread(CliRunner().invoke, main, ["release-finalizers"])
    assert again.exit_code == 0
    assert "no kuik finalizer found" in again.output
