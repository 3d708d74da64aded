"""kuikcore's layers hold (pyproject's import-linter contracts), and the check catches a wrong
import: the same contracts over a copy of the sources with one upward import added fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert f"Contracts: {len(contracts['contracts'])} kept, 0 broken." in done.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("reference", "kuikcore.service"),  # a leaf of kuikcore reaching up
        ("registry/client", "kuikcore.registry.copy"),  # the client reaching up to an operation
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, upward: str) -> None:
    copies = []
    for source in SOURCES:
        copy = tmp_path / source.relative_to(ROOT)
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(copy)
    wrong = tmp_path / f"libs/kuikcore/src/kuikcore/{module}.py"
    wrong.write_text(wrong.read_text() + f"\nimport {upward}  # reaching up\n")
    done = lint_imports(copies, tmp_path)
    assert done.returncode == 1, done.stdout
    assert f"kuikcore.{module.replace('/', '.')} -> {upward}" in done.stdout
    assert "BROKEN" in done.stdout


def test_the_architecture_diagram_is_the_contract() -> None:
    """docs/architecture.md's layer diagram lists the contract's layers, top to bottom, so the
    picture a newcomer reads cannot drift from what `make lint` enforces."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [contract] = [
        c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "kuikcore-layers"
    ]
    text = (ROOT / "docs/architecture.md").read_text()
    section = text[text.index("### Layers") :]
    block = section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]
    drawn = [line.split("   ")[0].strip() for line in block.splitlines() if line.strip()]
    wanted = [
        " : ".join(part.strip().removeprefix("kuikcore.") for part in layer.split(":"))
        for layer in contract["layers"]
    ]
    assert drawn == wanted
