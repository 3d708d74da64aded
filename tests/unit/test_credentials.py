"""kuikcore.credentials: candidate pull-secret sets per image, readability, upstream's precedence."""

from __future__ import annotations

from typing import Any

import pytest

from kuik_testing.objects import container, docker_secret, pod
from kuikcore.cluster.interface import ClusterError
from kuikcore.credentials import (
    FALLBACK,
    CredentialSet,
    PodSecrets,
    candidate_pod_secrets,
    choose_credentials,
    pull_secret_refs,
    read_credential_sets,
    read_fallback,
    resolve_credentials,
)
from kuikcore.registry.auth import Credentials
from kuikcore.routing import SecretRef

IMAGE = "registry.example:5000/team/app:1.0"


class Secrets:
    """An in-memory SecretReader: dicts, missing ones, and ones whose read fails (RBAC)."""

    def __init__(self, *secrets: dict[str, Any], forbidden: tuple[str, ...] = ()) -> None:
        self.data = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in secrets}
        self.forbidden = forbidden
        self.reads: list[str] = []

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(f"{namespace}/{name}")
        if f"{namespace}/{name}" in self.forbidden:
            raise ClusterError(f"read Secret {namespace}/{name}: HTTP 403: forbidden")
        return self.data.get((namespace, name))


def test_pull_secret_refs_keep_order_in_pod_namespace_without_duplicates() -> None:
    p = pod(container("c", IMAGE), namespace="prod", name="web", pull_secrets=["b", "a", "b"])
    p["spec"]["imagePullSecrets"].append({"nope": 1})
    assert pull_secret_refs(p) == (SecretRef("b", "prod"), SecretRef("a", "prod"))
    assert pull_secret_refs({"metadata": {"name": "x"}, "spec": {}}) == ()


def test_candidates_sorted_by_namespace_and_name_skip_podless_secrets_and_collapse() -> None:
    pods = [
        pod(container("c", IMAGE), namespace="zeta", name="a", pull_secrets=["s1"]),
        pod(container("c", IMAGE), namespace="alpha", name="z", pull_secrets=["s1"]),
        pod(
            container("c", IMAGE), namespace="alpha", name="b", pull_secrets=[]
        ),  # no pull secrets: says nothing about credentials
        pod(
            container("c", IMAGE), namespace="alpha", name="y", pull_secrets=["s1"]
        ),  # same secrets as alpha/z in the same namespace: collapses
        pod(container("c", IMAGE), namespace="alpha", name="c", pull_secrets=["s2", "s1"]),
    ]
    got = candidate_pod_secrets(pods)
    assert got == [
        PodSecrets("alpha/c", (SecretRef("s2", "alpha"), SecretRef("s1", "alpha"))),
        PodSecrets("alpha/y", (SecretRef("s1", "alpha"),)),
        PodSecrets("zeta/a", (SecretRef("s1", "zeta"),)),
    ]
    # stable whatever the input order
    assert candidate_pod_secrets(list(reversed(pods))) == got


async def test_read_sets_mark_readable_and_unreadable_with_reasons() -> None:
    reader = Secrets(
        docker_secret("a", "good", "registry.example:5000", "u", "p"),
        {
            "metadata": {"namespace": "b", "name": "broken"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "!!"},
        },
        forbidden=("c/secret",),
    )
    sets = await read_credential_sets(
        reader,
        [
            PodSecrets("a/p1", (SecretRef("good", "a"),)),
            PodSecrets("a/p2", (SecretRef("good", "a"), SecretRef("gone", "a"))),
            PodSecrets("b/p3", (SecretRef("broken", "b"),)),
            PodSecrets("c/p4", (SecretRef("secret", "c"),)),
        ],
    )
    assert [s.readable for s in sets] == [True, True, False, False]
    assert sets[0].credentials(IMAGE) == [Credentials("u", "p")]
    assert sets[0].credentials("other.example/app:1") == []
    assert sets[0].skipped is None
    # the missing secret is skipped, the Pod's other one kept (kubelet semantics)
    assert sets[1].skipped == "pod a/p2: secret a/gone not found"
    assert sets[1].credentials(IMAGE) == [Credentials("u", "p")]
    assert choose_credentials(sets[1:2]).unavailable == (
        "unavailable secret: pod a/p2: secret a/gone not found"
    )
    assert sets[2].error is not None
    assert "b/broken" in sets[2].error
    assert "base64" in sets[2].error
    assert (
        sets[3].error
        == "pod c/p4: secret c/secret could not be read: read Secret c/secret: HTTP 403: forbidden"
    )


def readable(source: str) -> CredentialSet:
    return CredentialSet(source, (SecretRef("s", "ns"),))


