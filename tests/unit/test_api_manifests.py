"""kuikcore.manifests: YAML manifest trees as (file, document index, object)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuikcore.manifests import InvalidManifest, manifest_files, read_manifests


def test_reads_every_document_at_any_depth_in_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "c").mkdir()
    (tmp_path / "a.yaml").write_text("kind: A\n---\n---\nkind: B\n")
    (tmp_path / "b" / "c" / "d.yml").write_text("---\nkind: C\n")
    (tmp_path / "b" / "e.json").write_text('{"kind": "D"}')
    (tmp_path / "notes.txt").write_text("kind: ignored\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.yaml").write_text("kind: Hidden\n")
    (tmp_path / ".swap.yaml").write_text("kind: Hidden\n")
    found = [
        (m.file.relative_to(tmp_path).as_posix(), m.index, m.obj["kind"])
        for m in read_manifests(tmp_path)
    ]
    assert found == [
        ("a.yaml", 0, "A"),
        ("a.yaml", 2, "B"),
        ("b/c/d.yml", 0, "C"),
        ("b/e.json", 0, "D"),
    ]
    assert manifest_files(tmp_path / "a.yaml") == [tmp_path / "a.yaml"]


def test_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("kind: A\n---\n42\n")
    with pytest.raises(InvalidManifest) as info:
        read_manifests(tmp_path)
    assert (info.value.file, info.value.index) == (tmp_path / "x.yaml", 1)
    assert str(info.value).startswith(f"{tmp_path / 'x.yaml'}, document 2: expected a mapping")


@pytest.mark.parametrize(
    ("text", "index"),
    [("key: [\n", 0), ("a: 1\n---\nb: [\n", 1), ("---\na: 1\n---\n---\n: : :\n  - x\n", 2)],
)
def test_invalid_yaml_names_the_document(tmp_path: Path, text: str, index: int) -> None:
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(InvalidManifest) as info:
        read_manifests(tmp_path / "x.yaml")
    assert info.value.index == index
    assert "invalid YAML" in info.value.reason


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidManifest, match="no such file or directory"):
        read_manifests(tmp_path / "missing")


def test_unreadable_bytes(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InvalidManifest) as info:
        read_manifests(tmp_path)
    assert info.value.index is None
    assert "cannot read" in str(info.value)
