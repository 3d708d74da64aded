"""Size of a 10,000-image status as the API server stores it (kuikcore.cluster.bounded).

A ClusterImageSetMirror and a ClusterImageSetAvailability each get a 10,000-entry status
through `KubernetesCluster.update_status` against the strict API fake (etcd's 1.5 MiB object
limit, the 3 MiB request limit). Reported: the whole list's size (what was sent before the
bound), the stored object (compact JSON, how CRs are kept in etcd), the largest request body,
entries listed and omitted, the time of the write, and an estimate of the `managedFields` a
real server would add for the listed entries (the lists are list-maps: every item's key and
fields are recorded under the field manager).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from kuik_replicator.planner import with_counts
from kuik_testing.apiserver import FakeApiServer
from kuik_testing.statuses import availability_entry, mirrored_entry
from kuikcore.cluster.kubernetes import KubernetesCluster

JSON = dict[str, Any]
API = "kuik.enix.io/v1alpha1"
IMAGES = 10_000


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def _fields(value: Any) -> Any:
    """fieldsV1 of `value`, list-map items keyed by `image` (as the CRDs declare)."""
    if isinstance(value, dict):
        return {f"f:{k}": _fields(v) for k, v in value.items()} | ({".": {}} if value else {})
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = {
            "k:" + json.dumps({"image": v["image"]}, separators=(",", ":")): _fields(v)
            for v in value
        }
        return {".": {}, **items}
    return {}


def managed_fields_estimate(status: JSON) -> int:
    entry = {
        "manager": "kuik-replicator",
        "operation": "Update",
        "apiVersion": API,
        "time": "2026-12-04T10:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:status": _fields(status)},
        "subresource": "status",
    }
    return _size([entry])


async def _measure(server: FakeApiServer, kind: str, status: JSON) -> JSON:
    server.create({"apiVersion": API, "kind": kind, "metadata": {"name": "big"}, "spec": {}})
    client = server.api_client()
    cluster = KubernetesCluster(client, field_manager="bench", kinds=[kind])
    await cluster.start()
    await cluster.wait_synced()  # the object is in the store
    started = time.perf_counter()
    await cluster.update_status(kind, "", "big", lambda _: status)
    elapsed = time.perf_counter() - started
    stored = server.get(API, kind, None, "big") or {}
    written = stored.get("status") or {}
    list_key = "images" if "images" in status else "matchingImages"
    await cluster.stop()
    await client.close()
    return {
        "kind": kind,
        "entries": len(status[list_key]),
        "entry_bytes": _size(status[list_key][0]),
        "whole_list_bytes": _size(status[list_key]),
        "stored_object_bytes": _size(stored),
        "request_body_bytes_max": _size({"status": written, "metadata": {"resourceVersion": "0"}}),
        "listed": len(written.get(list_key) or ()),
        "omitted": (written.get("omitted") or {}).get("count", 0),
        "managed_fields_estimate_bytes": managed_fields_estimate(written),
        "write_seconds": round(elapsed, 3),
    }


async def _run() -> JSON:
    server = await FakeApiServer().start()
    try:
        mirrors = with_counts({"matchingImages": [mirrored_entry(i) for i in range(IMAGES)]})
        images = [availability_entry(i) for i in range(IMAGES)]
        availability = {"images": images, "imageCount": IMAGES}
        return {
            "results": [
                await _measure(server, "ClusterImageSetMirror", mirrors),
                await _measure(server, "ClusterImageSetAvailability", availability),
            ]
        }
    finally:
        await server.stop()


def run() -> JSON:
    return asyncio.run(_run())
