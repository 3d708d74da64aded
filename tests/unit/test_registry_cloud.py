"""Cloud registry credentials: host rules, the opt-in config, caching and single-flight refresh,
and that no cloud SDK is imported by a service that is not configured for one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from kuikcore.config import Config
from kuikcore.config.load import ConfigError, load_config
from kuikcore.registry.auth import Challenge, Credentials
from kuikcore.registry.cloud import (
    CloudAuth,
    CloudToken,
    cloud_auth_from_config,
    cloud_for_host,
    make_provider,
    parse_ecr_host,
)
from kuikcore.registry.cloud.aws import EcrProvider
from kuikcore.registry.cloud.azure import AcrProvider, arm_scope
from kuikcore.registry.cloud.gcp import GcpProvider
from kuikcore.registry.transport import Deadline, Transport


@pytest.mark.parametrize(
    ("host", "cloud"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "ecr"),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "ecr"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "ecr"),
        ("europe-west1-docker.pkg.dev", "gcp"),
        ("gcr.io", "gcp"),
        ("eu.gcr.io", "gcp"),
        ("kuik.azurecr.io", "azure"),
        ("kuik.azurecr.cn", "azure"),
        ("kuik.azurecr.us", "azure"),
        ("public.ecr.aws", None),
        ("dkr.ecr.eu-west-1.amazonaws.com", None),
        ("evil.com/gcr.io", None),
        ("gcr.io.evil.com", None),
        ("azurecr.io", None),
        ("docker.io", None),
        ("127.0.0.1:5000", None),
    ],
)
def test_cloud_for_host(host: str, cloud: str | None) -> None:
    assert cloud_for_host(host) == cloud


def test_ecr_host_parts() -> None:
    parsed = parse_ecr_host("210987654321.dkr.ecr-fips.us-east-2.amazonaws.com")
    assert parsed is not None
    assert (parsed.account, parsed.region, parsed.fips) == ("210987654321", "us-east-2", True)
    assert parse_ecr_host("quay.io") is None


def test_providers_from_config() -> None:
    config = Config.model_validate(
        {
            "registries": {
                "123456789012.dkr.ecr.eu-west-3.amazonaws.com": {"cloudAuth": "auto"},
                "ecr.internal:5000": {"cloudAuth": "ecr", "region": "us-east-1"},
                "europe-docker.pkg.dev": {"cloudAuth": "auto"},
                "kuik.azurecr.us": {"cloudAuth": "azure"},
                "quay.io": {"skipVerify": True},
            }
        }
    )
    auth = cloud_auth_from_config(config.registries)
    assert auth is not None
    auto = auth.providers["123456789012.dkr.ecr.eu-west-3.amazonaws.com"]
    assert isinstance(auto, EcrProvider)
    assert (auto.region, auto.registry_id) == ("eu-west-3", "123456789012")
    private = auth.providers["ecr.internal:5000"]
    assert isinstance(private, EcrProvider)
    assert (private.region, private.registry_id) == ("us-east-1", None)
    assert isinstance(auth.providers["europe-docker.pkg.dev"], GcpProvider)
    assert isinstance(auth.providers["kuik.azurecr.us"], AcrProvider)
    assert not auth.covers("quay.io")
    assert cloud_auth_from_config(Config().registries) is None


def test_wrong_opt_ins_are_refused() -> None:
    with pytest.raises(ValueError, match="not a known"):
        make_provider("quay.io", "auto")
    with pytest.raises(ValueError, match="needs region"):
        make_provider("ecr.internal", "ecr")


def test_config_keys(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "config.yaml"
    path.write_text("registries:\n  quay.io:\n    region: eu-west-1\n")
    with pytest.raises(ConfigError, match=r"registries\.quay\.io\.region: .*cloudAuth: ecr"):
        load_config(path)
    path.write_text("registries:\n  quay.io:\n    cloudAuth: aws\n")
    with pytest.raises(ConfigError, match="cloudAuth"):
        load_config(path)


def test_arm_scope_per_sovereign_cloud() -> None:
    assert arm_scope("a.azurecr.io") == "https://management.azure.com/.default"
    assert arm_scope("a.azurecr.cn") == "https://management.chinacloudapi.cn/.default"
    assert arm_scope("a.azurecr.us") == "https://management.usgovcloudapi.net/.default"


class CountingProvider:
    """A provider whose exchange takes a while and whose tokens live `lifetime` seconds."""

    cloud = "test"

    def __init__(self, clock: list[float], lifetime: float | None) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0

    async def token(
        self, transport: Transport, host: str, challenge: Challenge, deadline: Deadline
    ) -> CloudToken:
        self.calls += 1
        await asyncio.sleep(0.05)
        expires = None if self.lifetime is None else self.clock[0] + self.lifetime
        return CloudToken(Credentials("user", f"secret-{self.calls}"), expires)

    async def ensure_repository(self, repository: str, deadline: Deadline) -> bool:
        return False


CHALLENGE = Challenge("bearer", {"realm": "https://r.example/token"})


async def test_single_flight_cache_and_refresh_before_expiry() -> None:
    now = [1000.0]
    provider = CountingProvider(now, lifetime=3600)
    auth = CloudAuth({"r.example": provider}, margin=300, clock=lambda: now[0])
    transport = Transport()
    got = await asyncio.gather(
        *(auth.credentials(transport, "r.example", CHALLENGE, Deadline.never()) for _ in range(20))
    )
    assert provider.calls == 1
    assert {c.password for c in got} == {"secret-1"}
    now[0] += 3600 - 301  # still before the refresh point
    assert (
        await auth.credentials(transport, "r.example", CHALLENGE, Deadline.never())
    ).password == "secret-1"
    now[0] += 2  # within the margin: refreshed
    assert (
        await auth.credentials(transport, "r.example", CHALLENGE, Deadline.never())
    ).password == "secret-2"
    auth.invalidate("r.example")
    assert (
        await auth.credentials(transport, "r.example", CHALLENGE, Deadline.never())
    ).password == "secret-3"
    assert auth.exchanges == {"r.example": 3}
    await transport.close()


async def test_short_lived_and_expired_tokens() -> None:
    now = [0.0]
    short = CountingProvider(now, lifetime=10)
    stale = CountingProvider(now, lifetime=-5)  # moto's ECR says 2015
    auth = CloudAuth({"s": short, "x": stale}, margin=300, clock=lambda: now[0])
    transport = Transport()
    for _ in range(2):
        await auth.credentials(transport, "s", CHALLENGE, Deadline.never())
        await auth.credentials(transport, "x", CHALLENGE, Deadline.never())
    assert short.calls == 1  # half its lifetime still ahead: reused
    assert stale.calls == 2  # serves its own request, never cached
    now[0] += 5
    await auth.credentials(transport, "s", CHALLENGE, Deadline.never())
    assert short.calls == 2
    await transport.close()


async def test_a_waiter_giving_up_does_not_cancel_the_exchange() -> None:
    now = [0.0]
    provider = CountingProvider(now, lifetime=100)
    auth = CloudAuth({"h": provider}, clock=lambda: now[0])
    transport = Transport()
    impatient = asyncio.ensure_future(auth.credentials(transport, "h", CHALLENGE, Deadline.never()))
    patient = asyncio.ensure_future(auth.credentials(transport, "h", CHALLENGE, Deadline.never()))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert (await patient).password == "secret-1"
    assert provider.calls == 1
    await transport.close()


async def test_a_short_deadline_gives_up_while_the_exchange_goes_on() -> None:
    """The webhook's deadline bounds its own wait, not the exchange the next admission reuses."""
    now = [0.0]
    provider = CountingProvider(now, lifetime=100)
    auth = CloudAuth({"h": provider}, clock=lambda: now[0])
    transport = Transport()
    with pytest.raises(TimeoutError):
        await auth.credentials(transport, "h", CHALLENGE, Deadline.after(0.01))
    await asyncio.sleep(0.1)
    assert (await auth.credentials(transport, "h", CHALLENGE, Deadline.after(0.01))).password == (
        "secret-1"
    )
    assert provider.calls == 1
    await transport.close()


def test_credentials_never_print_the_token() -> None:
    token = CloudToken(Credentials("oauth2accesstoken", "ya29.very-secret"), 0.0)
    assert "very-secret" not in repr(token)
    assert "very-secret" not in str(token.credentials)


def test_services_import_no_cloud_sdk() -> None:
    """A service not configured for a cloud never loads boto3, google-auth or azure-identity."""
    code = """
import json, sys
import kuik_webhook.service, kuik_replicator.service, kuik_monitor.service
import kuikcore.registry, kuikcore.registry.cloud, kuikcore.credentials
from kuikcore.config import Config
from kuikcore.registry import RegistryClient
RegistryClient.from_config(Config())
prefixes = ("boto3", "botocore", "aiobotocore", "google", "azure", "msal")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in prefixes)))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
