"""Structure-aware AdmissionReview bodies for fuzzing kuik-webhook, and the answer's invariants.

Shared by the fuzz tests (`tests/e2e/test_webhook_fuzz.py`, bounded in time) and the soak
benchmark (`bench/webhook_soak.py`, >= 10,000 requests). A `Sent` is the exact bytes and headers
posted plus the status the webhook owes them (None: 200 or 400); `check_answer` holds every
answer to kuik's promise: 200 allowed (with a patch that applies to the object the webhook
read) or 400 malformed or 413 too large, never a denial, never a 5xx.

The bodies cover every field of the request with any JSON type, nesting around and far beyond
the decoder's bound, lone surrogates and control characters, huge strings and numbers, NaN,
every Content-Encoding (and bodies that are not in theirs), invalid UTF-8, truncation, and a
body over the size limit. Hypothesis is a development dependency: import this only from tests
and benchmarks.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import http.client
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch
import yaml
from hypothesis import strategies as st

from kuik_testing import objects
from kuik_testing.ports import free_port
from kuik_testing.processes import ServiceProcess
from kuik_testing.registry import RegistryServer
from kuikcore.api import ORIGINAL_IMAGES_ANNOTATION

__all__ = [
    "MAX_BODY",
    "MAX_DEPTH",
    "Poster",
    "Sent",
    "bodies",
    "check_answer",
    "fuzz_webhook",
    "post",
    "rss_kib",
]

MAX_BODY = 16 * 1024 * 1024  # kuik_webhook.server.MAX_BODY
MAX_DEPTH = 254  # kuik_webhook.review.MAX_DEPTH


@dataclass(frozen=True)
class Sent:
    """One request: the body as posted, its headers, and what the webhook owes it."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    expect: int | None = None
    """200, 400 or 413 when the input decides it; None when 200 and 400 are both right."""
    kind: str = "review"
    """What the body is, for counts (`review`, `deep`, `garbage`, `encoding`, `too-large`...)."""

    def plain(self) -> bytes | None:
        """The body without its Content-Encoding (None when it is not in it)."""
        encoding = self.headers.get("Content-Encoding", "")
        try:
            if encoding == "gzip":
                return gzip.decompress(self.body)
            if encoding == "deflate":
                return zlib.decompress(self.body)
        except (OSError, EOFError, zlib.error):
            return None
        return self.body if encoding in ("", "identity") else None


# --- values ---------------------------------------------------------------------------------

ODD_TEXT = st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "a\x1bb\x7f", "\u202eevil", "\ufeff", "é/ü", "😀", "\n\t"]
)
_LONG = st.sampled_from([1_000, 20_000, 100_000]).map(lambda n: "x" * n)
# mostly short text, some odd characters, now and then a huge string (kept rare: time, memory)
texts = st.integers(0, 19).flatmap(
    lambda n: _LONG if n == 0 else (ODD_TEXT if n < 5 else st.text(max_size=20))
)
odd_numbers = st.sampled_from([2**64, -(2**63) - 1, 10**40, float("nan"), float("inf"), -0.0])
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | odd_numbers | texts
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | ODD_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


def _nested(depth: int, kind: int) -> tuple[str, int]:
    """JSON text nesting about `depth` arrays or objects (or both), and its exact depth."""
    if kind == 0:
        return "[" * depth + "]" * depth, depth
    if kind == 1:
        return '{"a":' * depth + "1" + "}" * depth, depth
    half = depth // 2
    return '[{"a":' * half + "[]" + "}]" * half, 2 * half + 1


_DEEP = "__kuik_fuzz_deep__"


# --- reviews ---------------------------------------------------------------------------------


@st.composite
def images(draw: st.DrawFn) -> Any:
    registry_port = draw(st.sampled_from(["1", "2"]))
    choice = draw(st.integers(0, 7))
    if choice == 0:
        return f"127.0.0.1:{registry_port}/app/web:{draw(st.sampled_from(['1', '2', 'latest']))}"
    if choice == 1:
        return f"127.0.0.1:1/old/web@sha256:{'a' * 64}"
    if choice == 2:
        return draw(texts)
    if choice == 3:
        return draw(json_values)
    if choice == 4:
        return "nginx"
    if choice == 5:
        return f"127.0.0.1:1/old/{draw(st.from_regex(r'[a-z0-9]{1,8}', fullmatch=True))}:1"
    if choice == 6:  # a valid reference on a host of its own: reroute labels, many hosts
        host = draw(st.from_regex(r"[a-z]{1,12}\.example(:[0-9]{1,5})?", fullmatch=True))
        return f"{host}/app:1"
    return (
        f"127.0.0.1:{registry_port}/{draw(st.from_regex(r'[a-z]{1,5}/[a-z]{1,5}', fullmatch=True))}"
    )


