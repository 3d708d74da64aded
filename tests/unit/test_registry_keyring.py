"""kubelet's pull-secret matching rules, as kuikcore.registry.keyring implements them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kuikcore.reference import parse
from kuikcore.registry import Credentials, InvalidDockerConfig, Keyring
from kuikcore.registry.keyring import key_for, urls_match


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _secret(auths: dict[str, Any], *, legacy: bool = False, name: str = "pull") -> dict[str, Any]:
    if legacy:
        return {
            "metadata": {"name": name, "namespace": "ns"},
            "type": "kubernetes.io/dockercfg",
            "data": {".dockercfg": _b64(json.dumps(auths))},
        }
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": _b64(json.dumps({"auths": auths}))},
    }


def _entry(user: str, password: str = "pw") -> dict[str, str]:
    return {"username": user, "password": password}


@pytest.mark.parametrize(
    ("location", "key"),
    [
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("index.docker.io", "index.docker.io"),
        ("http://quay.io/v2/", "quay.io"),
        ("quay.io/coreos", "quay.io/coreos"),
        ("https://quay.io/v1/coreos", "quay.io/coreos"),
        ("registry:5000", "registry:5000"),
    ],
)
def test_key_normalisation(location: str, key: str) -> None:
    assert key_for(location) == key


@pytest.mark.parametrize(
    ("glob", "target", "matched"),
    [
        ("*.docker.io", "registry-1.docker.io/library/nginx", True),
        ("*.docker.io", "docker.io/library/nginx", False),  # label count differs
        ("*.*.io", "a.b.io/x", True),
        ("registry:5000", "registry:5000/app", True),
        ("registry:5000", "registry/app", False),  # ports must be equal
        ("registry", "registry:5000/app", False),
        ("quay.io/coreos", "quay.io/coreos/etcd", True),
        ("quay.io/coreos", "quay.io/other/etcd", False),
        ("[::1]:5000", "[::1]:5000/app", True),
        ("127.0.0.1:5000", "127.0.0.1:5000/app", True),
    ],
)
def test_urls_match(glob: str, target: str, matched: bool) -> None:
    assert urls_match(glob, target) is matched


def test_most_specific_first_and_every_match_returned() -> None:
    keyring = Keyring.from_secrets(
        [
            _secret({"quay.io": _entry("host")}),
            _secret({"quay.io/coreos": _entry("path")}, legacy=True),
            _secret({"*.quay.io": _entry("glob")}),
        ]
    )
    found = keyring.lookup(parse("quay.io/coreos/etcd:3"))
    assert [c.username for c in found] == ["path", "host"]
    assert [c.username for c in keyring.lookup("quay.io/other/x")] == ["host"]
    assert [c.username for c in keyring.lookup("eu.quay.io/x/y")] == ["glob"]


def test_several_secrets_for_one_key_are_all_tried_in_order() -> None:
    keyring = Keyring.from_secrets(
        [_secret({"reg.example": _entry("old")}), _secret({"https://reg.example": _entry("new")})]
    )
    assert [c.username for c in keyring.lookup("reg.example/app")] == ["old", "new"]


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "index.docker.io", "docker.io"])
@pytest.mark.parametrize("image", ["nginx", "library/nginx", "docker.io/bitnami/redis"])
def test_docker_hub_credentials_match_normalised_names(key: str, image: str) -> None:
    keyring = Keyring.from_secrets([_secret({key: _entry("hub")})])
    assert [c.username for c in keyring.lookup(parse(image))] == ["hub"]


def test_docker_hub_fallback_does_not_leak_to_other_registries() -> None:
    keyring = Keyring.from_secrets([_secret({"https://index.docker.io/v1/": _entry("hub")})])
    assert keyring.lookup(parse("quay.io/a/b")) == []
    assert keyring.lookup(parse("localhost:5000/a")) == []


def test_auth_field_padded_or_not_and_colons_in_password() -> None:
    unpadded = _b64("u:p:q").rstrip("=")
    keyring = Keyring.from_secrets(
        [_secret({"a.example": {"auth": unpadded}, "b.example": {"auth": _b64("v:w")}})]
    )
    assert keyring.lookup("a.example/x") == [Credentials("u", "p:q")]
    assert keyring.lookup("b.example/x") == [Credentials("v", "w")]


def test_other_secret_types_are_ignored_and_string_data_read() -> None:
    keyring = Keyring.from_secrets(
        [
            {"type": "Opaque", "data": {"x": "eA=="}},
            {
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": json.dumps({"auths": {"r.io": _entry("s")}})},
            },
        ]
    )
    assert [c.username for c in keyring.lookup("r.io/a")] == ["s"]
    assert len(keyring) == 1


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ({"type": "kubernetes.io/dockerconfigjson", "data": {}}, "no '.dockerconfigjson'"),
        ({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "%%"}}, "base64"),
        (
            {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": _b64("{")}},
            "not valid JSON",
        ),
        (
            {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": _b64("{}")}},
            "no `auths`",
        ),
        (_secret({"r.io": {"auth": "!!!"}}), "not valid base64"),
        (_secret({"r.io": {"auth": _b64("nocolon")}}), "USER:PASSWORD"),
    ],
)
def test_broken_secrets_are_named_in_the_error(secret: dict[str, Any], reason: str) -> None:
    secret.setdefault("metadata", {"name": "pull", "namespace": "ns"})
    with pytest.raises(InvalidDockerConfig, match=reason) as info:
        Keyring.from_secrets([secret])
    assert "ns/pull" in str(info.value)
    assert "pw" not in str(info.value)


def test_docker_config_file() -> None:
    keyring = Keyring.from_docker_config({"auths": {"localhost:5000": {"auth": _b64("a:b")}}})
    assert keyring.lookup(parse("localhost:5000/x:1")) == [Credentials("a", "b")]
