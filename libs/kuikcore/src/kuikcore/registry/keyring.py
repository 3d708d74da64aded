"""Pull-secret credentials with kubelet's matching rules (vendored by upstream from Kubernetes).

Keys of a docker config are normalised (scheme dropped, `/v1/` and `/v2/` meaning "the host"),
kept in reverse lexical order so that more specific keys come first, and matched against an
image name label by label with globs (`*.example.com`), equal ports and a path prefix. Every
matching credential is returned, in that order, so a caller can try each in turn (credential
rotation). Docker Hub images fall back to `index.docker.io` credentials.

Beyond upstream: the image is compared in its normalised form (`docker.io/library/nginx`), so
Docker Hub credentials are never silently dropped (upstream Appendix B #2).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from kuikcore.registry.auth import Credentials

__all__ = [
    "DOCKERCFG_TYPE",
    "DOCKERCONFIGJSON_TYPE",
    "InvalidDockerConfig",
    "Keyring",
    "key_for",
    "urls_match",
]

DOCKERCONFIGJSON_TYPE = "kubernetes.io/dockerconfigjson"
DOCKERCFG_TYPE = "kubernetes.io/dockercfg"
_DEFAULT_REGISTRY_HOST = "index.docker.io"


class InvalidDockerConfig(ValueError):
    """A pull secret whose docker config cannot be read; the message names the secret."""


class _Named(Protocol):
    @property
    def domain(self) -> str: ...
    @property
    def path(self) -> str: ...


def key_for(location: str) -> str:
    """Normalise a docker config key (`https://index.docker.io/v1/` -> `index.docker.io`)."""
    value = location if location.startswith(("https://", "http://")) else "https://" + location
    parsed = urlsplit(value)
    path = parsed.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return parsed.netloc + path if path and path != "/" else parsed.netloc


def _split(schemeless: str) -> tuple[list[str], str, str]:
    parsed = urlsplit("https://" + schemeless)
    host = parsed.netloc
    port = ""
    if host.startswith("["):  # [::1]:5000, brackets dropped like Go's SplitHostPort
        end = host.find("]")
        if host[end + 1 : end + 2] == ":":
            port = host[end + 2 :]
        host = host[1:end]
    elif host.count(":") == 1:
        host, port = host.split(":")
    return host.split("."), port, parsed.path


def urls_match(glob: str, target: str) -> bool:
    """kubelet's `URLsMatchStr`: same port, same label count, glob per label, path prefix."""
    glob_parts, glob_port, glob_path = _split(glob)
    target_parts, target_port, target_path = _split(target)
    if glob_port != target_port or len(glob_parts) != len(target_parts):
        return False
    if not target_path.startswith(glob_path):
        return False
    return all(fnmatch.fnmatchcase(t, g) for g, t in zip(glob_parts, target_parts, strict=True))


def _is_default_registry_match(image: str) -> bool:
    first, sep, _ = image.partition("/")
    if not first:
        return False
    if not sep or first in ("docker.io", _DEFAULT_REGISTRY_HOST):
        return True
    return not any(c in first for c in ".:")


def _decode_auth(value: str, where: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidDockerConfig(f"{where}: `auth` is not valid base64") from exc
    user, sep, password = decoded.partition(":")
    if not sep:
        raise InvalidDockerConfig(f"{where}: `auth` does not decode to USER:PASSWORD")
    return user, password


def _entry_credentials(entry: Any, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise InvalidDockerConfig(f"{where}: entry is not an object")
    username = entry.get("username") or ""
    password = entry.get("password") or ""
    if entry.get("auth"):
        username, password = _decode_auth(str(entry["auth"]), where)
    if not username and not password:
        return None
    return Credentials(str(username), str(password))


@dataclass
class Keyring:
    """Credentials indexed by normalised docker config key, most specific key first."""

    _creds: dict[str, list[Credentials]] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return sorted(self._creds, reverse=True)

    def add_config(self, auths: Mapping[str, Any], where: str = "docker config") -> None:
        """Add one docker config `auths` map (`{"registry": {"auth": …}}`)."""
        for location, entry in auths.items():
            creds = _entry_credentials(entry, f"{where} key {location!r}")
            if creds is not None:
                self._creds.setdefault(key_for(location), []).append(creds)

    def add_secret(self, secret: Mapping[str, Any]) -> None:
        """Add a Kubernetes Secret (API dict); types other than the two docker ones are ignored."""
        meta = secret.get("metadata") or {}
        where = f"secret {meta.get('namespace', '')}/{meta.get('name', '')}".replace(" /", " ")
        kind = secret.get("type")
        if kind == DOCKERCONFIGJSON_TYPE:
            doc = _secret_json(secret, ".dockerconfigjson", where)
            auths = doc.get("auths")
            if not isinstance(auths, dict):
                raise InvalidDockerConfig(f"{where}: .dockerconfigjson has no `auths` object")
            self.add_config(auths, where)
        elif kind == DOCKERCFG_TYPE:
            self.add_config(_secret_json(secret, ".dockercfg", where), where)

    @classmethod
    def from_secrets(cls, secrets: Iterable[Mapping[str, Any]]) -> Keyring:
        keyring = cls()
        for secret in secrets:
            keyring.add_secret(secret)
        return keyring

    @classmethod
    def from_docker_config(cls, doc: Mapping[str, Any], where: str = "docker config") -> Keyring:
        """From a `config.json` / `auth.json` document (`--authfile`)."""
        keyring = cls()
        auths = doc.get("auths", doc)
        if not isinstance(auths, dict):
            raise InvalidDockerConfig(f"{where}: `auths` is not an object")
        keyring.add_config(auths, where)
        return keyring

    def lookup(self, image: str | _Named) -> list[Credentials]:
        """Every credential matching `image` (a normalised name or Reference), best first."""
        name = image if isinstance(image, str) else f"{image.domain}/{image.path}"
        found: list[Credentials] = []
        for key in self.keys:
            if urls_match(key, name):
                found.extend(self._creds[key])
        if not found and _is_default_registry_match(name):
            found = list(self._creds.get(_DEFAULT_REGISTRY_HOST, []))
        return found

    def __len__(self) -> int:
        return sum(len(v) for v in self._creds.values())


def _secret_json(secret: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    data = secret.get("data") or {}
    string_data = secret.get("stringData") or {}
    if key in data:
        try:
            text = base64.b64decode(data[key], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
            raise InvalidDockerConfig(f"{where}: data[{key!r}] is not valid base64") from exc
    elif key in string_data:
        text = str(string_data[key])
    else:
        raise InvalidDockerConfig(f"{where}: no {key!r} key")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidDockerConfig(f"{where}: {key} is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise InvalidDockerConfig(f"{where}: {key} is not a JSON object")
    return doc
