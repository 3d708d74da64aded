"""`kuik-<service> --version`, through the installed console scripts: the distribution's version,
printed without loading a config or starting anything."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest


@pytest.mark.parametrize("service", ["webhook", "replicator", "monitor"])
def test_service_binary_prints_its_distribution_version(service: str) -> None:
    script = Path(sys.executable).parent / f"kuik-{service}"
    # A missing config path would be logged, and a busy port fail, if the service started.
    result = subprocess.run(
        [str(script), "--config=/nonexistent/config.yaml", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"kuik-{service}, version {version(f'kuik-{service}')}\n"
