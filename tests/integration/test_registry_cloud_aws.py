"""ECR through IRSA, end to end on loopback: web-identity token file -> moto's STS -> moto's ECR
GetAuthorizationToken -> a real docker-registry whose token service admits only that password,
behind a front that refuses unknown repositories as ECR does (so CreateRepository must happen)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuik_testing.cloud import ECR_ACCOUNT, EcrFront, MotoServer, ecr_password
from kuik_testing.images import push_image, synthetic_image
from kuik_testing.registry import RegistryServer
from kuik_testing.token_issuer import TokenIssuer
from kuikcore.config import Config
from kuikcore.registry import Credentials, RegistryClient, check, copy
from kuikcore.registry.cloud import CloudAuth

ROLE_ARN = f"arn:aws:iam::{ECR_ACCOUNT}:role/kuik-replicator"


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def irsa(moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The environment EKS's pod identity webhook gives a Pod, with the token file it mounts."""
    token_file = tmp_path / "eks.amazonaws.com" / "serviceaccount" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.projected-sa-token.sig")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto.aws_env(token_file, ROLE_ARN).items():
        monkeypatch.setenv(name, value)
    return moto


@pytest.fixture
def ecr(moto: MotoServer) -> Iterator[tuple[EcrFront, TokenIssuer]]:
    """An ECR-like registry: token auth admitting AWS:<moto's password>, ECR's repository rule."""
    issuer = TokenIssuer(
        authenticate=lambda user, password: user == "AWS" and password == ecr_password()
    ).start()
    backend = RegistryServer(extra_config=issuer.registry_config()).start()
    front = EcrFront(backend.url, exists=lambda name: name in moto.repositories()).start()
    yield front, issuer
    front.stop()
    backend.cleanup()
    issuer.stop()


def ecr_config(host: str) -> Config:
    return Config.model_validate(
        {
            "registries": {
                host: {
                    "insecure": True,
                    "cloudAuth": "ecr",
                    "region": "us-east-1",
                    "registryID": ECR_ACCOUNT,
                }
            }
        }
    )


async def test_copy_and_check_with_irsa_create_the_repository_on_first_push(
    registry: RegistryServer, irsa: MotoServer, ecr: tuple[EcrFront, TokenIssuer]
) -> None:
    front, issuer = ecr
    push_image(registry, "cloud/src", "v1", synthetic_image("ecr1"))
    target = f"{front.host}/mirror/cloud/src:v1"
    async with RegistryClient.from_config(ecr_config(front.host)) as client:
        assert isinstance(client.transport.cloud, CloudAuth)
        result = await copy(client, f"{registry.host}/cloud/src:v1", target)
        checked = await check(client, target)
    assert checked.available, checked.error
    assert checked.digest == result.digest
    assert "mirror/cloud/src" in irsa.repositories()  # CreateRepository on first push
    assert "mirror/cloud/src" in front.refused  # ECR refused it before
    assert irsa.web_identity_sessions() >= 1  # the identity came from STS, not static keys
    assert {r.user for r in issuer.requests if r.granted} == {"AWS"}


async def test_without_the_identity_the_push_is_refused(
    registry: RegistryServer,
    moto: MotoServer,
    ecr: tuple[EcrFront, TokenIssuer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No web-identity token file: boto3 finds no credentials, nothing is created or pushed."""
    front, issuer = ecr
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    env = moto.aws_env(tmp_path / "absent-token", ROLE_ARN)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ROLE_ARN")
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE")
    push_image(registry, "cloud/src", "v2", synthetic_image("ecr2"))
    target = f"{front.host}/mirror/none:v2"
    async with RegistryClient.from_config(ecr_config(front.host)) as client:
        checked = await check(client, target)
        with pytest.raises(Exception, match="credentials"):
            await copy(client, f"{registry.host}/cloud/src:v2", target)
    assert not checked.available
    assert moto.repositories() == set()
    assert not any(r.granted and r.user for r in issuer.requests)


async def test_pull_secrets_keep_precedence(
    registry: RegistryServer, irsa: MotoServer, ecr: tuple[EcrFront, TokenIssuer]
) -> None:
    """Credentials from a Secret are used as given, never replaced by the cloud's."""
    front, issuer = ecr
    irsa.client("ecr").create_repository(repositoryName="mirror/secret")
    async with RegistryClient.from_config(ecr_config(front.host)) as client:
        wrong = await check(
            client, f"{front.host}/mirror/secret:v1", credentials=Credentials("AWS", "stale")
        )
        assert client.transport.cloud is not None
        assert isinstance(client.transport.cloud, CloudAuth)
        assert client.transport.cloud.exchanges == {}
    assert not wrong.available
    assert issuer.requests[-1].user == "AWS"
    assert not issuer.requests[-1].granted


async def test_concurrent_requests_share_one_exchange(
    registry: RegistryServer, irsa: MotoServer, ecr: tuple[EcrFront, TokenIssuer]
) -> None:
    front, _ = ecr
    push_image(registry, "cloud/src", "v3", synthetic_image("ecr3"))
    async with RegistryClient.from_config(ecr_config(front.host)) as client:
        await copy(client, f"{registry.host}/cloud/src:v3", f"{front.host}/mirror/many:v3")
        cloud = client.transport.cloud
        assert isinstance(cloud, CloudAuth)
        cloud.invalidate(front.host)
        client.transport.tokens = type(client.transport.tokens)()  # force the token flow anew
        before = cloud.exchanges[front.host]
        results = await asyncio.gather(
            *(check(client, f"{front.host}/mirror/many:v3") for _ in range(8))
        )
    assert all(r.available for r in results), [r.error for r in results]
    assert cloud.exchanges[front.host] - before == 1
