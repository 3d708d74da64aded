"""Each service's cluster calls under the ClusterRole the chart gives it (rendered by Helm),
enforced by the API fake: a call the chart does not allow is a 403 here as in a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from kuik_testing.apiserver import FakeApiServer
from kuik_testing.objects import cisa, cism, eventually, mirror, pod, secret
from kuik_webhook.service import WATCHED_KINDS
from kuikcore.api import OWNER_UID_LABEL
from kuikcore.cluster.interface import POD, SECRET, ClusterError, EventType, ObjectKey
from tests.chart.roles import chart_role
from tests.cluster.conftest import ClusterFactory

JSON = dict[str, Any]
API = "kuik.enix.io/v1alpha1"
CISM = "ClusterImageSetMirror"
CISA = "ClusterImageSetAvailability"


def world(server: FakeApiServer) -> None:
    server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
    server.create(pod("nginx:1", namespace="apps", name="web"))
    server.create(secret("kuik-system", "creds", token="dG9rZW4="))
    server.create(cism("m", mirror()))
    server.create(cisa("avail"))


def as_service(server: FakeApiServer, service: str) -> str:
    role = chart_role(service)
    token = f"token-{service}"
    server.grant(token, role.user, role.rules)
    return token


async def test_webhook_under_its_chart_role(
    apiserver: FakeApiServer, k8s_cluster_factory: ClusterFactory
) -> None:
    world(apiserver)
    token = as_service(apiserver, "webhook")
    webhook = await k8s_cluster_factory(token=token, kinds=WATCHED_KINDS)
    assert await webhook.cluster_id()
    assert await webhook.get_secret("kuik-system", "creds") is not None
    copy_ = secret("apps", "kuik-creds-1", labels={OWNER_UID_LABEL: "u"}, a="YQ==")
    await webhook.apply_secret(copy_)
    await eventually(lambda: webhook.store.secret("apps", "kuik-creds-1") is not None)
    copy_["data"] = {"a": "Yg=="}
    await webhook.apply_secret(copy_)
    # a type change recreates the copy (a Secret's type is immutable): delete, then create
    copy_["type"] = "kubernetes.io/dockerconfigjson"
    copy_["data"] = {".dockerconfigjson": "e30="}
    await eventually(
        lambda: (webhook.store.secret("apps", "kuik-creds-1") or {}).get("data") == {"a": "Yg=="}
    )
    stored = await webhook.apply_secret(copy_)
    assert stored["type"] == "kubernetes.io/dockerconfigjson"


async def test_replicator_under_its_chart_role(
    apiserver: FakeApiServer, k8s_cluster_factory: ClusterFactory
) -> None:
    world(apiserver)
    apiserver.create(secret("apps", "kuik-old", labels={OWNER_UID_LABEL: "u"}, a="YQ=="))
    token = as_service(apiserver, "replicator")
    replicator = await k8s_cluster_factory(token=token)
    assert await replicator.cluster_id()
    assert await replicator.add_finalizer(CISM, "", "m", "kuik.enix.io/secret-cleanup")
    await replicator.update_status(CISM, "", "m", lambda s: {**s, "imageCount": 0})
    await replicator.emit_event(ObjectKey(CISM, "", "m"), EventType.NORMAL, "Copied", "done")
    assert [e["reason"] for e in apiserver.objects("events.k8s.io/v1", "Event")] == ["Copied"]
    assert await replicator.delete_secret("apps", "kuik-old")
    assert await replicator.remove_finalizer(CISM, "", "m", "kuik.enix.io/secret-cleanup")
    with pytest.raises(ClusterError, match="is forbidden"):  # the monitor's, not its own
        await replicator.update_status(CISA, "", "avail", lambda s: {**s, "imageCount": 0})


async def test_monitor_under_its_chart_role(
    apiserver: FakeApiServer, k8s_cluster_factory: ClusterFactory
) -> None:
    world(apiserver)
    token = as_service(apiserver, "monitor")
    monitor = await k8s_cluster_factory(token=token, kinds=(POD, SECRET, CISA))
    assert await monitor.get_secret("kuik-system", "creds") is not None
    await monitor.update_status(CISA, "", "avail", lambda s: {**s, "imageCount": 0})
    await monitor.emit_event(ObjectKey(CISA, "", "avail"), EventType.WARNING, "Gone", "x")
    assert [e["reason"] for e in apiserver.objects("events.k8s.io/v1", "Event")] == ["Gone"]
    with pytest.raises(ClusterError, match="is forbidden"):
        await monitor.apply_secret(secret("apps", "kuik-x", labels={OWNER_UID_LABEL: "u"}))
