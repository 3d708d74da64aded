"""kubernetes-asyncio imported slim: only the parts kuik uses, the rest still there on first use.

Each test runs in a fresh interpreter, where nothing has imported the library yet.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_kubernetes_backend_loads_no_generated_model() -> None:
    out = run(
        """
        import sys
        import kuikcore.cluster.kubernetes
        loaded = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.models.")]
        apis = sorted(m for m in sys.modules if m.startswith("kubernetes_asyncio.client.api."))
        print(len(loaded), apis)
        """
    )
    assert out == (
        "0 ['kubernetes_asyncio.client.api.core_v1_api', "
        "'kubernetes_asyncio.client.api.custom_objects_api', "
        "'kubernetes_asyncio.client.api.events_v1_api']"
    )


def test_every_other_name_is_still_there_on_first_use() -> None:
    out = run(
        """
        import kuikcore.cluster.kubernetes
        import kubernetes_asyncio
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client import V1Pod
        meta = client.models.V1ObjectMeta(name="p")
        import asyncio

        async def deserialize():  # the library's own deserializer looks models up by name
            async with client.ApiClient(client.Configuration(host="http://127.0.0.1:1")) as api:
                return api._ApiClient__deserialize({"metadata": {"name": "p"}}, "V1Pod")

        pod = asyncio.run(deserialize())
        print(V1Pod.__name__, meta.name, type(pod).__name__, pod.metadata.name,
              client.AppsV1Api.__name__, kubernetes_asyncio.watch.Watch.__name__)
        """
    )
    assert out == "V1Pod p V1Pod p AppsV1Api Watch"


def test_a_library_imported_in_full_first_is_left_alone() -> None:
    out = run(
        """
        from kubernetes_asyncio import client
        import kuikcore.cluster.kubernetes
        print(client.V1Pod.__name__, "__getattr__" in vars(client))
        """
    )
    assert out == "V1Pod False"
