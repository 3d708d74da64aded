"""`make demo` and `make dev` for real: the same entry point (`python -m kuik_testing.demo`) with
real redis-server, docker-registry and service processes; what it narrates, its exit codes, and
that nothing it started survives it (processes, ports, work directory), also on SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from kuik_testing import RegistryServer, get_manifest
from kuik_testing.demo.manifests import STACK_CONFIG, cluster_manifests
from kuik_testing.demo.scenario import Narrator, StepFailed, Target, demo_image, run_scenario
from kuik_testing.demo.stack import Ports
from kuik_testing.ports import free_port

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).parents[2]
DEMO = [sys.executable, "-m", "kuik_testing.demo"]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def assert_torn_down(output: str) -> None:
    """No process of the run's work directory left, its ports closed, the directory gone."""
    match = re.search(r"work directory: (\S+)", output)
    assert match, output
    workdir = match.group(1)
    ports = {int(p) for p in re.findall(r"on 127\.0\.0\.1:(\d+)", output)}
    assert len(ports) >= 6, output  # redis, registries A and B, three metrics listeners
    assert _processes_mentioning(workdir) == []
    assert sorted(p for p in ports if _listening(p)) == []
    assert not Path(workdir).exists()


def test_demo_narrates_the_reroute_and_cleans_up() -> None:
    done = subprocess.run(DEMO, capture_output=True, text=True, timeout=170, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    registry_a, registry_b = re.findall(r"registry [AB] \(docker-registry\) on (\S+)", out)
    image_a = f"{registry_a}/demo/web:1.0"
    mirror = f"{registry_b}/mirror/demo/web:1.0"
    expected = [
        "✓ pushed 3 blobs",
        "ClusterImageSetMirror/mirror-registry-a",  # kuik status output
        f"✓ {image_a} -> {mirror}",  # the replicator's copy, from the CISM status
        f"✓ {image_a}: Available",
        f"✓ {registry_a} no longer answers",
        f"✓ {registry_a} marked down by ",  # by the health probes, not the monitor's checks
        f"✓ web-2 rerouted: {image_a} -> {mirror}",
        f'kube_image_keeper_registry_up{{registry="{registry_a}"}} 0.0',
        "Demo passed in",
    ]
    positions = [out.find(line) for line in expected]
    assert -1 not in positions, [e for e, p in zip(expected, positions, strict=True) if p < 0]
    assert positions == sorted(positions), "steps narrated out of order"
    # every step carries its timing
    assert len(re.findall(r"^\[\s*\d+\.\d+s\] ▶ ", out, re.M)) == 9
    assert_torn_down(out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_everything(sig: signal.Signals) -> None:
    process = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # wait until every server and service is up
        lines.append(line)
        if "▶ Push a small image" in line:
            break
    process.send_signal(sig)
    rest, _ = process.communicate(timeout=60)
    out = "".join(lines) + rest
    assert process.returncode == 128 + sig, out
    assert f"Interrupted ({sig.name}); everything is stopped." in out
    assert_torn_down(out)


def test_a_step_that_does_not_happen_is_named(tmp_path: Path) -> None:
    """Against a registry A that is not there, the first step fails and says which it was."""
    closed = f"127.0.0.1:{free_port()}"
    target = Target(
        cluster=tmp_path,
        registry_a=closed,
        registry_b=closed,
        registry_a_url=f"http://{closed}",
        webhook_url=f"https://{closed}/mutate",
        monitor_url=f"http://{closed}",
        kill_registry_a=lambda: None,
        status_command=["true"],
    )
    with open(tmp_path / "out.txt", "w+") as out:
        with pytest.raises(StepFailed) as failed:
            run_scenario(target, Narrator(out), timeout=2)
        out.seek(0)
        narrated = out.read()
    assert failed.value.step == f"Push a small image to registry A: {closed}/demo/web:1.0"
    assert "Connection refused" in failed.value.reason or "refused" in str(failed.value)
    assert "✓" not in narrated


def test_dev_keeps_the_stack_running_until_ctrl_c(tmp_path: Path) -> None:
    fixed = Ports.fixed()
    busy = [
        p
        for p in (
            fixed.redis,
            fixed.registry_a,
            fixed.registry_b,
            fixed.webhook,
            *fixed.metrics.values(),
        )
        if _listening(p)
    ]
    if busy:
        pytest.skip(f"make dev's fixed ports are in use here: {busy}")
    cluster = tmp_path / "cluster"
    for name, docs in cluster_manifests("localhost:5001", "localhost:5002").items():
        (cluster / name).parent.mkdir(parents=True, exist_ok=True)
        (cluster / name).write_text(yaml.safe_dump_all(docs))
    process = subprocess.Popen(
        [*DEMO, "dev", "--cluster-dir", str(cluster)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C stops everything." in line or process.poll() is not None:
            break
    out = "".join(lines)
    try:
        assert "  webhook                  https://127.0.0.1:9443/mutate" in out, out
        assert "http://127.0.0.1:8082/status/images" in out
        # the example Pod's image is in registry A, so the replicator mirrors it to B
        status = cluster / ".kuik/resources/ClusterImageSetMirror/_cluster/mirror-registry-a.yaml"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if status.exists() and "mirroredAt" in status.read_text():
                break
            time.sleep(0.2)
        assert "mirroredAt" in status.read_text()
        with urllib.request.urlopen("http://127.0.0.1:8082/status/images", timeout=5) as resp:
            assert json.load(resp)["total"] >= 1
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out + rest
    assert [p for p in (fixed.redis, fixed.registry_a, 8080, 8081, 8082) if _listening(p)] == []
    assert _processes_mentioning(str(cluster)) == []


def test_examples_are_the_demo_manifests_and_config() -> None:
    """examples/ (docker-compose, make dev) holds the demo's documents for the fixed ports."""
    examples = REPO / "examples"
    for name, docs in cluster_manifests("localhost:5001", "localhost:5002").items():
        assert list(yaml.safe_load_all((examples / "cluster" / name).read_text())) == docs, name
    assert yaml.safe_load((examples / "config.yaml").read_text()) == STACK_CONFIG
    assert Ports.fixed().registry_a == 5001


def test_push_puts_the_demo_image_in_a_registry(registry: RegistryServer) -> None:
    """`python -m kuik_testing.demo push` (for docker-compose's registry A) pushes demo/web:1.0."""
    done = subprocess.run(
        [*DEMO, "push", "--registry", registry.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    fetched = get_manifest(registry, "demo/web", "1.0")
    assert fetched.status == 200
    assert f"pushed demo/web:1.0 to {registry.url} ({fetched.digest})" in done.stdout
    assert fetched.digest == demo_image().digest