containers = st.lists(
    st.fixed_dictionaries(
        {"name": texts | json_values, "image": images()},
        optional={
            "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never", "", "bogus"])
            | json_values
        },
    )
    | json_values,
    max_size=4,
)


@st.composite
def pods(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    annotations = draw(
        st.dictionaries(
            st.sampled_from([ORIGINAL_IMAGES_ANNOTATION, "kubernetes.io/config.mirror", "x"]),
            texts | st.just('{"a": "b"}') | st.just("{}") | st.just('{"c": "\\ud800"}'),
            max_size=2,
        )
        | json_values
    )
    metadata: dict[str, Any] = {"name": draw(texts), "annotations": annotations}
    if draw(st.booleans()):
        metadata["namespace"] = draw(st.sampled_from(["default", "apps", ""]) | texts)
    if draw(st.integers(0, 4)) == 0:
        metadata["labels"] = draw(json_values)
    spec: dict[str, Any] = {"containers": draw(containers | json_values)}
    if draw(st.booleans()):
        spec["initContainers"] = draw(containers)
    if draw(st.booleans()):
        spec["ephemeralContainers"] = draw(containers)
    if draw(st.booleans()):
        spec["imagePullSecrets"] = draw(
            st.lists(st.fixed_dictionaries({"name": texts}) | json_values, max_size=2) | json_values
        )
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    if draw(st.integers(0, 5)) == 0:
        pod[draw(st.sampled_from(["metadata", "spec"]))] = draw(json_values)
    return pod


@st.composite
def reviews(draw: st.DrawFn) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": draw(st.uuids().map(str) | texts.filter(bool)),
        "kind": draw(st.just({"group": "", "version": "v1", "kind": "Pod"}) | json_values),
        "resource": draw(st.just({"group": "", "version": "v1", "resource": "pods"}) | json_values),
        "namespace": draw(st.sampled_from(["default", "apps"]) | json_values),
        "operation": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]) | json_values),
        "object": draw(pods()),
        "oldObject": draw(st.none() | pods()),
        "dryRun": draw(st.booleans() | json_values),
    }
    if draw(st.booleans()):
        request["subResource"] = draw(
            st.sampled_from(["ephemeralcontainers", "status"]) | json_values
        )
    if draw(st.integers(0, 6)) == 0:
        request["name"] = draw(json_values)
    if draw(st.integers(0, 6)) == 0:
        request["userInfo"] = draw(json_values)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _dumps(value: Any) -> bytes:
    """JSON as the API server would send it, but the stdlib's (NaN, lone surrogate escapes)."""
    return json.dumps(value).encode()


# --- bodies ----------------------------------------------------------------------------------


@functools.cache
def _gzip_bomb() -> bytes:
    return gzip.compress(b" " * (MAX_BODY + 1), compresslevel=1)


