"""Small object builders and a polling helper shared by the cluster tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]
KUIK = "kuik.enix.io/v1alpha1"


def pod(namespace: str, name: str, *images: str, **extra: Any) -> JSON:
    spec: JSON = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    }
    spec.update(extra.pop("spec", {}))
    obj: JSON = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": namespace, "name": name, **extra.pop("metadata", {})},
        "spec": spec,
    }
    obj.update(extra)
    return obj


def secret(namespace: str, name: str, labels: dict[str, str] | None = None, **data: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name, "labels": labels or {}},
        "type": "Opaque",
        "data": data,
    }


def cisa(name: str, **spec: Any) -> JSON:
    return {
        "apiVersion": KUIK,
        "kind": "ClusterImageSetAvailability",
        "metadata": {"name": name},
        "spec": spec,
    }


def cism(name: str, registry: str = "mirror.example:5000", **spec: Any) -> JSON:
    return {
        "apiVersion": KUIK,
        "kind": "ClusterImageSetMirror",
        "metadata": {"name": name},
        "spec": {"mirrors": [{"registry": registry, "path": "mirror"}], **spec},
    }


def ism(namespace: str, name: str, registry: str = "mirror.example:5000") -> JSON:
    return {
        "apiVersion": KUIK,
        "kind": "ImageSetMirror",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"mirrors": [{"registry": registry, "path": "mirror"}]},
    }


async def eventually(condition: Callable[[], bool], within: float = 20.0, what: str = "") -> None:
    """Poll `condition` until true; fail naming `what` after `within` seconds (a safety net for
    convergence, not a speed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never converged: {what or condition}")
        await asyncio.sleep(0.02)
