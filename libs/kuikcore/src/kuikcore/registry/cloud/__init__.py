"""Registry credentials from the service's cloud workload identity: ECR, Artifact Registry/GCR, ACR.

Opt-in per registry host in the operator config (`registries.<host>.cloudAuth: ecr|gcp|azure|auto`).
The transport asks `CloudAuth` only for requests without pull-secret credentials, so Secrets
keep precedence. Importing this package imports no cloud library: each provider module imports
its SDK on the first exchange (boto3, google-auth, azure-identity).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kuikcore.registry.cloud.chain import CloudAuth, CloudToken, Provider
from kuikcore.registry.cloud.hosts import Cloud, cloud_for_host, parse_ecr_host

__all__ = [
    "Cloud",
    "CloudAuth",
    "CloudToken",
    "Provider",
    "cloud_auth_from_config",
    "cloud_for_host",
    "make_provider",
    "parse_ecr_host",
]


def make_provider(
    host: str, kind: str, *, region: str | None = None, registry_id: str | None = None
) -> Provider:
    """The provider for `host`; `auto` reads the cloud from the host name. ValueError says why not."""
    cloud = cloud_for_host(host) if kind == "auto" else kind
    if cloud is None:
        raise ValueError(
            f"registries.{host}.cloudAuth: auto, but {host} is not a known ECR, Artifact "
            "Registry/GCR or ACR host: name the cloud (ecr, gcp or azure)"
        )
    if cloud == "ecr":
        from kuikcore.registry.cloud.aws import EcrProvider

        parsed = parse_ecr_host(host)
        region = region or (parsed.region if parsed else None)
        if region is None:
            raise ValueError(
                f"registries.{host}: cloudAuth: ecr needs region (not in the host name)"
            )
        account = registry_id or (parsed.account if parsed else None)
        return EcrProvider(region, account, fips=bool(parsed and parsed.fips))
    if cloud == "gcp":
        from kuikcore.registry.cloud.gcp import GcpProvider

        return GcpProvider()
    if cloud == "azure":
        from kuikcore.registry.cloud.azure import AcrProvider

        return AcrProvider()
    raise ValueError(f"registries.{host}.cloudAuth: unknown cloud {kind!r}")


def cloud_auth_from_config(registries: Mapping[str, Any]) -> CloudAuth | None:
    """`CloudAuth` over the config's `registries.<host>` entries with `cloudAuth`; None if none has."""
    providers: dict[str, Provider] = {}
    for host, entry in registries.items():
        kind = getattr(entry, "cloud_auth", None)
        if kind:
            providers[host] = make_provider(
                host,
                kind,
                region=getattr(entry, "region", None),
                registry_id=getattr(entry, "registry_id", None),
            )
    return CloudAuth(providers) if providers else None
