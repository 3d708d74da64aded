"""kuik-webhook against a Kubernetes API server (the stateful fake, through the real
kubernetes-asyncio client): CRs and Secrets come from the API, the pull-secret copy goes to it,
every request under the ClusterRole the chart gives the webhook."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
import trustme

from kuik_testing import RegistryServer
from kuik_testing.apiserver import FakeApiServer
from kuik_testing.objects import docker_secret
from kuikcore.names import MODE_LABEL
from tests.chart.roles import chart_role
from tests.e2e.test_webhook import (  # the servers are module fixtures of their own here
    PASSWORD,
    USER,
    Webhook,
    base_config,
    ca,
    images,
    mirror,
    mirror_set,
    namespace,
    push,
    user_pod,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

__all__ = ["ca", "mirror"]  # fixtures (`source` comes from conftest)


async def test_routes_from_the_api_and_copies_the_secret_into_it(
    apiserver: FakeApiServer,
    tmp_path: Path,
    ca: trustme.CA,
    source: RegistryServer,
    mirror: RegistryServer,
) -> None:
    secret = docker_secret(
        "kuik-system", "mirror-creds", mirror.host, USER, PASSWORD, string_data=True
    )
    apiserver.create(secret)  # stringData: the API server writes it into data
    apiserver.create(mirror_set("to-b", mirror.host))
    apiserver.create(namespace("canary", "audit"))
    await asyncio.to_thread(push, mirror, "m/k8s/app", "1", "k8s")
    role = chart_role("webhook")
    apiserver.grant("webhook-token", role.user, role.rules)
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig", token="webhook-token")
    hook = Webhook(tmp_path, ca)
    hook.start(
        base_config(mirror),
        cluster="kubernetes",
        env={"KUBECONFIG": str(kubeconfig)},
        wait=False,
    )
    try:
        assert hook.process is not None
        await asyncio.to_thread(hook.process.wait_ready)
        _, out = await asyncio.to_thread(
            hook.admit, user_pod("apps", {"c": f"{source.host}/k8s/app:1"})
        )
        assert images(out) == {"c": f"{mirror.host}/m/k8s/app:1"}
        name = out["spec"]["imagePullSecrets"][0]["name"]
        copy = apiserver.get("v1", "Secret", "apps", name)
        assert copy is not None
        assert copy["type"] == "kubernetes.io/dockerconfigjson"
        owner = apiserver.get("kuik.enix.io/v1alpha1", "ClusterImageSetMirror", None, "to-b")
        assert owner is not None
        assert copy["metadata"]["labels"]["kuik.enix.io/owner-uid"] == owner["metadata"]["uid"]
        auths = json.loads(base64.b64decode(copy["data"][".dockerconfigjson"]))["auths"]
        assert mirror.host in auths
        # a Namespace labelled audit (watched under the chart's role): decided, not patched
        audited = user_pod("canary", {"c": f"{source.host}/k8s/app:1"})
        response, out = await asyncio.to_thread(hook.admit, audited)
        assert "patch" not in response
        assert out == audited
        apiserver.patch(
            "v1", "Namespace", None, "canary", {"metadata": {"labels": {MODE_LABEL: "enforce"}}}
        )

        def patched() -> bool:
            sent = user_pod("canary", {"c": f"{source.host}/k8s/app:1"})
            return "patch" in hook.admit(sent)[0]

        await asyncio.to_thread(wait_until, "the relabelled Namespace seen", patched, 10)
    finally:
        await asyncio.to_thread(hook.stop)
