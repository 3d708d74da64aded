"""kuikcore.reference against the test tables of github.com/distribution/reference.

The cases below are ported as data from that library's normalize_test.go and
reference_test.go (ParseNormalizedNamed, FamiliarName/String, TagNameOnly, ParseNamed).
Where kuik deliberately differs, the case says so.
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from kuikcore.reference import (
    DOCKER_HUB_API_HOST,
    InvalidReference,
    Reference,
    normalize,
    parse,
    validate_digest,
    validate_tag,
)

SHA_F = "sha256:" + "f" * 64
SHA_REDIS = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

# --- normalize_test.go: TestValidateReferenceName / TestValidateRemoteName ----------------

VALID_NAMES = [
    "docker/docker",
    "library/debian",
    "debian",
    "localhost/library/debian",
    "localhost/debian",
    "LOCALDOMAIN/library/debian",
    "LOCALDOMAIN/debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "192.168.0.1",
    "192.168.0.1:80",
    "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    f"docker.io/{HEX64}",
    "Docker/docker",
    "DOCKER/docker",
    "docker-rules/docker",
    "docker---rules/docker",
    "doc/docker",
    "d/docker",
    "jess/t",
    "dock__er/docker",
]

INVALID_NAMES = [
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    HEX64,
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
]


@pytest.mark.parametrize("text", VALID_NAMES)
def test_valid_names_parse(text: str) -> None:
    ref = parse(text)
    assert parse(str(ref)) == ref


@pytest.mark.parametrize("text", INVALID_NAMES)
def test_invalid_names_are_refused(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse(text)
    assert info.value.input == text
    assert info.value.reason
    assert str(info.value).startswith(f'invalid reference "{text[:50]}')


# --- normalize_test.go: TestParseRepositoryInfo --------------------------------------------
# (remote name, familiar name, full name, ambiguous name or "", domain)
REPOSITORY_INFO = [
    ("fooo", "localhost/fooo", "localhost/fooo", "localhost/fooo", "localhost"),
    ("fooo/bar", "localhost/fooo/bar", "localhost/fooo/bar", "localhost/fooo/bar", "localhost"),
    ("fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN"),
    (
        "fooo/bar",
        "LOCALDOMAIN/fooo/bar",
        "LOCALDOMAIN/fooo/bar",
        "LOCALDOMAIN/fooo/bar",
        "LOCALDOMAIN",
    ),
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
    (
        "private/moonbase",
        "127.0.0.1:8000/private/moonbase",
        "127.0.0.1:8000/private/moonbase",
        "",
        "127.0.0.1:8000",
    ),
    (
        "privatebase",
        "127.0.0.1:8000/privatebase",
        "127.0.0.1:8000/privatebase",
        "",
        "127.0.0.1:8000",
    ),
    (
        "private/moonbase",
        "example.com/private/moonbase",
        "example.com/private/moonbase",
        "",
        "example.com",
    ),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
    (
        "private/moonbase",
        "example.com:8000/private/moonbase",
        "example.com:8000/private/moonbase",
        "",
        "example.com:8000",
    ),
    (
        "privatebasee",
        "example.com:8000/privatebasee",
        "example.com:8000/privatebasee",
        "",
        "example.com:8000",
    ),
    (
        "library/ubuntu-12.04-base",
        "ubuntu-12.04-base",
        "docker.io/library/ubuntu-12.04-base",
        "index.docker.io/library/ubuntu-12.04-base",
        "docker.io",
    ),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
    ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
    ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
]


@pytest.mark.parametrize(
    ("text", "remote", "familiar", "full", "domain"),
    [
        pytest.param(text, remote, familiar, full, domain, id=text)
        for remote, familiar, full, ambiguous, domain in REPOSITORY_INFO
        for text in (familiar, full, ambiguous)
        if text
    ],
)
def test_repository_info(text: str, remote: str, familiar: str, full: str, domain: str) -> None:
    ref = parse(text)
    assert ref.familiar_name() == familiar
    assert ref.familiar() == familiar
    assert str(ref) == full
    assert ref.name == full
    assert ref.domain == domain
    assert ref.path == remote
    assert ref.tag is None
    assert ref.digest is None


# --- normalize_test.go: TestNormalizedSplitHostname ----------------------------------------

SPLIT_HOSTNAME = [
    ("test.com/foo", "test.com", "foo"),
    ("test_com/foo", "docker.io", "test_com/foo"),
    ("docker/migrator", "docker.io", "docker/migrator"),
    ("test.com:8080/foo", "test.com:8080", "foo"),
    ("test-com:8080/foo", "test-com:8080", "foo"),
    ("foo", "docker.io", "library/foo"),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ("docker.io/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
    # kuik additions: the legacy Docker Hub name, IPv6, localhost with a port
    ("index.docker.io/foo", "docker.io", "library/foo"),
    ("index.docker.io/library/foo:1", "docker.io", "library/foo"),
    ("[::1]:5000/foo", "[::1]:5000", "foo"),
    ("[::1]/foo", "[::1]", "foo"),
    ("localhost:5000/a/b:1", "localhost:5000", "a/b"),
]


@pytest.mark.parametrize(("text", "domain", "path"), SPLIT_HOSTNAME)
def test_split_hostname(text: str, domain: str, path: str) -> None:
    ref = parse(text)
    assert (ref.domain, ref.path) == (domain, path)
    assert ref.registry_host == domain
    assert ref.repository == path


# --- normalize_test.go: TestParseReferenceWithTagAndDigest, TestParseAnyReference ----------


def test_tag_and_digest_together() -> None:
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = parse(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.tag == "latest"
    assert ref.digest == short.partition("@")[2]
    assert ref.is_digest_pinned
    assert ref.familiar() == short


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis", "docker.io/library/redis"),
        ("redis:latest", "docker.io/library/redis:latest"),
        ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
        (f"redis@{SHA_REDIS}", f"docker.io/library/redis@{SHA_REDIS}"),
        (f"docker.io/library/redis@{SHA_REDIS}", f"docker.io/library/redis@{SHA_REDIS}"),
        ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
        ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
        ("docker.io/mcgowan/myapp:latest", "docker.io/mcgowan/myapp:latest"),
        (f"dmcgowan/myapp@{SHA_REDIS}", f"docker.io/dmcgowan/myapp@{SHA_REDIS}"),
        (f"docker.io/dmcgowan/myapp@{SHA_REDIS}", f"docker.io/dmcgowan/myapp@{SHA_REDIS}"),
        (SHA_REDIS[7:-1], "docker.io/library/" + SHA_REDIS[7:-1]),  # 63 hex: a name
        ("dbcc1", "docker.io/library/dbcc1"),
    ],
)
def test_normalize_any_reference(text: str, expected: str) -> None:
    assert normalize(text) == expected
    assert normalize(expected) == expected


# --- normalize_test.go: TestParseDockerRef (TagNameOnly part) ------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:latest", "docker.io/library/busybox:latest"),
        (
            "busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
            "docker.io/library/busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
        ),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
        ("library/busybox:latest", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
        ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
    ],
)
def test_tag_name_only(text: str, expected: str) -> None:
    ref = parse(text)
    assert str(ref.tag_name_only()) == expected
    assert ref.tag_name_only().tag == ref.effective_tag


def test_effective_tag_is_not_in_the_string() -> None:
    ref = parse("nginx")
    assert str(ref) == "docker.io/library/nginx"
    assert ref.tag is None
    assert ref.effective_tag == "latest"
    assert parse(f"nginx@{SHA_F}").effective_tag is None
    assert parse(f"nginx:1.27@{SHA_F}").effective_tag == "1.27"


# --- reference_test.go: TestReferenceParse, with normalised expectations -------------------

REFERENCE_PARSE_VALID = [
    # (input, normalised string, tag, digest)
    ("test_com", "docker.io/library/test_com", None, None),
    ("test.com:tag", "docker.io/library/test.com:tag", "tag", None),
    ("test.com:5000", "docker.io/library/test.com:5000", "5000", None),
    ("test.com/repo:tag", "test.com/repo:tag", "tag", None),
    ("test:5000/repo", "test:5000/repo", None, None),
    ("test:5000/repo:tag", "test:5000/repo:tag", "tag", None),
    (f"test:5000/repo@{SHA_F}", f"test:5000/repo@{SHA_F}", None, SHA_F),
    (f"test:5000/repo:tag@{SHA_F}", f"test:5000/repo:tag@{SHA_F}", "tag", SHA_F),
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", "Uppercase", None),
    (
        "a/" * 127 + "a:tag-puts-this-over-max",
        "docker.io/" + "a/" * 127 + "a:tag-puts-this-over-max",
        "tag-puts-this-over-max",
        None,
    ),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux", None, None),
    (
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "some-long-tag",
        None,
    ),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "test.example.com",
        None,
    ),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", None),
    (
        f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA_F}",
        f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA_F}",
        "xn--7o8h.com",
        SHA_F,
    ),
    ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080", "8080", None),
    ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080", "8080", None),
    ("192.168.1.1", "docker.io/library/192.168.1.1", None, None),
    ("192.168.1.1:tag", "docker.io/library/192.168.1.1:tag", "tag", None),
    ("192.168.1.1:5000", "docker.io/library/192.168.1.1:5000", "5000", None),
    ("192.168.1.1/repo", "192.168.1.1/repo", None, None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000/repo", None, None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo:5050", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]/repo", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]/repo:tag", "tag", None),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000/repo", None, None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000/repo:tag", "tag", None),
    (f"[2001:db8::1]:5000/repo@{SHA_F}", f"[2001:db8::1]:5000/repo@{SHA_F}", None, SHA_F),
    (
        f"[2001:db8::1]:5000/repo:tag@{SHA_F}",
        f"[2001:db8::1]:5000/repo:tag@{SHA_F}",
        "tag",
        SHA_F,
    ),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000/repo", None, None),
    ("[::1]:5000/repo", "[::1]:5000/repo", None, None),
    (
        "example.com/" + "a" * 255 + ":tag",
        "example.com/" + "a" * 255 + ":tag",
        "tag",
        None,
    ),
    # kuik: go-digest as linked into docker/containerd also knows sha384 and sha512 (the
    # reference library's own test binary does not import crypto/sha512, so its table
    # lists sha512 as unsupported).
    (
        "validname@sha512:" + "f" * 128,
        "docker.io/library/validname@sha512:" + "f" * 128,
        None,
        "sha512:" + "f" * 128,
    ),
    (
        "validname@sha384:" + "f" * 96,
        "docker.io/library/validname@sha384:" + "f" * 96,
        None,
        "sha384:" + "f" * 96,
    ),
]


@pytest.mark.parametrize(
    ("text", "expected", "tag", "digest"),
    [pytest.param(*case, id=case[0][:60]) for case in REFERENCE_PARSE_VALID],
)
def test_reference_parse_valid(
    text: str, expected: str, tag: str | None, digest: str | None
) -> None:
    ref = parse(text)
    assert str(ref) == expected
    assert ref.tag == tag
    assert ref.digest == digest


REFERENCE_PARSE_INVALID = [
    # (input, the rule the message must name)
    ("", "repository name must have at least one component"),
    (":justtag", "invalid reference format"),
    (f"@{SHA_F}", "invalid reference format"),
    (
        "repo@sha256:" + "f" * 34,
        "invalid checksum digest length: sha256 needs 64 hex digits, got 34",
    ),
    ("validname@invaliddigest:" + "f" * 64, 'unsupported digest algorithm "invaliddigest"'),
    ("validname@sha512:" + "f" * 64, "invalid checksum digest length: sha512 needs 128"),
    ("validname@sha256:" + "F" * 64, "hex digits must be lowercase"),
    ("validname@SHA256:" + "f" * 64, "repository name must be lowercase"),
    ("validname@sha256:" + "g" * 64, "digest must be ALGORITHM:HEX"),
    ("Uppercase:tag", "repository name must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase"),
    ("domain/" + "a" * 256 + ":tag", "repository name must not be more than 255 characters"),
    ("example.com/" + "a" * 256, "repository name must not be more than 255 characters"),
    ("a" * 248, "repository name must not be more than 255 characters"),  # library/ + 248
    ("aa/asdf$$^/aa", 'path component "asdf$$^"'),
    ("[2001:db8::1]", "invalid reference format"),
    ("[2001:db8::1]:5000", "invalid reference format"),
    ("[2001:db8::1]:tag", "invalid reference format"),
    ("[fe80::1%eth0]:5000/repo", "registry host[:port]"),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid reference format"),
    ("foo_bar:5000/x", '"foo_bar:5000" is not a valid registry host[:port]'),
    ("nginx:" + "t" * 129, "tag must be 1 to 128 characters"),
    ("nginx:.hidden", "tag must be 1 to 128 characters"),
    ("nginx:", "tag must be 1 to 128 characters"),
    ("nginx\n", "invalid reference format"),
    ("ngînx", "invalid reference format"),
    (" nginx", "invalid reference format"),
    (HEX64, "cannot specify 64-byte hexadecimal strings"),
]


@pytest.mark.parametrize(
    ("text", "rule"), [pytest.param(*case, id=case[0][:60]) for case in REFERENCE_PARSE_INVALID]
)
def test_reference_parse_invalid(text: str, rule: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse(text)
    assert rule in info.value.reason
    assert info.value.input == text
    assert rule in str(info.value)


def test_error_message_names_input_and_rule() -> None:
    with pytest.raises(InvalidReference) as info:
        parse("Foo")
    assert str(info.value) == 'invalid reference "Foo": repository name must be lowercase'
    assert isinstance(info.value, ValueError)


def test_error_message_cuts_huge_inputs_but_keeps_them() -> None:
    text = "a" * 5000 + "!"
    with pytest.raises(InvalidReference) as info:
        parse(text)
    assert info.value.input == text
    assert str(info.value).startswith('invalid reference "' + "a" * 300 + '"...(5001 chars): ')
    assert len(str(info.value)) < 1000


def test_errors_are_raised_fresh_from_the_cache() -> None:
    errors = []
    for _ in range(2):
        with pytest.raises(InvalidReference) as info:
            parse("Bad/Name")
        errors.append(info.value)
    assert errors[0] is not errors[1]
    assert str(errors[0]) == str(errors[1])


def test_error_pickles() -> None:
    with pytest.raises(InvalidReference) as info:
        parse("Foo")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.input, copy.reason, str(copy)) == ("Foo", info.value.reason, str(info.value))


# --- reference_test.go: TestParseNamed (canonical names are fixed points) ------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("test.com/foo", True),
        ("test:8080/foo", True),
        ("test_com/foo", False),
        ("test.com", False),
        ("foo", False),
        ("library/foo", False),
        ("docker.io/library/foo", True),
        ("docker.io/foo", False),
    ],
)
def test_parse_named_canonical(text: str, canonical: bool) -> None:
    assert (normalize(text) == text) is canonical


# --- reference_test.go: TestWithTag / TestWithDigest / TestInvalidReferenceComponents ------


def test_with_tag_and_digest() -> None:
    ref = parse("test.com:8000/foo")
    assert str(ref.with_tag("TAG5")) == "test.com:8000/foo:TAG5"
    pinned = ref.with_digest(SHA_F)
    assert str(pinned) == f"test.com:8000/foo@{SHA_F}"
    assert str(pinned.with_tag("TAG5")) == f"test.com:8000/foo:TAG5@{SHA_F}"
    assert str(ref.with_tag("latest").with_digest(SHA_F)) == f"test.com:8000/foo:latest@{SHA_F}"
    both = parse(f"test.com:8000/foo:latest@{SHA_F}")
    assert both.without_digest() == parse("test.com:8000/foo:latest")
    assert both.without_tag() == parse(f"test.com:8000/foo@{SHA_F}")
    assert str(parse("foo").with_tag("tag2")) == "docker.io/library/foo:tag2"


def test_invalid_components() -> None:
    ref = parse("busybox")
    with pytest.raises(InvalidReference, match="tag must be"):
        ref.with_tag("-foo")
    # docker's WithDigest only checks the pattern; kuik checks like go-digest so every
    # Reference re-parses (a 37-digit sha256 is refused here, accepted by WithDigest).
    with pytest.raises(InvalidReference, match="digest"):
        ref.with_digest("foo")
    with pytest.raises(InvalidReference, match="needs 64 hex digits, got 37"):
        ref.with_digest("sha256:1234567890098765432112345667890098765")
    validate_tag("v1.2.3_rc-1")
    validate_digest(SHA_REDIS)


# --- Reference as a value -------------------------------------------------------------


def test_direct_construction_is_checked() -> None:
    assert Reference("docker.io", "library/nginx", "1.27") == parse("nginx:1.27")
    with pytest.raises(InvalidReference, match="not in normalised form"):
        Reference("docker.io", "nginx")
    with pytest.raises(InvalidReference, match="not in normalised form"):
        Reference("index.docker.io", "library/nginx")
    with pytest.raises(InvalidReference, match="repository name must be lowercase"):
        Reference("quay.io", "Foo")
    with pytest.raises(InvalidReference, match="tag must be"):
        Reference("quay.io", "foo", "-x")


def test_value_semantics() -> None:
    ref = parse("nginx:1.27")
    assert ref == parse("docker.io/library/nginx:1.27")
    assert len({ref, parse("index.docker.io/library/nginx:1.27"), parse("nginx:1.28")}) == 2
    assert pickle.loads(pickle.dumps(ref)) == ref
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]


def test_hosts() -> None:
    hub = parse("bitnami/redis:7")
    assert (hub.registry_host, hub.api_host, hub.repository) == (
        "docker.io",
        DOCKER_HUB_API_HOST,
        "bitnami/redis",
    )
    local = parse("localhost:5000/a/b:1")
    assert (local.registry_host, local.api_host, local.repository) == (
        "localhost:5000",
        "localhost:5000",
        "a/b",
    )
    # docker keeps an underscored dotted first component in the path with no domain;
    # pull clients still contact that host, and so do we.
    quirk = parse("my_registry.local/team/app:1")
    assert (quirk.domain, quirk.path, str(quirk)) == (
        "",
        "my_registry.local/team/app",
        "my_registry.local/team/app:1",
    )
    assert (quirk.registry_host, quirk.repository) == ("my_registry.local", "team/app")
    assert quirk.familiar() == "my_registry.local/team/app:1"


# --- properties --------------------------------------------------------------------------

_alnum = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
_separator = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def _path_component(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_alnum, min_size=1, max_size=3))
    text = parts[0]
    for part in parts[1:]:
        text += draw(_separator) + part
    return text


_path = st.lists(_path_component(), min_size=1, max_size=4).map("/".join)
_domain_component = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?", fullmatch=True)
_port = st.integers(min_value=0, max_value=65535).map(lambda p: f":{p}")
_ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a.compressed}]").filter(lambda a: "." not in a)
_domain = st.one_of(
    st.none(),
    st.sampled_from(["localhost", "docker.io", "index.docker.io", "LOCAL", "quay.io"]),
    st.builds(
        lambda comps, port: ".".join(comps) + port,
        st.lists(_domain_component, min_size=1, max_size=3),
        st.one_of(st.just(""), _port),
    ),
    st.builds(lambda host, port: host + port, _ipv6, st.one_of(st.just(""), _port)),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True) | st.just("t" * 128)
_digest = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex()),
    st.binary(min_size=48, max_size=48).map(lambda b: "sha384:" + b.hex()),
    st.binary(min_size=64, max_size=64).map(lambda b: "sha512:" + b.hex()),
)


def _check_normal_form(ref: Reference) -> None:
    assert parse(str(ref)) == ref
    assert normalize(str(ref)) == str(ref)
    familiar = ref.familiar()
    assert parse(familiar).familiar() == familiar
    first, slash, _ = familiar.partition("/")
    if ref.domain == "docker.io" and slash and ("." in first or first == "localhost"):
        # docker's FamiliarString drops docker.io even when the first path component then
        # reads as a host: "docker.io/0.0/app" -> "0.0/app" (host 0.0). Kept as docker has it.
        assert parse(familiar) != ref
    else:
        assert parse(familiar) == ref
    assert ref.name + ref.familiar()[len(ref.familiar_name()) :] == str(ref)
    assert Reference(ref.domain, ref.path, ref.tag, ref.digest) == ref
    assert len(ref.path) <= 255


Parts = tuple[str | None, str, str | None, str | None]


def _join(parts: Parts) -> str:
    domain, path, tag, digest = parts
    text = path if domain is None else f"{domain}/{path}"
    if tag is not None:
        text += ":" + tag
    if digest is not None:
        text += "@" + digest
    return text


_parts: st.SearchStrategy[Parts] = st.tuples(_domain, _path, st.none() | _tag, st.none() | _digest)


@given(_parts)
@example((None, "localhost", "5000", None))
@example(("Foo", "bar", None, None))
@example(("my_registry.local", "app", "1", None))
@example(("docker.io", "0.0/app", None, None))
def test_grammar_references_parse_and_round_trip(parts: Parts) -> None:
    _, path, tag, digest = parts
    text = _join(parts)
    ref = parse(text)
    assert ref.tag == tag
    assert ref.digest == digest
    assert str(ref).endswith(_join((None, path, tag, digest)))
    _check_normal_form(ref)
    assert normalize(normalize(text)) == normalize(text)


@given(_parts, _tag, _digest)
def test_modifiers_keep_the_normal_form(parts: Parts, tag: str, digest: str) -> None:
    ref = parse(_join(parts))
    for changed in (
        ref.with_tag(tag),
        ref.with_digest(digest),
        ref.without_tag(),
        ref.without_digest(),
        ref.tag_name_only(),
    ):
        _check_normal_form(changed)
        assert changed.name == ref.name
    assert ref.with_tag(tag).tag == tag
    assert ref.with_digest(digest).digest == digest
    assert ref.tag_name_only().tag == ref.effective_tag


@given(_parts, st.data())
def test_uppercase_in_the_repository_is_refused(parts: Parts, data: st.DataObject) -> None:
    domain, path, tag, digest = parts
    first_is_host = domain is None and "/" in path  # "Foo/bar": Foo is then a host
    letters = [
        i
        for i, char in enumerate(path)
        if char.isalpha() and not (first_is_host and i < path.index("/"))
    ]
    assume(letters)
    index = data.draw(st.sampled_from(letters))
    upper = path[:index] + path[index].upper() + path[index + 1 :]
    with pytest.raises(InvalidReference, match="repository name must be lowercase"):
        parse(_join((domain, upper, tag, digest)))


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
    | st.from_regex(r"[a-zA-Z0-9_.:/@\[\]-]{0,80}", fullmatch=True)
)
def test_any_text_parses_to_a_normal_form_or_raises_invalid_reference(text: str) -> None:
    error: InvalidReference | None = None
    try:
        ref = parse(text)
    except InvalidReference as exc:
        error = exc
    if error is not None:
        assert error.input == text
        assert error.reason
        assert str(error).startswith("invalid reference ")
    else:
        _check_normal_form(ref)
