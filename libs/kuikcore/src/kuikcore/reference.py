"""Container image references, parsed and normalised exactly like docker.

This is a port of ``github.com/distribution/reference`` (``ParseNormalizedNamed``,
``FamiliarString``, ``TagNameOnly``) with go-digest's digest validation, because upstream
kuik normalises every image with that library before matching filters and building
mirror names: any difference here would route or mirror a different image.

The grammar is fixed, so Python's ``re`` is used (RE2 is for user-supplied patterns).
Every pattern is applied with ``fullmatch`` and spells out ASCII classes: Go's ``\\w`` and
``$`` differ from Python's (Unicode ``\\w``, ``$`` before a trailing newline).

Known quirks kept on purpose, because docker has them too:

- ``Foo/bar`` is a reference on host ``Foo`` (an uppercase first component is a host).
- A first component with a ``.`` that is not a valid host but is a valid path component
  (``my_registry.local/app``) gives an empty ``domain`` and the whole name as ``path``;
  ``registry_host``/``repository`` then split it the way pull clients do.
- A bare ``localhost:5000`` is ``docker.io/library/localhost`` with tag ``5000``.
- ``familiar()`` drops ``docker.io/`` even when the first path component then reads as a
  host (``docker.io/0.0/app`` -> ``0.0/app``), so only ``str()`` is guaranteed to re-parse.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "DOCKER_HUB_API_HOST",
    "LEGACY_DEFAULT_DOMAIN",
    "OFFICIAL_REPO_PREFIX",
    "REPOSITORY_NAME_MAX_LENGTH",
    "InvalidReference",
    "Reference",
    "is_registry_host",
    "normalize",
    "parse",
    "validate_digest",
    "validate_tag",
]

DEFAULT_DOMAIN: Final = "docker.io"
LEGACY_DEFAULT_DOMAIN: Final = "index.docker.io"
DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX: Final = "library/"
DEFAULT_TAG: Final = "latest"
REPOSITORY_NAME_MAX_LENGTH: Final = 255
_LOCALHOST: Final = "localhost"
_MAX_SHOWN: Final = 300  # longer inputs are cut in messages (logs, events), kept in .input

# --- grammar (regexp.go), composed the same way -------------------------------------------
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
_IDENTIFIER = r"[a-f0-9]{64}"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6_ADDRESS + r")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

_REFERENCE_RE = re.compile(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?")
_ANCHORED_NAME_RE = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")")
_TAG_RE = re.compile(_TAG)
_IDENTIFIER_RE = re.compile(_IDENTIFIER)
_DOMAIN_AND_PORT_RE = re.compile(_DOMAIN_AND_PORT)
_PATH_COMPONENT_RE = re.compile(_PATH_COMPONENT)
_DIGEST_RE = re.compile(_DIGEST)

# go-digest: algorithms whose hash is linked into docker/containerd (crypto/sha256 and
# crypto/sha512, which also provides sha384), with lowercase hex of the hash size.
_DIGEST_HEX_LENGTHS: Final[dict[str, int]] = {"sha256": 64, "sha384": 96, "sha512": 128}
_GO_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+")

_TAG_RULE = (
    "tag must be 1 to 128 characters of letters, digits, '_', '.' or '-', "
    "not starting with '.' or '-'"
)
_PATH_RULE = (
    "path components must be lowercase letters and digits, separated by '.', '_', '__' "
    "or dashes, with no empty component"
)


class InvalidReference(ValueError):
    """An image reference docker would refuse; the message names the input and the rule."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid reference {_quote(text)}: {reason}")
        self.input = text
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidReference], tuple[str, str]]:
        return (type(self), (self.input, self.reason))


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference: ``domain/path[:tag][@digest]``.

    Build one with :func:`parse`; direct construction is checked and only accepts the
    normalised decomposition (``Reference("docker.io", "nginx")`` is refused: it is
    ``docker.io/library/nginx``).
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        text = _join(self.domain, self.path, self.tag, self.digest)
        parsed = _parse_uncached(text)
        if parsed != self:
            raise InvalidReference(
                text,
                f"not in normalised form (domain={_quote(self.domain)}, path={_quote(self.path)}); "
                f"parse() gives {parsed}",
            )

    def __str__(self) -> str:
        return _join(self.domain, self.path, self.tag, self.digest)

    @property
    def name(self) -> str:
        """``domain/path`` without tag or digest (docker's ``Name()``)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def registry_host(self) -> str:
        """The registry this image is pulled from, as written (``docker.io``, ``host:5000``)."""
        if self.domain:
            return self.domain
        return self.path.partition("/")[0]

    @property
    def repository(self) -> str:
        """The repository path on :attr:`registry_host` (``library/nginx``)."""
        if self.domain:
            return self.path
        return self.path.partition("/")[2]

    @property
    def api_host(self) -> str:
        """Host to send Registry API requests to: Docker Hub's API lives elsewhere."""
        host = self.registry_host
        return DOCKER_HUB_API_HOST if host == DEFAULT_DOMAIN else host

    @property
    def effective_tag(self) -> str | None:
        """The tag a pull uses: the tag, else ``latest`` unless pinned by digest."""
        if self.tag is not None:
            return self.tag
        return DEFAULT_TAG if self.digest is None else None

    @property
    def is_digest_pinned(self) -> bool:
        return self.digest is not None

    def familiar(self) -> str:
        """Docker's ``FamiliarString``: ``nginx:1.27``, ``bitnami/redis``, ``quay.io/a/b``."""
        return _join("", self.familiar_name(), self.tag, self.digest)

    def familiar_name(self) -> str:
        """Docker's ``FamiliarName``: :meth:`familiar` without tag and digest."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX):
            remainder = self.path[len(OFFICIAL_REPO_PREFIX) :]
            if "/" not in remainder:
                return remainder
        return self.path

    def with_tag(self, tag: str) -> Reference:
        """Same name and digest, with ``tag`` (docker's ``WithTag``)."""
        validate_tag(tag)
        return _make(self.domain, self.path, tag, self.digest)

    def without_tag(self) -> Reference:
        return _make(self.domain, self.path, None, self.digest)

    def with_digest(self, digest: str) -> Reference:
        """Same name and tag, pinned to ``digest`` (checked like go-digest's ``Parse``)."""
        validate_digest(digest)
        return _make(self.domain, self.path, self.tag, digest)

    def without_digest(self) -> Reference:
        return _make(self.domain, self.path, self.tag, None)

    def tag_name_only(self) -> Reference:
        """Docker's ``TagNameOnly``: add ``:latest`` when there is neither tag nor digest."""
        if self.tag is None and self.digest is None:
            return _make(self.domain, self.path, DEFAULT_TAG, None)
        return self


def parse(text: str) -> Reference:
    """Docker's ``ParseNormalizedNamed``; raises :class:`InvalidReference`."""
    result = _parse_cached(text)
    if isinstance(result, InvalidReference):
        raise InvalidReference(result.input, result.reason)  # fresh traceback per call
    return result


def normalize(text: str) -> str:
    """``str(parse(text))``: ``nginx`` -> ``docker.io/library/nginx`` (no implicit tag)."""
    return str(parse(text))


def is_registry_host(text: str) -> bool:
    """True when `text` is a registry host as references write it (`host[:port]`, `[v6]:port`)."""
    return _DOMAIN_AND_PORT_RE.fullmatch(text) is not None


def validate_tag(tag: str) -> None:
    """Raise :class:`InvalidReference` unless ``tag`` is a valid docker tag."""
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReference(tag, _TAG_RULE)


def validate_digest(digest: str) -> None:
    """Raise :class:`InvalidReference` unless ``digest`` passes go-digest's ``Parse``."""
    reason = _digest_error(digest)
    if reason is not None:
        raise InvalidReference(digest, reason)


# --- implementation --------------------------------------------------------------------


def _join(domain: str, path: str, tag: str | None, digest: str | None) -> str:
    text = f"{domain}/{path}" if domain else path
    if tag is not None:
        text += ":" + tag
    if digest is not None:
        text += "@" + digest
    return text


def _make(domain: str, path: str, tag: str | None, digest: str | None) -> Reference:
    """Build a Reference from already-validated parts, skipping ``__post_init__``."""
    ref = object.__new__(Reference)
    object.__setattr__(ref, "domain", domain)
    object.__setattr__(ref, "path", path)
    object.__setattr__(ref, "tag", tag)
    object.__setattr__(ref, "digest", digest)
    return ref


@functools.lru_cache(maxsize=8192)
def _parse_cached(text: str) -> Reference | InvalidReference:
    try:
        return _parse_uncached(text)
    except InvalidReference as exc:
        return exc


def _parse_uncached(text: str) -> Reference:
    """ParseNormalizedNamed: familiar -> full name, then Parse."""
    if not text:
        raise InvalidReference(text, "repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference(
            text, "cannot specify 64-byte hexadecimal strings (that is an image ID, not a name)"
        )
    domain, remainder = _split_docker_domain(text)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidReference(text, "repository name must be lowercase")
    return _parse_full(text, f"{domain}/{remainder}")


def _split_docker_domain(name: str) -> tuple[str, str]:
    """splitDockerDomain: decide whether the first component is a registry host."""
    maybe_domain, slash, maybe_remote = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == _LOCALHOST:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain or maybe_domain.lower() != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def _parse_full(original: str, text: str) -> Reference:
    """Parse: match the whole grammar, then split name, check length and digest."""
    match = _REFERENCE_RE.fullmatch(text)
    if match is None:
        lowered = text.lower()
        if lowered != text and _REFERENCE_RE.fullmatch(lowered):
            raise InvalidReference(original, "repository name must be lowercase")
        raise InvalidReference(original, "invalid reference format: " + _diagnose(text))
    name, tag, digest = match.group(1, 2, 3)
    name_match = _ANCHORED_NAME_RE.fullmatch(name)
    assert name_match is not None  # the reference pattern embeds the name pattern
    domain, path = name_match.group(1) or "", name_match.group(2)
    if len(path) > REPOSITORY_NAME_MAX_LENGTH:
        raise InvalidReference(
            original,
            f"repository name must not be more than {REPOSITORY_NAME_MAX_LENGTH} characters "
            f"(path {path[:20]}... is {len(path)})",
        )
    if digest is not None:
        reason = _digest_error(digest)
        if reason is not None:
            raise InvalidReference(original, reason)
    return _make(domain, path, tag, digest)


def _digest_error(digest: str) -> str | None:
    """go-digest ``Digest.Validate`` (plus the reference grammar), as a reason or None."""
    if not _DIGEST_RE.fullmatch(digest):
        return "invalid digest format: digest must be ALGORITHM:HEX with at least 32 hex digits"
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        if not _GO_DIGEST_RE.fullmatch(digest):
            return (
                f"invalid checksum digest format: algorithm {_quote(algorithm)} must be lowercase"
            )
        supported = ", ".join(_DIGEST_HEX_LENGTHS)
        return f"unsupported digest algorithm {_quote(algorithm)} (supported: {supported})"
    if len(encoded) != length:
        return (
            f"invalid checksum digest length: {algorithm} needs {length} hex digits, "
            f"got {len(encoded)}"
        )
    if not _LOWER_HEX_RE.fullmatch(encoded):
        return "invalid checksum digest format: hex digits must be lowercase"
    return None


def _diagnose(text: str) -> str:
    """Name the part of a full name that breaks the grammar (only for error messages)."""
    rest, at, digest = text.partition("@")
    if at and not _DIGEST_RE.fullmatch(digest):
        return "digest must be ALGORITHM:HEX with at least 32 hex digits"
    domain, _, path = rest.partition("/")
    last_slash = path.rfind("/")
    colon = path.find(":", last_slash + 1)
    if colon >= 0:
        tag = path[colon + 1 :]
        path = path[:colon]
        if not _TAG_RE.fullmatch(tag):
            return f"tag {_quote(tag)}: {_TAG_RULE}"
    if not _DOMAIN_AND_PORT_RE.fullmatch(domain) and not _PATH_COMPONENT_RE.fullmatch(domain):
        return f"{_quote(domain)} is not a valid registry host[:port]"
    for component in path.split("/"):
        if not _PATH_COMPONENT_RE.fullmatch(component):
            return f"path component {_quote(component)}: {_PATH_RULE}"
    return "does not match name[:tag][@digest]"


def _quote(text: str) -> str:
    """Double-quoted and escaped like Go's %q; huge inputs cut (messages end up in logs)."""
    if len(text) > _MAX_SHOWN:
        return json.dumps(text[:_MAX_SHOWN], ensure_ascii=False) + f"...({len(text)} chars)"
    return json.dumps(text, ensure_ascii=False)
