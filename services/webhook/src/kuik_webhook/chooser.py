"""Choosing the first available alternative of each container, fast and within a deadline.

Knowledge comes from, in order: the registry health view (`kuikcore.health`: a host known down
rejects its candidates at once, whatever else is known), this process's cache (keyed by image
*and* the credentials that would be used, unlike upstream, Appendix B #3), the availability board
in Redis (one read per admission), then active checks (HEAD, `routing.activeCheck.timeout`), all
candidates of all containers started together, single-flight across concurrent admissions. The
first candidate in order known to be available wins once every earlier one is known unavailable.

How long an image verdict is worth depends on its host: within `webhook.cacheTTL` of the check it
is used as is; past that, only while its host is known up (confirmed by the probes) is it used,
up to `VERDICT_LIFETIME`, and revalidated in the background; never once its host has changed state
since the check (a registry back from an outage may have come back without the image).

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
from kuikcore.health import HostHealth, Knowledge
from kuikcore.health.keeper import HealthKeeper
from kuikcore.reference import InvalidReference, parse
from kuikcore.registry import Credentials, RegistryClient
from kuikcore.registry.check import CheckResult, check
from kuikcore.routing import ORIGINAL, Alternative

__all__ = [
    "BOARD_BACKOFF",
    "BOARD_READ_BUDGET",
    "BOARD_TTL",
    "HEALTH_POLL",
    "VERDICT_LIFETIME",
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
VERDICT_LIFETIME = 60.0  # seconds a verdict may serve at most, while its host is known up
HEALTH_POLL = 0.1  # seconds between looks at a host's health while a check of it is awaited
BOARD_BACKOFF = 2.0  # seconds without board reads after one failed
# The definite answers: what the board is told, and what a known-up host lets live past the
# cache TTL (an Unreachable verdict never outlives it).
_BOARD_TRUSTED = frozenset({AvailabilityStatus.AVAILABLE, AvailabilityStatus.NOT_FOUND})


class Source(StrEnum):
    """Where a verdict came from (logged with every reroute)."""

    HEALTH = "health"
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
    at: float = 0.0
    """When the knowledge was gathered (unix s): judged against the host's last transition."""

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
        health: HealthKeeper | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.board = board
        self.metrics = metrics
        self.check_timeout = check_timeout
        self.resolve_digest = resolve_digest
        self.health = health
        self.cache_ttl = cache_ttl
        lifetime = max(cache_ttl, VERDICT_LIFETIME) if health is not None else cache_ttl
        self.cache: TTLCache[tuple[str, tuple[str, ...]], Verdict] = TTLCache(lifetime)
        self.flights: SingleFlight[tuple[str, tuple[str, ...]], Verdict] = SingleFlight()
        self._clock = clock
        self._wall = wall  # verdicts and host health are dated in unix time
        self._background: set[asyncio.Task[None]] = set()
        self._board_skip_until = 0.0

    @property
    def version(self) -> tuple[int, int]:
        """Changes whenever a verdict arrives or a registry host changes state."""
        return (self.cache.version, self.health.view.version if self.health is not None else 0)

    async def close(self) -> None:
        await self.flights.cancel_all()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # --- what is known, and for how long -----------------------------------------------------

    def _host(self, host: str) -> HostHealth | None:
        return None if self.health is None else self.health.view.get(host)

    def _down(self, candidate: Candidate, health: HostHealth | None, now: float) -> Verdict | None:
        """UNREACHABLE when the candidate's host is known down (confirmed recently)."""
        if health is None or health.up:
            return None
        fresh_for = self.health.settings.fresh_for if self.health is not None else float("inf")
        if health.knowledge(now, fresh_for) is not Knowledge.DOWN:
            return None
        since = datetime.fromtimestamp(health.since, UTC).isoformat(timespec="milliseconds")
        why = f"registry {candidate.host} is down since {since}"
        if health.by:
            why += f" (seen by {health.by})"
        return Verdict(AvailabilityStatus.UNREACHABLE, Source.HEALTH, why, at=health.confirmed_at)

    def _judge(self, verdict: Verdict, health: HostHealth | None, now: float) -> tuple[bool, bool]:
        """(usable, revalidate): see the module docstring."""
        if health is not None and verdict.at < health.since:
            return False, False  # the host changed state since: what it said no longer holds
        age = now - verdict.at
        if age <= self.cache_ttl:
            return True, False
        if (
            self.health is not None
            and health is not None
            and verdict.status in _BOARD_TRUSTED
            and age <= VERDICT_LIFETIME
            and health.knowledge(now, self.health.settings.fresh_for) is Knowledge.UP
        ):
            return True, True
        return False, False

    def _known(self, candidate: Candidate, now: float) -> tuple[Verdict | None, bool]:
        """(verdict from the health view or the cache, whether to revalidate it)."""
        health = self._host(candidate.host)
        down = self._down(candidate, health, now)
        if down is not None:
            return down, False
        cached = self.cache.get(candidate.cache_key)
        if cached is None:
            return None, False
        usable, stale = self._judge(cached, health, now)
        return (cached, stale) if usable else (None, False)

    # --- one admission --------------------------------------------------------------------

    def decide_cached(
        self, lists: Sequence[Sequence[Candidate]]
    ) -> tuple[list[Decision], float] | None:
        """What `decide` answers when the health view and this process's cache know every
        candidate it would look up (so it would read, check and revalidate nothing), with the
        `clock()` instant until which that stays true barring a host transition; None otherwise."""
        known: dict[tuple[str, tuple[str, ...]], Verdict] = {}
        now, mono = self._wall(), self._clock()
        valid_until = mono + self.cache_ttl
        decisions = []
        for candidates in lists:
            if len(candidates) > 1:
                for candidate in candidates:
                    if candidate.unusable is not None or candidate.cache_key in known:
                        continue
                    verdict, stale = self._known(candidate, now)
                    if verdict is None or stale:
                        return None
                    if verdict.source is not Source.HEALTH:
                        valid_until = min(valid_until, mono + verdict.at + self.cache_ttl - now)
                    known[candidate.cache_key] = verdict
            decision = self._decide_known(list(candidates), known)
            if decision is None:  # pragma: no cover - every verdict it needs is known
                return None
            decisions.append(decision)
        return decisions, valid_until

    async def decide(self, lists: Sequence[Sequence[Candidate]], deadline: float) -> list[Decision]:
        """One decision per candidate list; `deadline` is a `clock()` instant."""
        known: dict[tuple[str, tuple[str, ...]], Verdict] = {}
        contested = [c for cands in lists if len(cands) > 1 for c in cands if c.unusable is None]
        if self.health is not None:
            self.health.want(c.host for c in contested)
        now = self._wall()
        revalidate: list[Candidate] = []
        for candidate in contested:
            verdict, stale = self._known(candidate, now)
            if verdict is not None:
                known[candidate.cache_key] = verdict
                if stale:
                    revalidate.append(candidate)
        unknown = [c for c in contested if c.cache_key not in known]
        if unknown and self.board is not None and self._clock() >= self._board_skip_until:
            await self._read_board(unknown, known, deadline, revalidate)
        for candidate in revalidate:  # the last known answer serves meanwhile
            self.flights.run(candidate.cache_key, functools.partial(self._check, candidate))
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
            candidate = candidates[waiting]
            # while waiting on a check, look at the host's health now and then: a registry that
            # turns out dead meanwhile is given up on as soon as the probes say so
            step = remaining if self.health is None else min(remaining, HEALTH_POLL)
            try:
                if remaining <= 0:
                    raise TimeoutError
                verdicts[waiting] = await asyncio.wait_for(
                    asyncio.shield(tasks[candidate.cache_key]), step
                )
            except TimeoutError:
                down = self._down(candidate, self._host(candidate.host), self._wall())
                if down is not None:
                    verdicts[waiting] = down
                elif step >= remaining:
                    chosen, _ = pick(candidates, verdicts, final=True)
                    return Decision(
                        tuple(candidates), tuple(verdicts), chosen, "deadline: best known"
                    )

    async def _read_board(
        self,
        unknown: list[Candidate],
        known: dict[tuple[str, tuple[str, ...]], Verdict],
        deadline: float,
        revalidate: list[Candidate],
    ) -> None:
        assert self.board is not None
        budget = min(BOARD_READ_BUDGET, deadline - self._clock())
        if budget <= 0:
            return
        # hosts the view knows nothing of (not probed yet): the board may, from other services
        hosts = [c.host for c in unknown if c.host and self._host(c.host) is None]
        snapshot = await self.board.read([c.image for c in unknown], hosts, deadline=budget)
        if not snapshot.complete:
            # Redis down or slow: do not make every admission pay the budget again right away
            self.metrics.board_unavailable.inc()
            self._board_skip_until = self._clock() + BOARD_BACKOFF
            return
        now = self._wall()
        for candidate in unknown:
            health = self._host(candidate.host) or snapshot.registries.get(candidate.host)
            verdict = self._down(candidate, health, now)
            if verdict is None:
                image = snapshot.images.get(candidate.image)
                trusted = image is not None and (
                    image.status is AvailabilityStatus.NOT_FOUND
                    or (
                        image.status is AvailabilityStatus.AVAILABLE
                        and candidate.trust_board_available
                    )
                )
                if image is None or not trusted:
                    continue
                verdict = Verdict(
                    image.status, Source.BOARD, image.error, at=image.checked_at.timestamp()
                )
                usable, stale = self._judge(verdict, health, now)
                if not usable:
                    continue
                if stale:
                    revalidate.append(candidate)
            known[candidate.cache_key] = verdict
            if verdict.source is Source.BOARD:
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
        verdict = Verdict(result.status, Source.CHECK, result.error, at=self._wall())
        self.cache.set(candidate.cache_key, verdict)
        if self.board is not None:
            self._spawn(self._publish(candidate, result))
        return verdict

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish(self, candidate: Candidate, result: CheckResult) -> None:
        """Best effort: Redis down only means the board learns nothing from us. Host health is
        not reported from here: failed connections already were (passively, by the client), and
        "up" is the probes' to say."""
        assert self.board is not None
        if result.status not in _BOARD_TRUSTED or not candidate.trust_board_available:
            return
        try:
            async with asyncio.timeout(1.0):
                await self.board.publish_images(
                    {
                        candidate.image: ImageAvailability(
                            result.status, datetime.now(UTC), result.digest, result.error
                        )
                    },
                    ttl=BOARD_TTL,
                )
        except Exception as exc:
            log.debug("board write failed", image=candidate.image, error=repr(exc))
