"""What the docker test helper says when it cannot run (tests skip with it), and where it caches."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kuik_testing.docker import cache_dir, docker_missing


def _fake_tools(directory: Path, names: tuple[str, ...]) -> str:
    for name in names:
        tool = directory / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return str(directory)


def test_names_every_missing_tool_and_the_install_target(tmp_path: Path) -> None:
    message = docker_missing(path=_fake_tools(tmp_path, ("runc",)), euid=0)
    assert message is not None
    assert message.startswith("dockerd, containerd, mmdebstrap, docker not found")
    assert "make install-docker" in message
    assert "root" not in message


def test_names_missing_root(tmp_path: Path) -> None:
    tools = ("dockerd", "containerd", "runc", "mmdebstrap", "docker")
    assert docker_missing(path=_fake_tools(tmp_path, tools), euid=0) is None
    message = docker_missing(path=_fake_tools(tmp_path, tools), euid=1000)
    assert message == "dockerd needs root (these tests run as root in CI)"


def test_cache_dir_follows_kuik_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cache" / "kuik"
    monkeypatch.setenv("KUIK_CACHE_DIR", str(target))
    assert cache_dir() == target
    assert target.is_dir()
