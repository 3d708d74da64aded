"""Out-of-cluster credentials keep working after the first token expires (issue 20, point 3).

A kubeconfig whose user is an `exec` plugin (as EKS and GKE write them) that hands out a new
short-lived token on every run; the API fake accepts only the newest one, as a real API server
rejects an expired token. The real kubernetes-asyncio client, loaded the way services load it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuik_testing.apiserver import FakeApiServer
from kuik_testing.objects import eventually, pod
from kuikcore.cluster import POD
from kuikcore.cluster.informer import InformerSettings
from kuikcore.cluster.kubeconfig import CredentialRefresher
from kuikcore.cluster.kubernetes import KubernetesCluster, api_client_from_environment

PLUGIN = """
import datetime, json, pathlib, sys
state = pathlib.Path(sys.argv[1])
n = int(state.read_text() or "0") + 1 if state.exists() else 1
state.write_text(str(n))
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "kind": "ExecCredential",
    "status": {"token": f"token-{n}", "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")},
}))
"""


def revoke(state: Path) -> None:
    """Make the token in use invalid, as its expiry would."""
    state.write_text(str(int(state.read_text()) + 1))


SETTINGS = InformerSettings(watch_timeout=5.0, backoff_initial=0.05, backoff_max=0.3)


@pytest.fixture
def kubeconfig(
    tmp_path: Path, apiserver: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    plugin, state = tmp_path / "plugin.py", tmp_path / "issued"
    plugin.write_text(PLUGIN)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": apiserver.url}}],
        "users": [
            {
                "name": "exec",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": sys.executable,
                        "args": [str(plugin), str(state)],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "exec"}}],
        "current-context": "fake",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # only the newest token is valid: each new one revokes the one before
    apiserver.accept_token = lambda token: token == f"token-{state.read_text()}"
    yield state
    apiserver.accept_token = None


async def test_exec_plugin_tokens_are_refreshed_before_requests_fail(
    apiserver: FakeApiServer, kubeconfig: Path
) -> None:
    client = await api_client_from_environment()
    refresher = client.configuration.refresh_api_key_hook
    assert isinstance(refresher, CredentialRefresher)
    refresher.every = 0.3
    cluster = KubernetesCluster(client, kinds=[POD], settings=SETTINGS, close_client=True)
    await cluster.start()
    try:
        await asyncio.wait_for(cluster.wait_synced(), 10)
        for i in range(3):
            await asyncio.sleep(0.5)
            revoke(kubeconfig)
            apiserver.create(pod("nginx", namespace="a", name=f"after-rotation-{i}"))
            apiserver.cut_watches()  # the next watch authenticates again
            await eventually(
                lambda i=i: cluster.store.pod("a", f"after-rotation-{i}") is not None,
                within=10,
                what=f"the Pod created after rotation {i}",
            )
        assert refresher.refreshes >= 3
        assert all(informer.problem is None for informer in cluster.informers)
    finally:
        await cluster.stop()


async def test_without_refreshing_the_first_expiry_locks_kuik_out(
    apiserver: FakeApiServer, kubeconfig: Path
) -> None:
    """What the refresher prevents: the same setup with the hook removed ends in 401s."""
    client = await api_client_from_environment()
    client.configuration.refresh_api_key_hook = None
    cluster = KubernetesCluster(client, kinds=[POD], settings=SETTINGS, close_client=True)
    await cluster.start()
    try:
        await asyncio.wait_for(cluster.wait_synced(), 10)
        revoke(kubeconfig)
        apiserver.cut_watches()
        [informer] = cluster.informers
        await eventually(lambda: informer.problem is not None, within=10, what="a 401")
        assert "HTTP 401 (unauthorized)" in (informer.problem or "")
    finally:
        await cluster.stop()