def unreadable(source: str, error: str) -> CredentialSet:
    return CredentialSet(source, (SecretRef("s", "ns"),), error)


FB = SecretRef("fallback", "kuik-system")


def test_precedence_first_readable_pod_set_wins() -> None:
    sets = [
        unreadable("a/p1", "pod a/p1: secret a/x not found"),
        readable("a/p2"),
        readable("b/p3"),
    ]
    choice = choose_credentials(sets, FB, readable(FALLBACK))
    assert choice.chosen is sets[1]
    assert choice.unavailable is None
    assert choice.source == "pod a/p2"


def test_precedence_fallback_when_no_pod_set_is_readable() -> None:
    fallback = readable(FALLBACK)
    choice = choose_credentials(
        [unreadable("a/p1", "pod a/p1: secret a/x not found")], FB, fallback
    )
    assert choice.chosen is fallback
    assert choice.unavailable is None
    assert choice.source == "fallback"
    assert choose_credentials([], FB, fallback).chosen is fallback


def test_precedence_missing_fallback_is_reported_and_anonymous() -> None:
    fallback = unreadable(FALLBACK, "secret kuik-system/fallback not found")
    choice = choose_credentials([], FB, fallback)
    assert choice.chosen is None
    assert choice.source == "anonymous"
    assert choice.unavailable == (
        "fallback credential secret kuik-system/fallback not found: "
        "secret kuik-system/fallback not found"
    )
    assert choice.credentials(IMAGE) == []


def test_precedence_unreadable_pod_secrets_without_fallback() -> None:
    sets = [
        unreadable("a/p1", "pod a/p1: secret a/x not found"),
        unreadable("b/p2", "pod b/p2: boom"),
    ]
    choice = choose_credentials(sets)
    assert choice.chosen is None
    assert (
        choice.unavailable == "unavailable secret: pod a/p1: secret a/x not found; pod b/p2: boom"
    )


def test_precedence_anonymous_without_any_secret_is_not_a_problem() -> None:
    choice = choose_credentials([])
    assert choice.chosen is None
    assert choice.unavailable is None


async def test_resolve_reads_lazily_and_applies_precedence() -> None:
    reader = Secrets(
        docker_secret("b", "pull", "registry.example:5000", "bob", "pw"),
        docker_secret("kuik-system", "fallback", "registry.example:5000", "fb", "fbpw"),
    )
    pods = [
        pod(container("c", IMAGE), namespace="c", name="p", pull_secrets=["never-read"]),
        pod(container("c", IMAGE), namespace="b", name="p", pull_secrets=["pull"]),
        pod(container("c", IMAGE), namespace="a", name="p", pull_secrets=["missing"]),
    ]
    choice = await resolve_credentials(reader, pods, FB)
    assert choice.credentials(IMAGE) == [Credentials("bob", "pw")]
    # a/p (missing) then b/p (readable): c/p and the fallback are never read
    assert reader.reads == ["a/missing", "b/pull"]

    reader.reads.clear()
    choice = await resolve_credentials(
        reader, [pod(container("c", IMAGE), namespace="a", name="p", pull_secrets=["missing"])], FB
    )
    assert choice.credentials(IMAGE) == [Credentials("fb", "fbpw")]
    assert reader.reads == ["a/missing", "kuik-system/fallback"]

    choice = await resolve_credentials(
        reader,
        [pod(container("c", IMAGE), namespace="a", name="p", pull_secrets=["missing"])],
        SecretRef("nope", "x"),
    )
    assert choice.chosen is None
    assert (
        choice.unavailable == "fallback credential secret x/nope not found: secret x/nope not found"
    )


async def test_fallback_read_and_repr_never_shows_secrets() -> None:
    reader = Secrets(
        docker_secret("kuik-system", "fallback", "registry.example:5000", "fb", "s3cr3t")
    )
    fallback = await read_fallback(reader, FB)
    assert fallback.readable
    assert fallback.source == FALLBACK
    choice = choose_credentials([], FB, fallback)
    text = repr(choice) + str(choice) + repr(choice.credentials(IMAGE))
    assert "s3cr3t" not in text


@pytest.mark.parametrize("host", ["registry.example:5000", "https://registry.example:5000/v2/"])
async def test_keyring_uses_kubelet_matching(host: str) -> None:
    reader = Secrets(docker_secret("a", "s", host, "u", "p"))
    [credential_set] = await read_credential_sets(
        reader, [PodSecrets("a/p", (SecretRef("s", "a"),))]
    )
    assert credential_set.credentials(IMAGE) == [Credentials("u", "p")]
    assert credential_set.credentials("registry.example:5001/team/app:1.0") == []
