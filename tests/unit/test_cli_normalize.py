"""`kuik normalize`: the installed console script once, CliRunner for the details."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kuikcore.cli import main

FOO_ERROR = 'invalid reference "Foo": repository name must be lowercase'


def _kuik_script() -> Path:
    """The `kuik` console script installed next to this interpreter (the real entry point)."""
    script = Path(sys.executable).parent / "kuik"
    if not script.exists():
        pytest.fail(f"console script {script} is missing: run `uv sync --all-packages`")
    return script


def test_console_script_json_done_when() -> None:
    proc = subprocess.run(
        [str(_kuik_script()), "normalize", "--json", "busybox", "localhost:5000/a/b:1", "Foo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout) == [
        {"input": "busybox", "normalized": "docker.io/library/busybox"},
        {"input": "localhost:5000/a/b:1", "normalized": "localhost:5000/a/b:1"},
        {"input": "Foo", "error": FOO_ERROR},
    ]


def test_plain_output_one_line_per_reference() -> None:
    result = CliRunner().invoke(
        main,
        ["normalize", "busybox", "nginx:1.27", "index.docker.io/bitnami/redis@sha256:" + "a" * 64],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "docker.io/library/busybox",
        "docker.io/library/nginx:1.27",
        "docker.io/bitnami/redis@sha256:" + "a" * 64,
    ]
    assert result.stderr == ""


def test_plain_errors_go_to_stderr_and_exit_1() -> None:
    result = CliRunner().invoke(main, ["normalize", "Foo", "busybox", "nginx:-x"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["docker.io/library/busybox"]
    errors = result.stderr.splitlines()
    assert errors[0] == f"error: {FOO_ERROR}"
    assert errors[1].startswith(
        'error: invalid reference "nginx:-x": invalid reference format: tag "-x"'
    )
    assert len(errors) == 2


def test_json_all_valid_exits_0() -> None:
    result = CliRunner().invoke(main, ["normalize", "--json", "quay.io/a/b:1"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [{"input": "quay.io/a/b:1", "normalized": "quay.io/a/b:1"}]


def test_json_keeps_order_and_duplicates() -> None:
    result = CliRunner().invoke(main, ["normalize", "--json", "Foo", "a", "a", ""])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert [entry["input"] for entry in payload] == ["Foo", "a", "a", ""]
    assert payload[1] == payload[2] == {"input": "a", "normalized": "docker.io/library/a"}
    assert set(payload[3]) == {"input", "error"}
    assert "at least one component" in payload[3]["error"]


def test_no_reference_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["normalize"])
    assert result.exit_code == 2
    assert "Missing argument 'REF...'" in result.stderr


def test_listed_in_kuik_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "normalize" in result.stdout
