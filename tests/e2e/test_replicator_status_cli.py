"""`kuik status --cluster kubernetes`: the same output from the Kubernetes API (the fake API server)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from kuik_testing import objects
from kuik_testing.apiserver import FakeApiServer
from kuik_testing.objects import cisa, cism
from kuik_testing.processes import bin_path

V = "kuik.enix.io/v1alpha1"


async def test_status_reads_the_kubernetes_api(apiserver: FakeApiServer, tmp_path: Path) -> None:
    apiserver.create(cisa("watch", unusedImageExpiry="24h"))
    created = apiserver.create(cism("all", objects.mirror("m.example", "/m")))
    created["status"] = {
        "matchingImages": [
            {
                "image": "docker.io/library/nginx:1.27",
                "mirrors": [
                    {
                        "image": "m.example/m/library/nginx:1.27",
                        "mirroredAt": "2026-11-28T12:00:00Z",
                        "digest": "sha256:" + "c" * 64,
                        "platforms": ["linux/amd64"],
                    }
                ],
            }
        ]
    }
    apiserver.update(created, subresource="status")
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "KUBECONFIG": str(kubeconfig),
        "COLUMNS": "250",
    }

    async def kuik(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            str(bin_path("kuik")),
            "status",
            *args,
            "--cluster",
            "kubernetes",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        return out.decode()

    items = json.loads(await kuik("--json"))["items"]
    assert sorted(i["kind"] for i in items) == [
        "ClusterImageSetAvailability",
        "ClusterImageSetMirror",
    ]
    mirror = next(i for i in items if i["kind"] == "ClusterImageSetMirror")
    assert mirror["apiVersion"] == V
    assert mirror["spec"]["mirrors"][0]["registry"] == "m.example"
    assert mirror["status"]["matchingImages"][0]["mirrors"][0]["digest"] == "sha256:" + "c" * 64
    text = await kuik("cism")
    assert "ClusterImageSetMirror/all" in text
    assert "m.example/m/library/nginx:1.27" in text
    assert "ClusterImageSetAvailability" not in text
