"""What the demo declares and sends, as plain data: the local-mode manifests, the operator
config shared by `make demo`, `make dev` and docker-compose.

`examples/cluster/` and `examples/config.yaml` hold the same documents, commented, for the
default ports (a test keeps them equal).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

from kuik_testing import objects

__all__ = [
    "CISA_NAME",
    "CISM_NAME",
    "DEMO_IMAGE",
    "MIRROR_PATH",
    "STACK_CONFIG",
    "apply_admission",
    "cluster_manifests",
    "web_pod",
]

CISM_NAME = "mirror-registry-a"
CISA_NAME = "everything"
MIRROR_PATH = "mirror"
# The repository and tag pushed to registry A (a synthetic image, built in memory).
DEMO_IMAGE = "demo/web:1.0"

# Short intervals so that every effect shows within seconds; the rest are kuik's defaults (the
# monitor's among them: the reroute must not depend on the monitor noticing the outage).
STACK_CONFIG: dict[str, Any] = {
    "clusterID": "kuik-local",
    "mirroring": {
        "resyncInterval": "10s",
        "leaderTTL": "5s",
        "jobTimeout": "20s",
        "platforms": [{"os": "linux", "architecture": "amd64"}],
    },
    "routing": {"activeCheck": {"timeout": "1s"}},
}


def web_pod(name: str, image: str, namespace: str = "demo") -> dict[str, Any]:
    """The demo's one-container Pod, as a user would write it."""
    return objects.pod(
        objects.container("web", image), namespace=namespace, name=name, labels={"app": "web"}
    )


def cluster_manifests(registry_a: str, registry_b: str) -> dict[str, list[dict[str, Any]]]:
    """File name -> documents: a CISM copying registry A's images to B, a CISA watching every
    image in use, and one Pod running `DEMO_IMAGE` from A."""
    mirror = objects.cism(
        CISM_NAME,
        objects.mirror(registry_b, MIRROR_PATH),
        filter={"include": [{"image": re.escape(registry_a) + "/.+"}]},
    )
    availability = objects.cisa(CISA_NAME, filter={"include": [{"image": ".+"}]})
    return {
        "mirror.yaml": [mirror],
        "availability.yaml": [availability],
        "pods/web-1.yaml": [web_pod("web-1", f"{registry_a}/{DEMO_IMAGE}")],
    }


def apply_admission(obj: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server would store it after this AdmissionReview response.

    Raises ValueError when the response denies the object or is not a JSONPatch answer.
    """
    import jsonpatch  # dev dependency: the demo runs from the repository's environment

    response = review.get("response") or {}
    if response.get("allowed") is not True:
        raise ValueError(f"admission denied: {response.get('status')}")
    if "patch" not in response:
        return copy.deepcopy(obj)
    if response.get("patchType") != "JSONPatch":
        raise ValueError(f"unexpected patchType {response.get('patchType')!r}")
    operations = json.loads(base64.b64decode(response["patch"]))
    patched: dict[str, Any] = jsonpatch.apply_patch(obj, operations)
    return patched
