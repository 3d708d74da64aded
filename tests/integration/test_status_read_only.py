"""`kuik status --cluster dir:PATH` only looks: it works on a directory its user may not write
(a checkout mounted read-only, another user's state, the compose services' uid 65532 owning
`.kuik`) and leaves every file as it was, while showing what a writer would.

The tests run as root, which ignores permission bits, so the unprivileged run is a forked child
that drops to `nobody` before running the command in-process (its modules are imported by a
warm-up run first: the interpreter's own files may not be readable by `nobody`).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kuik_testing.objects import cism, mirror
from kuikcore.cli.status import command
from kuikcore.cluster.local import LocalCluster
from kuikcore.cluster.statedir import StateDir

NOBODY = 65534

# the spec of every mirror here
SPEC: dict[str, Any] = {
    "mirrors": [mirror("localhost:5002", "/mirror")],
    "filter": {"include": [{"image": ".*"}]},
}


STATUS = {
    "matchingImages": [
        {
            "image": "localhost:5001/demo/web:1.0",
            "mirrors": [{"image": "localhost:5002/mirror/demo/web:1.0"}],
        }
    ]
}


def _overlay(name: str, **meta: Any) -> dict[str, Any]:
    return {**cism(name, metadata=meta, **SPEC), "status": STATUS}


def _make_tree(root: Path) -> None:
    """A live mirror with status, one deleted while holding a finalizer (a writer would mark it
    deleted) and one deleted without (a writer would drop its status file); no lock file."""
    root.mkdir()
    (root / "mirror.yaml").write_text(yaml.safe_dump(cism("live", **SPEC)))
    state = root / ".kuik" / "resources" / "ClusterImageSetMirror" / "_cluster"
    state.mkdir(parents=True)
    (state / "live.yaml").write_text(yaml.safe_dump(_overlay("live")))
    held = _overlay("held", finalizers=["kuik.enix.io/mirror-cleanup"])
    (state / "held.yaml").write_text(yaml.safe_dump(held))
    (state / "gone.yaml").write_text(yaml.safe_dump(_overlay("gone")))


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under `root` with its mode and content (directories: empty content)."""
    found = {}
    for path in sorted(root.rglob("*")):
        data = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (path.stat().st_mode, data)
    return found


def _status(root: Path) -> tuple[int, str]:
    result = CliRunner().invoke(command, ["--cluster", f"dir:{root}", "--json"])
    return result.exit_code, result.output


@pytest.fixture
def tree() -> Iterator[Path]:
    """Outside pytest's tmp_path, whose parents are root-only (0700): `nobody` must reach it."""
    base = Path(tempfile.mkdtemp(prefix="kuik-status-ro-"))
    base.chmod(0o755)
    _make_tree(base / "cluster")
    yield base / "cluster"
    for path in [base, *base.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(base)


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def test_status_writes_nothing_and_shows_what_a_writer_would(tree: Path) -> None:
    before = _snapshot(tree)
    code, output = _status(tree)
    assert code == 0, output
    assert _snapshot(tree) == before  # no .lock, no deletion mark, no removed status
    items = {i["metadata"]["name"]: i for i in json.loads(output)["items"]}
    assert set(items) == {"live", "held"}
    assert items["live"]["status"] == STATUS
    assert items["held"]["metadata"]["deletionTimestamp"]


def test_status_as_a_user_who_cannot_write(tree: Path, tmp_path: Path) -> None:
    warm = tmp_path / "warm"
    shutil.copytree(tree, warm)
    assert _status(warm)[0] == 0  # imports everything the child needs
    _make_read_only(tree)
    before = _snapshot(tree)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, run the command, report, exit without cleanup
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                (tree / "probe").write_text("x")
                writable = True
            except PermissionError:
                writable = False
            code, output = _status(tree)
            report = {"code": code, "output": output, "writable": writable}
        except BaseException as exc:  # anything: tell the parent rather than hang
            report = {"code": -1, "output": repr(exc), "writable": None}
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert report["writable"] is False  # the directory really is not writable for the child
    assert report["code"] == 0, report["output"]
    names = {i["metadata"]["name"] for i in json.loads(report["output"])["items"]}
    assert names == {"live", "held"}
    assert _snapshot(tree) == before


def test_a_read_only_state_directory_refuses_writes(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".kuik", read_only=True)
    with pytest.raises(PermissionError, match="read-only"):
        state.write(tmp_path / ".kuik" / "x.yaml", {})
    with pytest.raises(PermissionError, match="read-only"):
        state.remove(tmp_path / ".kuik" / "x.yaml")
    with state.locked():  # no lock file yet: nothing to wait for, nothing created
        pass
    assert not (tmp_path / ".kuik").exists()


async def test_writers_still_record_what_the_reader_only_shows(tree: Path) -> None:
    """The read-only switch must not leak into writers: a normal open still tidies."""
    cluster = LocalCluster(tree)
    await cluster.start()
    await cluster.stop()
    state = tree / ".kuik" / "resources" / "ClusterImageSetMirror" / "_cluster"
    assert not (state / "gone.yaml").exists()
    assert yaml.safe_load((state / "held.yaml").read_text())["metadata"]["deletionTimestamp"]
    assert (tree / ".kuik" / ".lock").exists()
    assert stat.S_ISREG((tree / ".kuik" / ".lock").stat().st_mode)
