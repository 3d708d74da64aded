"""Ready and Degraded end to end, polled the way `kubectl wait --for=condition=...` polls
(`kuik_testing.conditions`): the replicator against the Kubernetes API fake under its chart
role, then the replicator and the monitor in local mode read through `kuik status --json`.

A registry that refuses: `locked`, a real docker-registry with htpasswd auth that kuik has no
credentials for, so every push to it is answered 401.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuik_testing import RedisServer, RegistryServer, objects, push_image, synthetic_image
from kuik_testing.apiserver import FakeApiServer
from kuik_testing.conditions import api_reader, status_reader, wait_for_condition
from kuik_testing.processes import ServiceProcess, bin_path
from kuikcore.api.conditions import condition_met, find_condition
from tests.chart.roles import chart_role

pytestmark = pytest.mark.timeout(150)

API, CISM, CRIS = objects.KUIK, objects.CISM, objects.CRIS
JSON = dict[str, Any]


@pytest.fixture(scope="module")
def mirror() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        yield server


@pytest.fixture(scope="module")
def locked() -> Iterator[RegistryServer]:
    """Refuses every anonymous push (401)."""
    with RegistryServer(username="owner", password="not-given-to-kuik") as server:
        yield server


def conditions(obj: JSON) -> dict[str, JSON]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or ()}


def cism(name: str, *mirrors: tuple[RegistryServer, str], **spec: Any) -> JSON:
    """A CISM of every image (unless `filter=`) to `(registry, path)` mirrors."""
    spec.setdefault("filter", objects.all_images())
    return objects.cism(name, *(objects.mirror(r.host, path) for r, path in mirrors), **spec)


def cris(name: str, label: str) -> JSON:
    """A CRIS of two upstreams for the Pods `label` selects."""
    upstreams = (objects.upstream("a.example", "x"), objects.upstream("b.example", "x"))
    return objects.cris(name, *upstreams, filter={"include": [{"label": label}]})


def config(tmp_path: Path, redis: RedisServer, prefix: str, **extra: Any) -> Path:
    doc = {
        "redis": {"url": redis.url, "keyPrefix": prefix},
        "mirroring": {"resyncInterval": "1s", "jobTimeout": "3s", "leaderTTL": "3s"},
        **extra,
    }
    path = tmp_path / f"config-{prefix.strip(':')}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_replicator_conditions_through_the_api(
    apiserver: FakeApiServer,
    tmp_path: Path,
    redis_shared: RedisServer,
    source: RegistryServer,
    mirror: RegistryServer,
    locked: RegistryServer,
) -> None:
    image = f"{source.host}/cond/app:1"
    await asyncio.to_thread(push_image, source, "cond/app", "1", synthetic_image("cond"))
    apiserver.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
    apiserver.create(objects.pod(image, namespace="apps", name="web"))
    apiserver.create(cism("all", (mirror, "c1")))
    apiserver.create(cris("routes", "app=web"))
    apiserver.create(cris("broken", "app in (web"))  # a selector the CRD lets through
    role = chart_role("replicator")
    apiserver.grant("replicator-token", role.user, role.rules)
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig", token="replicator-token")
    process = ServiceProcess(
        "replicator",
        ["--config", str(config(tmp_path, redis_shared, "cond-api:")), "--cluster", "kubernetes"],
        env={"KUBECONFIG": str(kubeconfig)},
        log_dir=tmp_path,
    ).start()
    try:
        await asyncio.to_thread(process.wait_ready)
        # kubectl wait --for=condition=Ready cism/all
        ready = await wait_for_condition(api_reader(apiserver, CISM, "all"))
        found = conditions(ready)
        assert ready["metadata"]["generation"] == 1
        assert ready["status"]["observedGeneration"] == 1
        assert found["Ready"]["observedGeneration"] == 1
        assert (found["Ready"]["reason"], found["Ready"]["message"]) == (
            "Mirrored",
            "all 1 image copies are present in their mirrors",
        )
        assert (found["Degraded"]["status"], found["Degraded"]["reason"]) == ("False", "AsExpected")
        ready_since = found["Ready"]["lastTransitionTime"]

        # a second mirror that refuses pushes: a new generation, Ready falls, Degraded rises
        changed = apiserver.patch(
            API,
            CISM,
            None,
            "all",
            {"spec": {"mirrors": [*ready["spec"]["mirrors"], {"registry": locked.host}]}},
        )
        assert changed["metadata"]["generation"] == 2
        assert not condition_met(changed, "Ready")  # Ready=True was for generation 1: stale
        degraded = await wait_for_condition(api_reader(apiserver, CISM, "all"), "Degraded")
        found = conditions(degraded)
        assert found["Degraded"]["reason"] == "CopiesFailing"
        assert found["Degraded"]["observedGeneration"] == 2
        message = found["Degraded"]["message"]
        assert message.startswith(f"1 of 2 image copies failing, e.g. {image} -> {locked.host}/")
        assert re.search("401|unauthorized|authentication", message, re.IGNORECASE), message
        assert "credentialSecret" in message  # what to do
        assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "CopiesFailing")
        assert found["Ready"]["lastTransitionTime"] >= ready_since
        assert degraded["status"]["failedCount"] == 1
        assert condition_met(degraded, "Ready", "False")

        # dropping the refusing mirror: Ready again, for generation 3
        apiserver.patch(API, CISM, None, "all", {"spec": {"mirrors": ready["spec"]["mirrors"]}})
        again = await wait_for_condition(api_reader(apiserver, CISM, "all"))
        assert again["metadata"]["generation"] == 3
        assert conditions(again)["Degraded"]["status"] == "False"

        # ClusterReplicatedImageSets: Ready while the filters compile, InvalidFilter otherwise
        routes = await wait_for_condition(api_reader(apiserver, CRIS, "routes"))
        assert conditions(routes)["Ready"]["reason"] == "Routing"
        assert "2 upstreams" in conditions(routes)["Ready"]["message"]
        broken = await wait_for_condition(api_reader(apiserver, CRIS, "broken"), "Ready", "False")
        found = conditions(broken)
        assert found["Ready"]["reason"] == "InvalidFilter"
        assert found["Ready"]["message"].startswith(
            "spec.filter.include[0].label: invalid selector"
        )
        assert "edit spec.filter.include[0].label" in found["Ready"]["message"]
        assert (found["Degraded"]["status"], found["Degraded"]["reason"]) == (
            "True",
            "InvalidFilter",
        )
        apiserver.patch(
            API, CRIS, None, "broken", {"spec": {"filter": {"include": [{"label": "app=web"}]}}}
        )
        fixed = await wait_for_condition(api_reader(apiserver, CRIS, "broken"))
        assert (fixed["metadata"]["generation"], conditions(fixed)["Ready"]["reason"]) == (
            2,
            "Routing",
        )
    finally:
        await asyncio.to_thread(process.stop)


async def test_conditions_in_local_mode_through_kuik_status(
    tmp_path: Path,
    redis_shared: RedisServer,
    source: RegistryServer,
    mirror: RegistryServer,
    locked: RegistryServer,
) -> None:
    present = f"{source.host}/local/app:1"
    missing = f"{source.host}/local/missing:1"
    await asyncio.to_thread(push_image, source, "local/app", "1", synthetic_image("local"))
    cluster = tmp_path / "cluster"
    cluster.mkdir()

    def write(name: str, *docs: JSON) -> None:
        target = cluster / name
        target.with_suffix(".tmp").write_text(yaml.safe_dump_all(docs))
        target.with_suffix(".tmp").rename(target)

    write("pods.yaml", objects.pod(present, namespace="apps", name="web"))
    write(
        "mirrors.yaml",
        cism("local", (mirror, "l1"), filter={"include": [{"image": ".*/local/app:.*"}]}),
    )
    avail = objects.cisa("watch", filter=objects.all_images())
    bad_avail = objects.cisa("bad", filter={"include": [{"label": "!!nope"}]})
    write("avail.yaml", avail, bad_avail)
    settings = config(
        tmp_path,
        redis_shared,
        "cond-local:",
        monitoring={"registries": {"default": {"interval": "2s", "maxPerInterval": 4}}},
    )
    where = f"dir:{cluster}"
    processes = [
        ServiceProcess(service, ["--config", str(settings), "--cluster", where], log_dir=tmp_path)
        for service in ("replicator", "monitor")
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            await asyncio.to_thread(process.wait_ready)
        ready = await wait_for_condition(status_reader("cism/local", where), within=90)
        assert ready["metadata"]["generation"] == 1
        assert conditions(ready)["Ready"]["reason"] == "Mirrored"
        watch = await wait_for_condition(status_reader("cisa/watch", where), within=90)
        assert conditions(watch)["Ready"]["reason"] == "ImagesChecked"
        assert conditions(watch)["Degraded"]["status"] == "False"
        bad = await wait_for_condition(status_reader("cisa/bad", where), "Degraded", within=30)
        assert conditions(bad)["Ready"]["status"] == "False"
        assert conditions(bad)["Ready"]["reason"] == "InvalidFilter"
        assert (
            "spec.filter.include[0].label: invalid selector" in conditions(bad)["Ready"]["message"]
        )

        # the file's spec changes: generation 2, and Ready=True for 1 no longer counts
        write(
            "mirrors.yaml",
            cism(
                "local",
                (mirror, "l1"),
                (locked, "l2"),
                filter={"include": [{"image": ".*/local/app:.*"}]},
            ),
        )
        degraded = await wait_for_condition(
            status_reader("cism/local", where), "Degraded", within=90
        )
        assert degraded["metadata"]["generation"] == 2
        assert conditions(degraded)["Degraded"]["observedGeneration"] == 2
        assert conditions(degraded)["Degraded"]["reason"] == "CopiesFailing"

        # an image that is gone: the monitor's CISA turns Degraded, saying which
        write("pods.yaml", objects.pod(present, missing, namespace="apps", name="web"))
        unavailable = await wait_for_condition(
            status_reader("cisa/watch", where), "Degraded", within=90
        )
        found = conditions(unavailable)
        assert found["Degraded"]["reason"] == "ImagesUnavailable"
        assert (
            f"1 of 2 images in use cannot be pulled, e.g. {missing} (NotFound"
            in (found["Degraded"]["message"])
        )
        assert find_condition(unavailable["status"]["conditions"], "Ready")["status"] == "True"

        # the text output shows the conditions too
        out = await asyncio.create_subprocess_exec(
            str(bin_path("kuik")),
            "status",
            "cisa/watch",
            "--cluster",
            where,
            env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE,
        )
        text = (await out.communicate())[0].decode()
        assert "ClusterImageSetAvailability/watch conditions" in text
        assert "ImagesUnavailable" in text
        assert "ImagesChecked" in text
    finally:
        for process in processes:
            await asyncio.to_thread(process.stop)
