"""StateDir: what it reads is what is on disk, whoever wrote it (the parse cache is invisible)."""

from __future__ import annotations

from pathlib import Path

from kuikcore.cluster.interface import ObjectKey
from kuikcore.cluster.statedir import StateDir


def _key() -> ObjectKey:
    return ObjectKey("ClusterImageSetMirror", "", "burst")


def test_read_returns_a_fresh_copy_of_what_was_written(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    path = state.resource_path(_key())
    written = {"status": {"matchingImages": [{"image": "a", "mirrors": []}]}}
    state.write(path, written)
    written["status"]["matchingImages"].clear()  # the caller's later edits do not leak in
    first = state.read(path)
    assert first == {"status": {"matchingImages": [{"image": "a", "mirrors": []}]}}
    assert first is not None
    first["status"]["matchingImages"][0]["image"] = "edited"  # nor do a reader's edits
    assert state.read(path) == {"status": {"matchingImages": [{"image": "a", "mirrors": []}]}}


def test_read_sees_another_process_writes_and_removals(tmp_path: Path) -> None:
    mine, theirs = StateDir(tmp_path), StateDir(tmp_path)
    path = mine.resource_path(_key())
    mine.write(path, {"status": {"n": 1}})
    assert mine.read(path) == {"status": {"n": 1}}
    theirs.write(path, {"status": {"n": 2}})
    assert mine.read(path) == {"status": {"n": 2}}
    path.write_text("status: {n: 3}\n")  # a user's hand edit
    assert mine.read(path) == {"status": {"n": 3}}
    theirs.remove(path)
    assert mine.read(path) is None
