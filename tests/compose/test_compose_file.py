"""docker-compose.yaml as written, without a daemon: what Debian's docker-compose 1.29 accepts
(format 2.4, no top-level `name`/`include`), ports published on 127.0.0.1 only, startup gated
on health, the same volumes and images for the three services. The stack itself runs in
test_compose.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).parents[2]
KUIK_SERVICES = ("replicator", "monitor", "webhook")


def rendered(*files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`docker-compose config` of the files (variables at their defaults, or as in `env`)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not found: run `make install-docker`")
    args = [a for f in files for a in ("-f", str(REPO / f))]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KUIK_")}
    done = subprocess.run(
        [binary, *args, "config"],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def test_format_is_what_compose_1_29_reads() -> None:
    raw = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    assert raw["version"] == "2.4"
    assert {"name", "include"}.isdisjoint(raw)


def test_ports_are_published_on_loopback_only_and_startup_waits_for_health() -> None:
    services = rendered("docker-compose.yaml")["services"]
    published = [p for s in services.values() for p in s.get("ports", ())]
    assert len(published) == 7
    assert {str(p).split(":")[0] for p in published} == {"127.0.0.1"}
    for name in ("redis", "registry-a", "registry-b", *KUIK_SERVICES):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
        assert services[name]["network_mode"] == "service:net", name
    for name in KUIK_SERVICES:
        service = services[name]
        assert service["depends_on"] == {
            "state-dir": {"condition": "service_completed_successfully"},
            **{
                dependency: {"condition": "service_healthy"}
                for dependency in ("redis", "registry-a", "registry-b")
            },
        }
        assert service["command"][0] == f"kuik-{name}"
        assert service["environment"]["KUIK_CLUSTER"] == "dir:/cluster"
        assert service["read_only"] is True
        volumes = sorted(service["volumes"])
        assert volumes[0].startswith(f"{REPO / 'examples' / 'cluster'}:/cluster")
        assert volumes[1].startswith(f"{REPO / 'examples' / 'config.yaml'}:")


def test_test_override_puts_every_started_service_on_the_host_network() -> None:
    services = rendered("docker-compose.yaml", "docker-compose.test.yaml")["services"]
    started = [name for name in services if name != "net"]
    assert len(started) == 7
    for name in started:
        expected = "none" if name == "state-dir" else "host"  # it needs no network
        assert services[name]["network_mode"] == expected, name
        assert services[name]["build"]["network"] == "host", name


@pytest.mark.parametrize(
    ("env", "owner"),
    [({}, "65532:65532"), ({"KUIK_UID": "1000", "KUIK_GID": "1001"}, "1000:1001")],
)
def test_kuik_services_run_as_non_root_and_own_only_the_state_directory(
    env: dict[str, str], owner: str
) -> None:
    services = rendered("docker-compose.yaml", env=env)["services"]
    for name in KUIK_SERVICES:
        assert services[name]["user"] == owner, name
        assert not services[name]["user"].startswith("0:"), name
        assert "KUIK_METRICS_SECURE" not in services[name]["environment"], name  # open locally
    # the one root container: hands /cluster/.kuik (nothing else) to that user, then exits
    init = services["state-dir"]
    assert init["user"] == "0:0"
    assert init["restart"] == "no"
    assert init["network_mode"] == "none"
    assert init["volumes"] == [services["monitor"]["volumes"][0]]
    uid, gid = owner.split(":")
    assert (init["environment"]["KUIK_UID"], init["environment"]["KUIK_GID"]) == (uid, gid)
    chown = 'chown -R "$$KUIK_UID:$$KUIK_GID" /cluster/.kuik'
    assert init["command"][-1] == f"mkdir -p /cluster/.kuik && {chown}"
