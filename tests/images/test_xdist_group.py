"""`--dist loadgroup` keeps an `xdist_group` on one worker (one dockerd, one image build per
run), also on pytest versions where pytest-xdist's own grouping no longer sticks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GROUPED = """
import pytest

pytestmark = pytest.mark.xdist_group("docker")


@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    pass
"""

UNGROUPED = """
import pytest


@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""


def test_a_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_free.py").write_text(UNGROUPED)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-v",
            "-p",
            "kuik_testing.plugin",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            "/dev/null",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ran = re.findall(r"\[(gw\d)\].*PASSED .*::(test_\w+)\[", done.stdout)
    assert len(ran) == 12, done.stdout
    assert len({worker for worker, test in ran if test == "test_grouped"}) == 1, done.stdout
    assert len({worker for worker, _ in ran}) == 2, done.stdout
