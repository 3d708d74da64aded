"""The admission endpoint always answers: 200 allowed, 400 malformed or 413 too large, never 500.

A body nested past ~1,000 levels (RecursionError) and a `Content-Encoding: gzip` body that is not
gzip used to get HTTP 500; any exception in the handler now admits the Pod unpatched, logged and
counted.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest

from kuik_testing import objects
from kuik_webhook.chooser import Chooser
from kuik_webhook.handler import AdmissionHandler
from kuik_webhook.metrics import WebhookMetrics
from kuik_webhook.review import MAX_DEPTH, MalformedReview, decode_review
from kuik_webhook.secrets import SecretReader
from kuik_webhook.server import MAX_BODY, build_app
from kuik_webhook.stale import StaleMirrorReporter
from kuikcore.registry import RegistryClient
from kuikcore.routing import RoutingOptions


def nested(depth: int) -> bytes:
    """A review whose `object` nests `depth` arrays (the review and request add two levels)."""
    body = objects.body(objects.review("@", operation="DELETE", uid="u"))
    return body.replace(b'"@"', b"[" * depth + b"]" * depth)


@pytest.fixture
async def setup() -> AsyncIterator[
    tuple[AdmissionHandler, TestClient[Any, Any], CollectorRegistry]
]:
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry)
    async with RegistryClient() as registry_client:
        chooser = Chooser(
            registry_client, board=None, metrics=metrics, check_timeout=1, cache_ttl=5
        )
        cluster: Any = object()  # DELETE reviews never reach the cluster
        handler = AdmissionHandler(
            cluster,
            chooser,
            SecretReader(cluster),
            StaleMirrorReporter(None, "", metrics, max_concurrent=0, timeout=1),
            metrics,
            RoutingOptions(),
            deadline=1.0,
        )
        async with TestClient(TestServer(build_app(handler))) as client:
            yield handler, client, registry
        await chooser.close()


@pytest.mark.parametrize("depth", [MAX_DEPTH - 2, 1_000, 1_100, 100_000])
def test_decoding_bounds_nesting_depth(depth: int) -> None:
    if depth <= MAX_DEPTH - 2:
        assert decode_review(nested(depth)).uid == "u"
        return
    with pytest.raises(MalformedReview, match=f"deeper than {MAX_DEPTH}"):
        decode_review(nested(depth))


def test_decoding_names_bad_utf8() -> None:
    with pytest.raises(MalformedReview, match="not UTF-8"):
        decode_review(
            objects.body(objects.review("x", operation="DELETE", uid="u")).replace(
                b'"x"', b'"\xff\xfe"'
            )
        )


async def test_deep_body_is_400_not_500(
    setup: tuple[AdmissionHandler, TestClient[Any, Any], CollectorRegistry],
) -> None:
    _, client, _ = setup
    response = await client.post("/mutate", data=nested(5_000))
    assert response.status == 400
    assert "deeper than" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("payload", "encoding", "status", "message"),
    [
        (b"{not gzip", "gzip", 400, "body is not gzip"),
        (b"{not deflate", "deflate", 400, "deflate"),
        (
            gzip.compress(objects.body(objects.review(None, operation="DELETE", uid="u")))[:-5],
            "gzip",
            400,
            "not one complete gzip stream",
        ),
        (b"{}", "x-unknown", 400, "unsupported Content-Encoding 'x-unknown'"),
        (b"{}", "gzip, gzip", 400, "unsupported Content-Encoding"),
        (
            gzip.compress(objects.body(objects.review(None, operation="DELETE", uid="u"))),
            "gzip",
            200,
            None,
        ),
        (
            zlib.compress(objects.body(objects.review(None, operation="DELETE", uid="u"))),
            "deflate",
            200,
            None,
        ),
        (gzip.compress(b" " * (MAX_BODY + 1)), "gzip", 413, None),  # a gzip bomb: 16 MiB at most
    ],
)
async def test_content_encodings(
    setup: tuple[AdmissionHandler, TestClient[Any, Any], CollectorRegistry],
    payload: bytes,
    encoding: str,
    status: int,
    message: str | None,
) -> None:
    _, client, _ = setup
    response = await client.post("/mutate", data=payload, headers={"Content-Encoding": encoding})
    assert response.status == status
    if message is not None:
        assert message in (await response.json())["error"]
    if status == 200:
        assert (await response.json())["response"]["allowed"] is True


async def test_any_exception_is_an_allowed_unpatched_answer(
    setup: tuple[AdmissionHandler, TestClient[Any, Any], CollectorRegistry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler, client, registry = setup

    def broken(operation: str) -> str:
        raise RecursionError("a bug past the inner guard")

    monkeypatch.setattr(handler.metrics, "operation", broken)
    response = await client.post(
        "/mutate", data=objects.body(objects.review(None, operation="DELETE", uid="abc"))
    )
    assert response.status == 200
    answer = (await response.json())["response"]
    assert answer["uid"] == "abc"
    assert answer["allowed"] is True
    assert "patch" not in answer
    assert answer["warnings"] == ["kuik: Pod admitted unchanged (internal error: RecursionError)"]
    assert registry.get_sample_value("kube_image_keeper_webhook_handler_failures_total") == 1.0

    monkeypatch.setattr(
        "kuik_webhook.handler.decode_review", lambda body: (_ for _ in ()).throw(MemoryError())
    )
    response = await client.post(
        "/mutate", data=objects.body(objects.review(None, operation="DELETE", uid="u"))
    )
    assert response.status == 400  # no uid to answer for
    assert registry.get_sample_value("kube_image_keeper_webhook_handler_failures_total") == 2.0
    generate_latest(registry)
