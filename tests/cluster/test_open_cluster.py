"""`open_cluster("kubernetes")` from a kubeconfig, against the fake run as its own process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s

from kuik_testing.objects import eventually, pod
from kuikcore.cluster import POD
from kuikcore.cluster.kubernetes import KubernetesCluster
from kuikcore.cluster.open import open_cluster


async def test_kubeconfig_and_a_fake_in_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kuik_testing.apiserver", "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        cluster = await open_cluster("kubernetes", field_manager="kuik-test", kinds=[POD])
        assert isinstance(cluster, KubernetesCluster)
        await cluster.start()
        try:
            async with asyncio.timeout(20):
                await cluster.wait_synced()
            async with k8s.ApiClient(k8s.Configuration(host=url)) as api:
                await k8s.CoreV1Api(api).create_namespaced_pod(
                    "a", pod("nginx", namespace="a", name="p")
                )
            await eventually(lambda: cluster.store.pod("a", "p") is not None)
        finally:
            await cluster.stop()  # also closes the client open_cluster made
    finally:
        process.terminate()
        await process.wait()
