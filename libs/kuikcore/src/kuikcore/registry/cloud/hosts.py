"""Which cloud registry a host name is: pure rules over ECR, Artifact Registry/GCR and ACR names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Cloud", "EcrHost", "cloud_for_host", "parse_ecr_host"]

Cloud = Literal["ecr", "gcp", "azure"]

# <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]: the commercial, FIPS and China partitions
_ECR_RE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(?P<fips>-fips)?\.(?P<region>[a-z0-9-]+)"
    r"\.amazonaws\.com(?:\.cn)?$"
)
_GCP_RE = re.compile(r"^(?:[a-z0-9-]+-docker\.pkg\.dev|gcr\.io|[a-z0-9-]+\.gcr\.io)$")
_ACR_RE = re.compile(r"^[a-z0-9-]+\.azurecr\.(?:io|cn|us)$")


@dataclass(frozen=True, slots=True)
class EcrHost:
    account: str
    region: str
    fips: bool


def parse_ecr_host(host: str) -> EcrHost | None:
    """Account, region and partition from an ECR registry host; None for any other host."""
    match = _ECR_RE.match(host.lower())
    if match is None:
        return None
    return EcrHost(match["account"], match["region"], bool(match["fips"]))


def cloud_for_host(host: str) -> Cloud | None:
    """The cloud whose registry `host` names (`cloudAuth: auto`), or None."""
    name = host.lower()
    if _ECR_RE.match(name):
        return "ecr"
    if _GCP_RE.match(name):
        return "gcp"
    if _ACR_RE.match(name):
        return "azure"
    return None
