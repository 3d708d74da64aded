"""Local mode tells the operator about manifests it cannot use, and prunes like the API server.

An unreadable file (malformed YAML, a binary file) used to show only in `kuik status`, never in the
logs; a CR with two unknown fields named only the first and was dropped whole, where an API
server prunes unknown fields and keeps the CR.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from kuik_testing.objects import cism, mirror
from kuikcore.cluster.local import LocalCluster

CISM = "ClusterImageSetMirror"


@pytest.fixture
def unreadable_dir(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "broken.yaml").write_text("kind: Pod\nmetadata: [unclosed\n")
    (root / "binary.yaml").write_bytes(b"\x00\xff\xfe\x89PNG\r\n")
    (root / "ok.yaml").write_text(yaml.safe_dump(cism("m", mirror())))
    return root


@pytest.fixture
def unknown_fields_dir(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    root.mkdir()
    doc = cism("keep", mirror(), typo=1)
    doc["spec"]["mirrors"][0]["bogus"] = True
    (root / "m.yaml").write_text(yaml.safe_dump(doc))
    return root


def _unreadable(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (Path(e["path"]).name, e["reason"])
        for e in logs
        if e["event"] == "manifest file unreadable" and e["log_level"] == "error"
    ]


def _touch(path: Path, text: str) -> None:
    """Rewrite with another mtime, as an editor would (tests are faster than mtime steps)."""
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def test_unreadable_files_are_logged_once_per_change(unreadable_dir: Path) -> None:
    root = unreadable_dir
    cluster = LocalCluster(root)
    with capture_logs() as logs:
        await cluster.start()
        try:
            first = _unreadable(logs)
            assert sorted(name for name, _ in first) == ["binary.yaml", "broken.yaml"]
            reasons = dict(first)
            assert reasons["broken.yaml"].startswith("invalid YAML")
            assert reasons["binary.yaml"].startswith("cannot read")
            _touch(root / "ok.yaml", yaml.safe_dump(cism("m2", mirror())))
            await cluster.reload()  # another file changed: the broken ones are not news
            await cluster.reload()
            assert _unreadable(logs) == first
            _touch(root / "broken.yaml", "kind: Pod\nmetadata: [still unclosed\n")
            await cluster.reload()  # changed, still broken: said again, once
            assert [n for n, _ in _unreadable(logs)].count("broken.yaml") == 2
            assert len(cluster.problems()) == 2  # and still in `kuik status`
        finally:
            await cluster.stop()


async def test_unknown_fields_are_pruned_and_all_named(unknown_fields_dir: Path) -> None:
    cluster = LocalCluster(unknown_fields_dir)
    with capture_logs() as logs:
        await cluster.start()
        try:
            resource = cluster.store.resource(CISM, "", "keep")
            assert resource is not None  # kept, as an API server keeps it
            assert resource.spec.mirrors[0].registry == "mirror.example:5000"
            assert cluster.problems() == []
            pruned = [e for e in logs if e["event"] == "unknown fields pruned"]
            assert len(pruned) == 1
            assert pruned[0]["log_level"] == "warning"
            assert pruned[0]["fields"] == ["spec.mirrors[0].bogus", "spec.typo"]
            assert pruned[0]["name"] == "keep"
            await cluster.reload()  # unchanged file: no second warning
            assert len([e for e in logs if e["event"] == "unknown fields pruned"]) == 1
        finally:
            await cluster.stop()
