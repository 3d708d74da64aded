"""kuikcore's layers hold (pyproject's import-linter contracts), and the check catches a wrong
import: the same contracts over a copy of the sources with one upward import added fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
SOURCES = [
    ROOT / "libs/kuikcore/src",
    ROOT / "libs/kuik-testing/src",
    ROOT / "services/webhook/src",
    ROOT / "services/replicator/src",
    ROOT / "services/monitor/src",
]


def lint_imports(pythonpath: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "lint-imports"),
            "--no-cache",
            str(ROOT / "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_the_layers_hold(tmp_path: Path) -> None:
    done = lint_imports(SOURCES, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    copies = []
    for source in SOURCES:
        copy = tmp_path / source.relative_to(ROOT)
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(copy)
    leaf = tmp_path / "libs/kuikcore/src/kuikcore/reference.py"
    leaf.write_text(leaf.read_text() + "\nimport kuikcore.service  # a leaf reaching up\n")
    done = lint_imports(copies, tmp_path)
    assert done.returncode == 1, done.stdout
    assert "kuikcore.reference -> kuikcore.service" in done.stdout
    assert "BROKEN" in done.stdout
