"""Choosing the first available alternative of each container, fast and within a deadline.

Knowledge comes from, in order: this process's TTL cache (keyed by image *and* the credentials
that would be used, unlike upstream, Appendix B #3), the availability board in Redis (one read
per admission: images and registry hosts; a host marked down rejects its candidates at once),
then active checks (HEAD, `routing.activeCheck.timeout`), all candidates of all containers
started together, single-flight across concurrent admissions. The first candidate in order
known to be available wins once every earlier one is known unavailable.

At the deadline, the best decision known is taken (`pick(final=True)`): earlier candidates still
unknown are passed over, except the original, which is then kept (when in doubt, change nothing).
What the checks learn goes back to the board for the other replicas and services.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

from kuik_webhook.cache import SingleFlight, TTLCache
from kuik_webhook.metrics import WebhookMetrics
from kuikcore.api import AvailabilityStatus
from kuikcore.coord import AvailabilityBoard, ImageAvailability
from kuikcore.reference import InvalidReference, parse
from kuikcore.registry import Credentials, RegistryClient
from kuikcore.registry.check import CheckResult, check
from kuikcore.routing import ORIGINAL, Alternative

__all__ = [
    "BOARD_BACKOFF",
    "BOARD_READ_BUDGET",
    "BOARD_TTL",
    "Candidate",
    "Chooser",
    "Decision",
    "Source",
    "Verdict",
    "pick",
]

log = structlog.get_logger("kuik.webhook")

BOARD_READ_BUDGET = 0.1  # seconds: Redis slower than this is treated as "knows nothing"
BOARD_TTL = 60.0  # seconds the webhook's own results live on the board
BOARD_BACKOFF = 2.0  # seconds without board reads after one failed
_BOARD_TRUSTED = (AvailabilityStatus.AVAILABLE, AvailabilityStatus.NOT_FOUND)


class Source(StrEnum):
    """Where a verdict came from (logged with every reroute)."""

    CACHE = "cache"
    BOARD = "board"
    CHECK = "check"
    SECRET = "secret"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One alternative as this admission would use it."""

    alternative: Alternative
    credentials: tuple[Credentials, ...] = field(default=(), repr=False)
    pull_secret: str | None = None
    """Secret the Pod must list to pull it (added to `imagePullSecrets` when chosen)."""
    unusable: str | None = None
    """Why it cannot be chosen whatever the registry says (its credential secret is unreadable)."""
    trust_board_available: bool = True
    """False when the Pod will not carry the credentials the board's result may have used."""
    cache_key: tuple[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    """(image, fingerprints of the credentials a check would use): never the secrets."""

    def __post_init__(self) -> None:
        key = (self.alternative.image, tuple(c.fingerprint for c in self.credentials))
        object.__setattr__(self, "cache_key", key)

    @property
    def image(self) -> str:
        return self.alternative.image

    @property
    def is_original(self) -> bool:
        return self.alternative.source == ORIGINAL

    @property
    def host(self) -> str:
        try:
            return parse(self.image).registry_host
        except InvalidReference:
            return ""


@dataclass(frozen=True, slots=True)
class Verdict:
    status: AvailabilityStatus
    source: Source
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.status is AvailabilityStatus.AVAILABLE


@dataclass(frozen=True, slots=True)
class Decision:
    candidates: tuple[Candidate, ...]
    verdicts: tuple[Verdict | None, ...]
    chosen: int | None
    """Index of the chosen candidate; None keeps the image as written."""
    reason: str

    @property
    def choice(self) -> Candidate | None:
        return None if self.chosen is None else self.candidates[self.chosen]

    def rejected(self) -> list[dict[str, str]]:
        """Why each candidate before the chosen one was passed over (for the reroute log)."""
        end = self.chosen if self.chosen is not None else len(self.candidates)
        out = []
        for candidate, verdict in zip(self.candidates[:end], self.verdicts[:end], strict=True):
            if verdict is None:
                why = "unknown at the deadline"
            else:
                why = verdict.status.value + (f": {verdict.error}" if verdict.error else "")
                why += f" ({verdict.source.value})"
            out.append({"image": candidate.image, "reason": why})
        return out


def pick(
    candidates: Sequence[Candidate], verdicts: Sequence[Verdict | None], *, final: bool
) -> tuple[int | None, int | None]:
    """(chosen index or None, index still awaited or None). Pure.

    Not final: the first available wins once all before it are known unavailable; an unknown
    candidate on the way means "wait for it". Final: unknown non-original candidates are
    passed over, an unknown original stops the search (keep the Pod as written).
    """
    for i, verdict in enumerate(verdicts):
        if verdict is None:
            if not final:
                return None, i
            if candidates[i].is_original:
                return None, None
            continue
        if verdict.available:
            return i, None
    return None, None


class Chooser:
    """Holds the cache, the single-flight table and the background board writes."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        board: AvailabilityBoard | None,
        metrics: WebhookMetrics,
        check_timeout: float,
        cache_ttl: float,
        resolve_digest: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.board = board
        self.metrics = metrics
        self.check_timeout = check_timeout
        self.resolve_digest = resolve_digest
        self.cache: TTLCache[tuple[str, tuple[str, ...]], Verdict] = TTLCache(cache_ttl)
        self.flights: SingleFlight[tuple[str, tuple[str, ...]], Verdict] = SingleFlight()
        self._clock = clock
        self._background: set[asyncio.Task[None]] = set()
        self._board_skip_until = 0.0

    async def close(self) -> None:
        await self.flights.cancel_all()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # --- one admission --------------------------------------------------------------------

    def decide_cached(
        self, lists: Sequence[Sequence[Candidate]]
    ) -> tuple[list[Decision], float] | None:
        """What `decide` answers when this process's cache knows every candidate it would look
        up (so it would read and check nothing), with the instant the first of those verdicts
        expires; None otherwise."""
        known: dict[tuple[str, tuple[str, ...]], Verdict] = {}
        valid_until = float("inf")
        decisions = []
        for candidates in lists:
            if len(candidates) > 1:
                for candidate in candidates:
                    if candidate.unusable is not None or candidate.cache_key in known:
                        continue
                    entry = self.cache.get_entry(candidate.cache_key)
                    if entry is None:
                        return None
                    valid_until = min(valid_until, entry[0])
                    known[candidate.cache_key] = entry[1]
            decision = self._decide_known(list(candidates), known)
            if decision is None:  # pragma: no cover - every verdict it needs is known
                return None
            decisions.append(decision)
        return decisions, valid_until

    async def decide(self, lists: Sequence[Sequence[Candidate]], deadline: float) -> list[Decision]:
        """One decision per candidate list; `deadline` is a `clock()` instant."""
        known: dict[tuple[str, tuple[str, ...]], Verdict] = {}
        contested = [c for cands in lists if len(cands) > 1 for c in cands if c.unusable is None]
        for candidate in contested:
            cached = self.cache.get(candidate.cache_key)
            if cached is not None:
                known[candidate.cache_key] = cached
        unknown = [c for c in contested if c.cache_key not in known]
        if unknown and self.board is not None and self._clock() >= self._board_skip_until:
            await self._read_board(unknown, known, deadline)
        tasks = {
            c.cache_key: self.flights.run(c.cache_key, functools.partial(self._check, c))
            for c in contested
            if c.cache_key not in known
        }
        decisions: list[Decision | None] = [
            self._decide_known(list(cands), known) for cands in lists
        ]
        waiting = [i for i, d in enumerate(decisions) if d is None]
        if waiting:  # only then pay for coroutines: warm caches decide synchronously
            waited = await asyncio.gather(
                *(self._decide_one(list(lists[i]), known, tasks, deadline) for i in waiting)
            )
            for i, decision in zip(waiting, waited, strict=True):
                decisions[i] = decision
        return [d for d in decisions if d is not None]

    def _verdicts(
        self, candidates: list[Candidate], known: dict[tuple[str, tuple[str, ...]], Verdict]
    ) -> list[Verdict | None]:
        return [
            Verdict(AvailabilityStatus.UNAVAILABLE_SECRET, Source.SECRET, c.unusable)
            if c.unusable is not None
            else known.get(c.cache_key)
            for c in candidates
        ]

    def _decide_known(
        self, candidates: list[Candidate], known: dict[tuple[str, tuple[str, ...]], Verdict]
    ) -> Decision | None:
        """The decision when nothing has to be awaited, else None."""
        if len(candidates) == 1:
            # No choice to make: the original alone stays; a lone alternative (the original
            # discarded by `discardAlternative`) is used, as upstream's docs describe.
            only = candidates[0]
            chosen = None if only.is_original or only.unusable else 0
            return Decision(tuple(candidates), (None,), chosen, "single candidate")
        verdicts = self._verdicts(candidates, known)
        chosen, waiting = pick(candidates, verdicts, final=False)
        if waiting is not None:
            return None
        reason = "first available" if chosen is not None else "none available"
        return Decision(tuple(candidates), tuple(verdicts), chosen, reason)

    async def _decide_one(
        self,
        candidates: list[Candidate],
        known: dict[tuple[str, tuple[str, ...]], Verdict],
        tasks: dict[tuple[str, tuple[str, ...]], asyncio.Task[Verdict]],
        deadline: float,
    ) -> Decision:
        verdicts = self._verdicts(candidates, known)
        while True:
            chosen, waiting = pick(candidates, verdicts, final=False)
            if waiting is None:
                reason = "first available" if chosen is not None else "none available"
                return Decision(tuple(candidates), tuple(verdicts), chosen, reason)
            remaining = deadline - self._clock()
            task = tasks[candidates[waiting].cache_key]
            try:
                if remaining <= 0:
                    raise TimeoutError
                verdicts[waiting] = await asyncio.wait_for(asyncio.shield(task), remaining)
            except TimeoutError:
                chosen, _ = pick(candidates, verdicts, final=True)
                return Decision(tuple(candidates), tuple(verdicts), chosen, "deadline: best known")

    async def _read_board(
        self,
        unknown: list[Candidate],
        known: dict[tuple[str, tuple[str, ...]], Verdict],
        deadline: float,
    ) -> None:
        assert self.board is not None
        budget = min(BOARD_READ_BUDGET, deadline - self._clock())
        if budget <= 0:
            return
        snapshot = await self.board.read(
            [c.image for c in unknown], [c.host for c in unknown if c.host], deadline=budget
        )
        if not snapshot.complete:
            # Redis down or slow: do not make every admission pay the budget again right away
            self.metrics.board_unavailable.inc()
            self._board_skip_until = self._clock() + BOARD_BACKOFF
            return
        for candidate in unknown:
            health = snapshot.registries.get(candidate.host)
            verdict = None
            if health is not None and not health.up:
                since = health.down_since.isoformat() if health.down_since else "recently"
                verdict = Verdict(
                    AvailabilityStatus.UNREACHABLE,
                    Source.BOARD,
                    f"registry {candidate.host} is down since {since}",
                )
            else:
                image = snapshot.images.get(candidate.image)
                trusted = image is not None and (
                    image.status is AvailabilityStatus.NOT_FOUND
                    or (
                        image.status is AvailabilityStatus.AVAILABLE
                        and candidate.trust_board_available
                    )
                )
                if image is not None and trusted:
                    verdict = Verdict(image.status, Source.BOARD, image.error)
            if verdict is not None:
                known[candidate.cache_key] = verdict
                self.cache.set(candidate.cache_key, verdict)

    # --- active checks ----------------------------------------------------------------------

    async def _check(self, candidate: Candidate) -> Verdict:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.check_timeout + 0.5):
                result = await check(
                    self.client,
                    candidate.image,
                    method="HEAD",
                    timeout=self.check_timeout,
                    credentials=list(candidate.credentials),
                    resolve_digest=self.resolve_digest,
                )
        except TimeoutError:
            result = CheckResult(AvailabilityStatus.UNREACHABLE, "registry unreachable: timed out")
        except Exception as exc:  # a client bug must not become an admission failure
            log.warning("availability check failed", image=candidate.image, error=repr(exc))
            result = CheckResult(AvailabilityStatus.UNREACHABLE, f"check failed: {exc}")
        self.metrics.check_duration.observe(time.perf_counter() - started)
        self.metrics.check_results.labels(status=result.status.value).inc()
        verdict = Verdict(result.status, Source.CHECK, result.error)
        self.cache.set(candidate.cache_key, verdict)
        if self.board is not None:
            self._spawn(self._publish(candidate, result))
        return verdict

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish(self, candidate: Candidate, result: CheckResult) -> None:
        """Best effort: Redis down only means the board learns nothing from us."""
        assert self.board is not None
        try:
            async with asyncio.timeout(1.0):
                if result.status in _BOARD_TRUSTED and candidate.trust_board_available:
                    await self.board.publish_images(
                        {
                            candidate.image: ImageAvailability(
                                result.status, datetime.now(UTC), result.digest, result.error
                            )
                        },
                        ttl=BOARD_TTL,
                    )
                if candidate.host:
                    await self.board.report_registry(
                        candidate.host,
                        reachable=result.status is not AvailabilityStatus.UNREACHABLE,
                        error=result.error,
                    )
        except Exception as exc:
            log.debug("board write failed", image=candidate.image, error=repr(exc))
