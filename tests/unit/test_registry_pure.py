"""Pure parts of kuikcore.registry: errors, media types, platforms, auth parsing, token cache."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from kuikcore.api import AvailabilityStatus
from kuikcore.config import load_config
from kuikcore.registry import (
    Credentials,
    InvalidAuth,
    NotFound,
    PlatformNotFound,
    QuotaExceeded,
    RegistryError,
    Unreachable,
    UnsupportedManifest,
    classify,
    parse_platform,
)
from kuikcore.registry.auth import TokenCache, parse_challenges, scope_for
from kuikcore.registry.client import tls_from_config
from kuikcore.registry.copy import plan_index
from kuikcore.registry.errors import error_from_response, is_rate_limited, parse_error_body
from kuikcore.registry.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    parse_manifest,
)
from kuikcore.registry.platforms import Platform, filter_children
from kuikcore.registry.transport import (
    Deadline,
    RegistryTLS,
    api_host,
    is_loopback,
    parse_retry_after,
)

ERROR_BODY = json.dumps(
    {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]}
).encode()


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (404, NotFound),
        (401, InvalidAuth),
        (403, InvalidAuth),
        (429, QuotaExceeded),
        (500, Unreachable),
        (502, Unreachable),
        (503, Unreachable),
        (408, Unreachable),
        (400, RegistryError),
        (405, RegistryError),
    ],
)
def test_error_from_response_classifies_by_status(status: int, cls: type[RegistryError]) -> None:
    error = error_from_response(status, "GET r/v2/x/manifests/y", ERROR_BODY)
    assert type(error) is cls
    assert error.status == status
    assert error.codes == ("MANIFEST_UNKNOWN",)
    assert "MANIFEST_UNKNOWN: manifest unknown" in str(error)
    assert str(error).startswith(f"GET r/v2/x/manifests/y: HTTP {status}")


def test_quota_exceeded_keeps_retry_after() -> None:
    error = error_from_response(429, "HEAD x", b"", retry_after=12.0)
    assert isinstance(error, QuotaExceeded)
    assert error.retry_after == 12.0
    assert "retry after 12s" in str(error)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"errors": "x"}', b'{"a": 1}'])
def test_parse_error_body_tolerates_non_distribution_bodies(body: bytes) -> None:
    assert parse_error_body(body) == ()


@pytest.mark.parametrize(
    ("value", "limited"),
    [("0;w=21600", True), (" 0;w=60", True), ("100;w=21600", False), ("0", False), (None, False)],
)
def test_rate_limit_header_is_detected_like_upstream(value: str | None, limited: bool) -> None:
    headers = {} if value is None else {"RateLimit-Remaining": value}
    assert is_rate_limited(headers) is limited


@pytest.mark.parametrize(
    ("error", "status", "prefix"),
    [
        (NotFound("m"), AvailabilityStatus.NOT_FOUND, "image not found: m"),
        (InvalidAuth("m"), AvailabilityStatus.INVALID_AUTH, "authentication failed: m"),
        (QuotaExceeded("m"), AvailabilityStatus.QUOTA_EXCEEDED, "rate limit exceeded"),
        (Unreachable("m"), AvailabilityStatus.UNREACHABLE, "registry unreachable: m"),
        (RegistryError("m", status=400), AvailabilityStatus.UNREACHABLE, "registry unreachable: m"),
    ],
)
def test_classify_gives_upstream_status_and_prefix(
    error: RegistryError, status: AvailabilityStatus, prefix: str
) -> None:
    result = classify(error)
    assert result.status is status
    assert result.error is not None
    assert result.error.startswith(prefix)


# --- media types --------------------------------------------------------------------------


def _manifest(media_type: str | None = OCI_MANIFEST) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "config": {"mediaType": "c", "digest": "sha256:" + "a" * 64, "size": 10},
        "layers": [{"mediaType": "l", "digest": "sha256:" + "b" * 64, "size": 20}],
    }
    if media_type:
        doc["mediaType"] = media_type
    return json.dumps(doc).encode()


def test_parse_manifest_reads_config_and_layers_and_hashes_raw_bytes() -> None:
    raw = _manifest()
    manifest = parse_manifest(raw, OCI_MANIFEST, "here")
    assert manifest.digest == digest_of(raw)
    assert not manifest.is_index
    assert [b.size for b in manifest.blobs] == [10, 20]


def test_parse_manifest_falls_back_to_declared_media_type() -> None:
    manifest = parse_manifest(_manifest(DOCKER_MANIFEST), "application/octet-stream", "here")
    assert manifest.media_type == DOCKER_MANIFEST


def test_parse_index_children_keep_platform() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": "sha256:" + "c" * 64,
                    "size": 5,
                    "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
                }
            ],
        }
    ).encode()
    index = parse_manifest(raw, DOCKER_MANIFEST_LIST, "here")
    assert index.is_index
    assert index.children[0].platform == {"os": "linux", "architecture": "arm64", "variant": "v8"}


@pytest.mark.parametrize(
    "raw",
    [
        b"nope",
        b"[1]",
        json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(),
        json.dumps({"mediaType": OCI_INDEX, "manifests": "x"}).encode(),
        json.dumps({"mediaType": OCI_MANIFEST, "config": {"digest": 3}, "layers": []}).encode(),
    ],
)
def test_parse_manifest_rejects_what_it_cannot_copy(raw: bytes) -> None:
    with pytest.raises(UnsupportedManifest, match="here"):
        parse_manifest(raw, None, "here")


# --- platforms ----------------------------------------------------------------------------


def test_parse_platform() -> None:
    assert parse_platform("linux/arm/v7") == Platform("linux", "arm", "v7")
    assert str(parse_platform("linux/amd64")) == "linux/amd64"
    for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""]:
        with pytest.raises(ValueError, match="invalid platform"):
            parse_platform(bad)


def test_satisfies_ignores_variant_unless_requested() -> None:
    image = Platform("linux", "arm", "v7")
    assert image.satisfies(Platform("linux", "arm"))
    assert image.satisfies(Platform("linux", "arm", "v7"))
    assert not image.satisfies(Platform("linux", "arm", "v6"))
    assert not image.satisfies(Platform("linux", "arm64"))
    assert not image.satisfies(Platform("windows", "arm"))


def test_filter_children_drops_unknown_platforms_and_reports_missing() -> None:
    children = [
        (Platform("linux", "amd64"), "a"),
        (None, "attestation"),
        (Platform("linux", "arm64", "v8"), "b"),
    ]
    kept, missing = filter_children(
        children, [Platform("linux", "arm64"), Platform("linux", "s390x")]
    )
    assert kept == ["b"]
    assert missing == [Platform("linux", "s390x")]


def _index(*platforms: dict[str, str] | None) -> bytes:
    manifests = []
    for i, platform in enumerate(platforms):
        entry: dict[str, object] = {
            "mediaType": OCI_MANIFEST,
            "digest": "sha256:" + str(i) * 64,
            "size": 100 + i,
        }
        if platform:
            entry["platform"] = platform
        manifests.append(entry)
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, indent=3
    ).encode()


def test_plan_index_all_platforms_is_verbatim() -> None:
    index = parse_manifest(_index({"os": "linux", "architecture": "amd64"}, None), None, "i")
    raw, children, missing = plan_index(index, [Platform("linux", "amd64")], all_platforms=True)
    assert raw == index.raw
    assert len(children) == 2
    assert missing == []


def test_plan_index_filter_rewrites_index_without_dropped_children() -> None:
    index = parse_manifest(
        _index({"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}),
        None,
        "i",
    )
    raw, children, missing = plan_index(
        index, [Platform("linux", "amd64"), Platform("linux", "ppc64le")], all_platforms=False
    )
    assert [c.digest for c in children] == ["sha256:" + "0" * 64]
    assert missing == [Platform("linux", "ppc64le")]
    assert [m["digest"] for m in json.loads(raw)["manifests"]] == ["sha256:" + "0" * 64]
    assert digest_of(raw) != index.digest


def test_plan_index_keeps_bytes_when_every_child_matches() -> None:
    index = parse_manifest(_index({"os": "linux", "architecture": "amd64"}), None, "i")
    raw, _, _ = plan_index(index, [Platform("linux", "amd64")], all_platforms=False)
    assert raw == index.raw


def test_plan_index_without_any_match_is_an_error() -> None:
    index = parse_manifest(_index({"os": "linux", "architecture": "amd64"}), None, "i")
    with pytest.raises(PlatformNotFound, match="none of the configured platforms"):
        plan_index(index, [Platform("linux", "arm64")], all_platforms=False)


# --- auth -------------------------------------------------------------------------------


def test_parse_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )
    (challenge,) = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.params["service"] == "registry.docker.io"
    assert challenge.params["scope"] == "repository:library/nginx:pull"


def test_parse_several_challenges_and_escapes() -> None:
    challenges = parse_challenges('Basic realm="a \\"b\\"", Bearer realm=x,error=invalid_token')
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].realm == 'a "b"'
    assert challenges[1].params == {"realm": "x", "error": "invalid_token"}


@pytest.mark.parametrize("header", ["", "   ", "=broken"])
def test_parse_challenges_tolerates_garbage(header: str) -> None:
    assert parse_challenges(header) == []


def test_credentials_never_show_password() -> None:
    creds = Credentials("alice", "s3cret-pw")
    assert "s3cret-pw" not in repr(creds)
    assert "s3cret-pw" not in str(creds)
    assert "s3cret-pw" not in creds.fingerprint
    assert Credentials.parse("bob:pa:ss") == Credentials("bob", "pa:ss")
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        Credentials.parse("nobody")


def test_token_cache_expires_with_margin_and_serves_wider_scope() -> None:
    now = [100.0]
    cache = TokenCache(clock=lambda: now[0], margin=10)
    push = (scope_for("a/b", ["pull", "push"]),)
    cache.put("h", "who", push, "T", expires_in=60)
    assert cache.get("h", "who", push) == "T"
    assert cache.get("h", "who", (scope_for("a/b", ["pull"]),)) == "T"
    assert cache.get("h", "other", push) is None
    now[0] = 149.0
    assert cache.get("h", "who", push) == "T"
    now[0] = 150.0  # 10 s before expiry: never hand it out
    assert cache.get("h", "who", push) is None
    cache.put("h", "who", push, "U", expires_in=0)  # unspecified: 60 s
    assert cache.get("h", "who", push) == "U"
    cache.put("h", "who", push, "short", expires_in=4)  # margin never exceeds half the life
    now[0] += 1.9
    assert cache.get("h", "who", push) == "short"
    now[0] += 0.2
    assert cache.get("h", "who", push) is None
    cache.put("h", "who", push, "U", expires_in=60)
    cache.drop("h", "who", push)
    assert cache.get("h", "who", push) is None


# --- transport helpers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loop"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("registry.example.com", False),
        ("docker.io", False),
    ],
)
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_docker_hub_api_host() -> None:
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("index.docker.io") == "registry-1.docker.io"
    assert api_host("quay.io") == "quay.io"


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    when = datetime(2030, 1, 1, tzinfo=UTC)
    now = (when - timedelta(seconds=30)).timestamp()
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == pytest.approx(30)


def test_deadline() -> None:
    assert Deadline.after(None).remaining() is None
    assert Deadline.after(0).remaining() is None  # upstream: 0 means no timeout
    deadline = Deadline.after(timedelta(seconds=100))
    remaining = deadline.remaining()
    assert remaining is not None
    assert 0 < remaining <= 100
    assert deadline.allows(1)
    assert not deadline.allows(1000)
    assert Deadline(at=0.0).expired()


def test_tls_options_come_from_the_operator_config(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed here")
    path = tmp_path / "config.yaml"
    path.write_text(
        f'registries:\n  docker.io:\n    caFile: {ca}\n  "127.0.0.1:5000":\n    insecure: true\n'
    )
    lookup = tls_from_config(load_config(path, env={}))
    assert lookup("registry-1.docker.io") == RegistryTLS(ca_file=str(ca))
    assert lookup("127.0.0.1:5000") == RegistryTLS(insecure=True)
    assert lookup("quay.io") == RegistryTLS()
