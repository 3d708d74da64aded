"""The kinds a cluster backend watches, and where they live in the Kubernetes API."""

from __future__ import annotations

from dataclasses import dataclass

from kuikcore.api import GROUP, KINDS, VERSION
from kuikcore.cluster.interface import NAMESPACE, POD, SECRET

__all__ = ["DEFAULT_KINDS", "WATCHED", "WatchedKind", "watched_kind"]


@dataclass(frozen=True, slots=True)
class WatchedKind:
    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def is_kuik(self) -> bool:
        return self.group == GROUP


WATCHED: dict[str, WatchedKind] = {
    POD: WatchedKind(POD, "", "v1", "pods", True),
    SECRET: WatchedKind(SECRET, "", "v1", "secrets", True),
    NAMESPACE: WatchedKind(NAMESPACE, "", "v1", "namespaces", False),
    **{
        kind: WatchedKind(kind, GROUP, VERSION, info.plural, info.namespaced)
        for kind, info in KINDS.items()
    },
}
DEFAULT_KINDS: tuple[str, ...] = tuple(kind for kind in WATCHED if kind != NAMESPACE)
"""What a backend watches unless told otherwise: Namespaces only when asked (the webhook)."""


def watched_kind(kind: str) -> WatchedKind:
    try:
        return WATCHED[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; kuik watches {', '.join(WATCHED)}") from None
