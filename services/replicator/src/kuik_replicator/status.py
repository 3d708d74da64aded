"""Copy results: workers append them to a Redis stream, the leader folds them into CR status.

Workers never write (C)ISM status themselves: the leader stays its single writer, so status
writes never race each other across replicas. A result is deleted from the stream only after
every CR naming the pair was updated; a leader that dies in between leaves it for the next one
(applying a result twice is harmless: the same fields get the same values).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kuik_replicator.planner import with_counts
from kuikcore.coord import Coord

__all__ = ["CopyOutcome", "ResultLog", "apply_outcomes"]

_MAX_RESULTS = 100_000


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    """What one copy job ended with (`error` None: the copy now exists at `destination`)."""

    source: str
    destination: str
    at: str
    """RFC 3339 time of the result (`mirroredAt` on success)."""
    digest: str | None = None
    platforms: tuple[str, ...] = field(default=())
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CopyOutcome:
        data = json.loads(text)
        data["platforms"] = tuple(data.get("platforms") or ())
        return cls(**data)


def apply_outcomes(status: Mapping[str, Any], outcomes: Sequence[CopyOutcome]) -> dict[str, Any]:
    """Fold results into a (C)ISM status (pure): success sets `mirroredAt`, `digest`,
    `platforms` and clears `lastError`; failure sets `lastError` and leaves the rest."""
    by_pair = {(o.source, o.destination): o for o in outcomes}  # the latest wins
    entries = []
    for entry in status.get("matchingImages") or ():
        mirrors = []
        for state in entry.get("mirrors") or ():
            outcome = by_pair.get((str(entry["image"]), str(state["image"])))
            state = dict(state)
            if outcome is not None and outcome.ok:
                state["mirroredAt"] = outcome.at
                state.pop("lastError", None)
                if outcome.digest:
                    state["digest"] = outcome.digest
                state["platforms"] = list(outcome.platforms)
            elif outcome is not None:
                state["lastError"] = outcome.error
            mirrors.append(state)
        entries.append({**entry, "mirrors": mirrors})
    return with_counts({**status, "matchingImages": entries})


class ResultLog:
    """The per-cluster stream of copy results (`<prefix>replicator:<cluster id>:results`)."""

    def __init__(self, coord: Coord, cluster_id: str) -> None:
        self.coord = coord
        self.key = f"{coord.keys.prefix}replicator:{cluster_id}:results"

    async def append(self, outcome: CopyOutcome) -> None:
        await self.coord.redis.xadd(
            self.key, {"r": outcome.to_json()}, maxlen=_MAX_RESULTS, approximate=True
        )

    async def read(self, count: int = 1000) -> list[tuple[str, CopyOutcome]]:
        """Oldest results first (unparseable entries are dropped)."""
        raw: Any = await self.coord.redis.xrange(self.key, count=count)
        out: list[tuple[str, CopyOutcome]] = []
        bad: list[str] = []
        for entry_id, fields in raw:
            try:
                out.append((str(entry_id), CopyOutcome.from_json(fields["r"])))
            except (KeyError, TypeError, ValueError):
                bad.append(str(entry_id))
        if bad:
            await self.coord.redis.xdel(self.key, *bad)
        return out

    async def wait(self, after: str, within: float) -> str | None:
        """Block until a result newer than `after` arrives; its id, or None on timeout."""
        reply: Any = await self.coord.redis.xread(
            {self.key: after}, count=1, block=max(1, int(within * 1000))
        )
        if not reply:
            return None
        return str(reply[0][1][-1][0])

    async def done(self, ids: Sequence[str]) -> None:
        if ids:
            await self.coord.redis.xdel(self.key, *ids)
