"""A verb missing from a service's chart RBAC is said clearly, not retried in silence (issue 20,
point 4): the monitor runs against the API fake under its chart ClusterRole with `list` on Pods
taken out; its `/readyz` names the verb and resource, its log says it at error level with what to
check, its metrics count it, and granting the verb back makes it ready."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuik_testing import RedisServer
from kuik_testing.apiserver import FakeApiServer
from kuik_testing.processes import ServiceProcess
from tests.chart.roles import chart_role

pytestmark = pytest.mark.timeout(120)


def without(rules: list[dict[str, Any]], resource: str, verb: str) -> list[dict[str, Any]]:
    """The rules with `verb` taken off every rule naming `resource`."""
    out = copy.deepcopy(rules)
    for rule in out:
        if resource in rule.get("resources", []):
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return out


async def test_a_missing_verb_is_reported_by_readiness_logs_and_metrics(
    apiserver: FakeApiServer, tmp_path: Path, redis_shared: RedisServer
) -> None:
    role = chart_role("monitor")
    assert any("pods" in r["resources"] and "list" in r["verbs"] for r in role.rules)
    apiserver.grant("monitor-token", role.user, without(role.rules, "pods", "list"))
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig", token="monitor-token")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"redis": {"url": redis_shared.url, "keyPrefix": "rbac:"}}))
    monitor = ServiceProcess(
        "monitor",
        ["--config", str(config), "--cluster", "kubernetes"],
        env={"KUBECONFIG": str(kubeconfig)},
        log_dir=tmp_path,
    ).start()
    try:

        async def readyz() -> tuple[int, str]:
            try:
                return await asyncio.to_thread(monitor.get, "/readyz")
            except OSError:  # not listening yet
                return 0, ""

        for _ in range(100):
            status, body = await readyz()
            if "forbidden" in body:
                break
            await asyncio.sleep(0.1)
        assert status == 503
        assert (
            "[-]cluster failed: ClusterNotReady: cannot list Pod (v1): HTTP 403 (forbidden)" in body
        )
        lines = [json.loads(x) for x in monitor.log_text().splitlines() if x.startswith("{")]
        said = [
            x for x in lines if str(x.get("event")).startswith("kubernetes API refused a request")
        ]
        assert said
        assert said[0]["level"] == "error"
        assert (said[0]["verb"], said[0]["resource"]) == ("list", "Pod (v1)")
        assert "ClusterRole" in said[0]["hint"]
        metrics = await asyncio.to_thread(monitor.metrics)
        assert (
            'kube_image_keeper_cluster_request_failures_total{kind="Pod",reason="forbidden",'
            'verb="list"}' in metrics
        )
        # RBAC fixed: the next attempt (at the longest backoff, 30 s by default) goes through
        apiserver.grant("monitor-token", role.user, role.rules)
        await asyncio.to_thread(monitor.wait_ready, 60)
    finally:
        await asyncio.to_thread(monitor.stop)