@st.composite
def bodies(draw: st.DrawFn) -> Sent:
    """Any request the webhook may get, with what it owes it."""
    shape = draw(st.integers(0, 99))
    if shape < 55:
        return _encoded(draw, _dumps(draw(reviews())), 200, "review")
    if shape < 65:  # a review whose object nests around and far beyond the bound
        depth = draw(st.integers(1, 400) | st.sampled_from([MAX_DEPTH - 3, MAX_DEPTH - 2, 5_000]))
        deep, levels = _nested(depth, draw(st.integers(0, 2)))
        review = draw(reviews())
        review["request"]["object"] = _DEEP
        body = _dumps(review).replace(_dumps(_DEEP), deep.encode(), 1)
        levels += 2  # the review and the request around it
        return _encoded(draw, body, 200 if levels <= MAX_DEPTH else 400, "deep")
    if shape < 75:  # a review with invalid UTF-8, or cut short
        body = _dumps(draw(reviews()))
        cut = draw(st.integers(0, max(len(body) - 1, 0)))
        if draw(st.booleans()):
            broken = (
                body[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + body[cut:]
            )
            return Sent(broken, expect=None, kind="bad-utf8")
        return Sent(body[:cut], expect=400, kind="truncated")
    if shape < 85:  # anything at all
        body = draw(st.binary(max_size=300) | json_values.map(_dumps))
        return Sent(body, expect=None, kind="garbage")
    if shape < 97:  # encodings kuik does not speak, or bodies that are not in theirs
        body = _dumps(draw(reviews()))
        bad = draw(st.integers(0, 4))
        if bad == 0:
            return Sent(body, {"Content-Encoding": "gzip"}, 400, "encoding")
        if bad == 1:
            return Sent(gzip.compress(body)[:-6], {"Content-Encoding": "gzip"}, 400, "encoding")
        if bad == 2:
            return Sent(body, {"Content-Encoding": "deflate"}, 400, "encoding")
        encoding = draw(st.sampled_from(["br", "zstd", "compress", "gzip, gzip", "x\u00e9"]))
        return Sent(body, {"Content-Encoding": encoding}, 400, "encoding")
    if shape < 99:  # over the limit once inflated
        return Sent(_gzip_bomb(), {"Content-Encoding": "gzip"}, 413, "too-large")
    return Sent(b" " * (MAX_BODY + 1), expect=413, kind="too-large")


def _encoded(draw: st.DrawFn, body: bytes, expect: int, kind: str) -> Sent:
    encoding = draw(st.sampled_from(["", "", "", "gzip", "deflate", "identity"]))
    if encoding == "gzip":
        return Sent(
            gzip.compress(body, compresslevel=1), {"Content-Encoding": "gzip"}, expect, kind
        )
    if encoding == "deflate":
        return Sent(zlib.compress(body, 1), {"Content-Encoding": "deflate"}, expect, kind)
    if encoding == "identity":
        return Sent(body, {"Content-Encoding": "identity"}, expect, kind)
    return Sent(body, {}, expect, kind)


# --- the answer -------------------------------------------------------------------------------


def check_answer(sent: Sent, status: int, raw: bytes) -> None:
    """Assert kuik's promise for one answer (AssertionError names what broke)."""
    assert status in (200, 400, 413), (status, raw[:300])
    if sent.expect is not None:
        assert status == sent.expect, (sent.kind, status, raw[:300])
    if status != 200:
        return
    answer = json.loads(raw)
    response = answer["response"]
    assert response["allowed"] is True, response
    plain = sent.plain()
    assert plain is not None
    review = json.loads(plain)  # what the webhook read
    assert response["uid"] == review["request"]["uid"]
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        ops = json.loads(base64.b64decode(response["patch"]))
        patched = jsonpatch.apply_patch(review["request"]["object"], ops)
        metadata = patched.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        if isinstance(annotations, dict) and ORIGINAL_IMAGES_ANNOTATION in annotations:
            assert isinstance(json.loads(annotations[ORIGINAL_IMAGES_ANNOTATION]), dict)
    for warning in response.get("warnings", []):
        assert warning.isprintable(), warning
        assert len(warning) <= 240


# --- the webhook under test -------------------------------------------------------------------


class Poster:
    """Posts to `/mutate` over one keep-alive connection, reconnecting when the server closes."""

    def __init__(self, port: int, timeout: float = 15.0) -> None:
        self.port = port
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def post(self, sent: Sent) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
            try:
                headers = {"Content-Type": "application/json", **sent.headers}
                self._connection.request("POST", "/mutate", sent.body, headers)
                response = self._connection.getresponse()
                raw = response.read()
                if response.will_close:
                    self.close()
                return response.status, raw
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def post(port: int, sent: Sent) -> tuple[int, bytes]:
    """One request on its own connection."""
    poster = Poster(port)
    try:
        return poster.post(sent)
    finally:
        poster.close()


def rss_kib(pid: int) -> int:
    """Resident set size of a process (`VmRSS`), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def fuzz_webhook(root: Path) -> Iterator[tuple[ServiceProcess, int, RegistryServer]]:
    """kuik-webhook in local mode where loopback images are contested: a mirror CR, a
    replicated set with `discardAlternative` on a refusing port, and a real registry holding
    `app/web:1` and its mirror, so the choosing code runs without leaving the machine.
    Yields the process, its admission port and the registry."""
    from kuik_testing.images import push_image, synthetic_image

    with RegistryServer() as registry:
        push_image(registry, "app/web", "1", synthetic_image("fuzz"))
        push_image(registry, "m/app/web", "1", synthetic_image("fuzz"))
        cluster = root / "cluster"
        cluster.mkdir(parents=True)
        loopback = {"include": [{"image": r"127\.0\.0\.1:\d+/.*"}]}
        docs = [
            objects.cism("m", objects.mirror(registry.host, "m"), filter=loopback),
            objects.cris(
                "r",
                objects.upstream(
                    "127.0.0.1:1",
                    "old",
                    discardAlternative=True,
                    imageFilter={"include": [".*"]},
                ),
                objects.upstream(registry.host, "app"),
            ),
        ]
        (cluster / "crs.yaml").write_text(yaml.safe_dump_all(docs))
        config = root / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {"routing": {"activeCheck": {"timeout": "2s"}}, "webhook": {"deadline": "4s"}}
            )
        )
        port = free_port()
        process = ServiceProcess(
            "webhook",
            [
                "--config",
                str(config),
                "--cluster",
                f"dir:{cluster}",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            log_dir=root,
        ).start()
        try:
            process.wait_ready()
            yield process, port, registry
        finally:
            process.stop()
