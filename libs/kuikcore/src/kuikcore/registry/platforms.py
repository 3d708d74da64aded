"""Platform strings (`os/arch[/variant]`) and the matching rule upstream uses to filter indexes.

Upstream keeps an index child when its platform *satisfies* a configured one
(go-containerregistry `Platform.Satisfies`): same OS and architecture, and the variant,
OS version and features only compared when the configured platform sets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Platform", "filter_children", "parse_platform"]


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        if self.variant:
            text += f"/{self.variant}"
        if self.os_version:
            text += f":{self.os_version}"
        return text

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Platform:
        return cls(
            os=str(doc.get("os") or ""),
            architecture=str(doc.get("architecture") or ""),
            variant=str(doc.get("variant") or ""),
            os_version=str(doc.get("os.version") or ""),
        )

    def satisfies(self, spec: Platform) -> bool:
        """True when this (image) platform meets `spec` (a requested platform); an empty `os`
        in `spec` matches any (config `mirroring.platforms[].os: ""`, as upstream)."""
        if (spec.os and self.os != spec.os) or self.architecture != spec.architecture:
            return False
        if spec.variant and self.variant != spec.variant:
            return False
        return not spec.os_version or self.os_version == spec.os_version


def parse_platform(text: str) -> Platform:
    """Parse `os/arch[/variant][:osversion]`; raise ValueError naming the input otherwise."""
    body, _, os_version = text.strip().partition(":")
    parts = body.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(
            f"invalid platform {text!r}: expected os/arch[/variant] (e.g. linux/amd64)"
        )
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "", os_version)


def filter_children(
    children: Iterable[tuple[Platform | None, Any]], wanted: Iterable[Platform]
) -> tuple[list[Any], list[Platform]]:
    """Keep the children whose platform satisfies one of `wanted`.

    Returns (kept children in their original order, wanted platforms present in none of them).
    Children without a platform (attestations, unknown artifacts) are dropped, as upstream does.
    """
    wanted = list(wanted)
    kept: list[Any] = []
    found: set[Platform] = set()
    for platform, child in children:
        if platform is None:
            continue
        matched = [w for w in wanted if platform.satisfies(w)]
        if matched:
            kept.append(child)
            found.update(matched)
    missing = [w for w in wanted if w not in found]
    return kept, missing
