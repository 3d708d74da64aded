"""One admission, end to end, failing open: decode, plan, read secrets, choose, copy, patch.

Only a body that is not an AdmissionReview gets HTTP 400. Everything else is answered
`allowed: true`: an internal error (CR cache not ready, Redis down, unreadable secret, a bug)
admits the Pod unchanged with a warning and a log line, and the whole admission is bounded by
`webhook.deadline` (the choice itself must be done `_RESERVE` earlier, to leave room for the
pull-secret copy and the answer).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from kuik_webhook.chooser import Candidate, Chooser, Decision
from kuik_webhook.memo import AdmissionMemo, MemoKey, RememberedAdmission, Stamp
from kuik_webhook.metrics import OPERATIONS, WebhookMetrics
from kuik_webhook.pod_plan import NotAPod, PodPlan, Target, build_patch, plan_pod
from kuik_webhook.review import (
    AdmissionRequest,
    MalformedReview,
    ResponseTemplate,
    decode_review,
)
from kuik_webhook.routes import RouteCache
from kuik_webhook.secrets import SecretReader, pull_secret_name
from kuik_webhook.stale import StaleMirror, StaleMirrorReporter, stale_mirror_job
from kuikcore.api.models import (
    ClusterImageSetMirror,
    ClusterReplicatedImageSet,
    ImageSetMirror,
    ReplicatedImageSet,
    Resource,
)
from kuikcore.cluster import ClusterSource
from kuikcore.mode import Mode, ModeChoice, mode_for
from kuikcore.observe import HotLogger, LogLine, closed
from kuikcore.pods import PodContainer
from kuikcore.reference import InvalidReference, parse
from kuikcore.registry import Credentials, InvalidDockerConfig, Keyring
from kuikcore.routing import RoutingOptions, SecretRef

__all__ = ["AdmissionHandler", "Answer", "NotReady"]

log = structlog.get_logger("kuik.webhook")

_RESERVE = 0.3  # seconds kept after the choice for secret copies and the answer
_MAX_CHILDREN = 4096  # metric children kept at hand, per metric
_OPERATIONS = frozenset({"CREATE", "UPDATE"})
_SUB_RESOURCES = frozenset({"", "ephemeralcontainers"})
_KINDS: tuple[tuple[type[Resource], bool], ...] = (
    (ClusterImageSetMirror, False),
    (ImageSetMirror, True),
    (ClusterReplicatedImageSet, False),
    (ReplicatedImageSet, True),
)


class NotReady(RuntimeError):
    """The CR cache has not completed its first listing yet."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    result: str
    operation: str = "unknown"


@dataclass(slots=True)
class _Outcome:
    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    result: str = "unchanged"
    template: ResponseTemplate | None = None
    # What an identical admission repeats (see `kuik_webhook.memo`), and until when it may.
    memo_until: float | None = None
    lines: list[LogLine] = field(default_factory=list)
    reroutes: list[Any] = field(default_factory=list)
    stale_jobs: list[StaleMirror] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Change:
    image: str
    pull_secret: str | None
    reason: str


_REASON_LIMIT = 256


def reroute_reason(original: str, rejected: Sequence[Mapping[str, str]], choice: Candidate) -> str:
    """Why a container left its original image, in a few words for the Pod's
    `kuik.enix.io/reroute-reasons` annotation (and the `Rerouted` Event the replicator writes)."""
    why = next((r["reason"] for r in rejected if r.get("image") == original), None)
    if why is None:  # the original was never in the way: a routing CR ranks before it
        why = f"{choice.alternative.source} ranks before the original"
    return why if len(why) <= _REASON_LIMIT else why[: _REASON_LIMIT - 3] + "..."


def _pod_label(request: AdmissionRequest, namespace: str) -> str:
    obj = request.object if isinstance(request.object, Mapping) else {}
    found = obj.get("metadata")
    meta: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    name = request.name or str(meta.get("name") or meta.get("generateName") or "")
    return f"{namespace}/{name}"


def _registry(image: str) -> str:
    try:
        return parse(image).registry_host
    except InvalidReference:
        return ""


class AdmissionHandler:
    """Answers AdmissionReviews: the decision engine behind `/mutate`."""

    def __init__(
        self,
        cluster: ClusterSource,
        chooser: Chooser,
        secrets: SecretReader,
        reporter: StaleMirrorReporter,
        metrics: WebhookMetrics,
        options: RoutingOptions,
        *,
        deadline: float,
        mode: Mode = Mode.ENFORCE,
        namespace_labels: Callable[[str], Mapping[str, str] | None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.mode = mode
        self.namespace_labels = namespace_labels or (lambda _namespace: None)
        self._mode_problems: set[str] = set()
        self.chooser = chooser
        self.secrets = secrets
        self.reporter = reporter
        self.metrics = metrics
        self.options = options
        self.deadline = deadline
        self.routes = RouteCache(self.resources, options)
        self.memo = AdmissionMemo()
        self._admissions: dict[tuple[str, str], Any] = {}
        self._reroutes: dict[tuple[str, str], Any] = {}
        # The line per rerouted container is written on every such admission: the light path.
        self.log = HotLogger("kuik.webhook")

    async def handle(self, body: bytes) -> Answer:
        """Answer one request body: 200 allowed or 400 malformed. Never raises.

        The outer guard is the promise kept whatever the input does to the code below (a
        RecursionError, an encoding error, a bug): the Pod is allowed unpatched, the failure
        is logged with its traceback and counted in `handler_failures_total`."""
        started = time.monotonic()
        request: AdmissionRequest | None = None
        try:
            try:
                request = decode_review(body)
            except MalformedReview as exc:
                return self.malformed(str(exc))
            return await self._handle(request, started)
        except Exception as exc:
            return self._broken(request, exc, started)

    def malformed(self, why: str) -> Answer:
        """HTTP 400 for a body that is no AdmissionReview (logged and counted)."""
        self.metrics.admissions.labels(operation="unknown", result="malformed").inc()
        log.warning("malformed AdmissionReview", error=why)
        body = json.dumps({"error": f"malformed AdmissionReview: {why}"}).encode()
        return Answer(400, body, "malformed")

    async def _handle(self, request: AdmissionRequest, started: float) -> Answer:
        operation = self.metrics.operation(request.operation)
        audit = self._mode(request).mode is Mode.AUDIT
        # An identical admission answered from memory needs no deadline: nothing to wait for.
        key = (
            self.memo.key(request, self._stamp())
            if self._routable(request) and self.cluster.synced and not audit
            else None
        )
        memo = self.memo.get(key)
        if memo is not None and memo.valid_until > time.monotonic():
            outcome = self._replay(memo, request)
        else:
            try:
                async with asyncio.timeout(self.deadline):
                    outcome = await self._admit(
                        request,
                        started + max(self.deadline - _RESERVE, self.deadline / 2),
                        key,
                        audit=audit,
                    )
            except Exception as exc:
                outcome = self._failed(request, exc, started)
        template = outcome.template or ResponseTemplate.of(
            patch=outcome.patch, warnings=outcome.warnings
        )
        answer = Answer(200, template.render(request.uid), outcome.result, operation)
        counter = self._admissions.get((operation, outcome.result))
        if counter is None:  # labels() costs more than the increment: keep the children
            counter = self.metrics.admissions.labels(
                operation=operation, result=self.metrics.result(outcome.result)
            )
            if len(self._admissions) < _MAX_CHILDREN:
                self._admissions[(operation, outcome.result)] = counter
        counter.inc()
        self.metrics.admission_duration.observe(time.monotonic() - started)
        return answer

    def _broken(self, request: AdmissionRequest | None, exc: Exception, started: float) -> Answer:
        """The outer guard's answer: allowed and unpatched when the uid is known, else 400 (an
        answer without the request's uid is no answer to the API server). Uses nothing the
        admission path uses but the counters and the response encoder."""
        self.metrics.handler_failures.inc()
        log.error(
            "admission handler failed, Pod allowed unpatched",
            error=f"{type(exc).__name__}: {exc}"[:500],
            elapsed=round(time.monotonic() - started, 4),
            exc_info=exc,
        )
        if request is None:
            return self.malformed(f"unreadable request: {type(exc).__name__}")
        operation = closed(request.operation, OPERATIONS)
        self.metrics.admissions.labels(operation=operation, result="error").inc()
        warning = f"kuik: Pod admitted unchanged (internal error: {type(exc).__name__})"
        body = ResponseTemplate.of(warnings=[warning]).render(request.uid)
        return Answer(200, body, "error", operation)

    def _failed(self, request: AdmissionRequest, exc: Exception, started: float) -> _Outcome:
        if isinstance(exc, TimeoutError):
            why = f"no decision within the {self.deadline:g}s deadline"
        elif isinstance(exc, NotReady | NotAPod):
            why = str(exc)
        else:
            why = f"internal error: {type(exc).__name__}: {exc}"
        log.warning(
            "admitted unchanged",
            uid=request.uid,
            pod=_pod_label(request, request.namespace),
            operation=request.operation,
            reason=why,
            elapsed=round(time.monotonic() - started, 4),
            exc_info=not isinstance(exc, TimeoutError | NotReady | NotAPod),
        )
        return _Outcome(warnings=[f"kuik: Pod admitted unchanged ({why})"], result="error")

    # --- the admission ----------------------------------------------------------------------

    def _mode(self, request: AdmissionRequest) -> ModeChoice:
        """This request's mode: its Namespace's label, else the config's."""
        choice = mode_for(self.mode, self.namespace_labels(request.namespace))
        if choice.problem is not None and len(self._mode_problems) < _MAX_CHILDREN:
            said = f"{request.namespace}\0{choice.problem}"
            if said not in self._mode_problems:  # once per namespace and value, not per Pod
                self._mode_problems.add(said)
                log.warning(
                    "namespace mode label ignored",
                    namespace=request.namespace,
                    error=choice.problem,
                    mode=choice.mode.value,
                )
        return choice

    def resources(self, namespace: str) -> list[Resource]:
        """The routing CRs that may apply to a Pod of `namespace`."""
        store = self.cluster.store
        out: list[Resource] = []
        for kind, namespaced in _KINDS:
            out.extend(store.resources(kind.KIND, namespace if namespaced else None))
        return out

    @staticmethod
    def _routable(request: AdmissionRequest) -> bool:
        """A Pod write kuik routes (anything else is allowed untouched)."""
        return (
            request.is_pod
            and request.operation in _OPERATIONS
            and request.sub_resource in _SUB_RESOURCES
        )

    async def _admit(
        self,
        request: AdmissionRequest,
        choose_by: float,
        key: MemoKey | None,
        *,
        audit: bool = False,
    ) -> _Outcome:
        """The whole decision; `key` is the request's memory key (None: not to be remembered).

        In audit mode the decision is the same, but nothing leaves it but a log line per
        container it would reroute and a count: no patch, no pull-secret copy, no report."""
        if not self._routable(request):
            return _Outcome(result="skipped")  # not a Pod write kuik routes: leave it alone
        namespace = request.namespace
        obj = request.object
        if isinstance(obj, Mapping) and isinstance(obj.get("metadata"), Mapping):
            namespace = str(obj["metadata"].get("namespace") or namespace)
        if not self.cluster.synced:
            raise NotReady("kuik's cache of image routing resources is not ready yet")
        plan = plan_pod(request, router=self.routes.route)
        outcome = _Outcome()
        for problem in plan.problems:
            log.warning("routing resource skipped", error=str(problem))
        if plan.skipped is not None:
            log.debug("pod skipped", pod=_pod_label(request, plan.namespace), reason=plan.skipped)
            return _Outcome(result="skipped")
        pod: Mapping[str, Any] = request.object
        images: list[tuple[PodContainer, str]] = []
        pull_secrets: list[str] = []
        reasons: dict[str, str] = {}
        if plan.targets:
            decisions, found = await self._choose(request, plan, outcome, choose_by)
            for target, decision in zip(plan.targets, decisions, strict=True):
                change = await self._apply(
                    request, plan, target, decision, found, outcome, audit=audit
                )
                if change is not None:
                    images.append((target.container, change.image))
                    reasons[target.container.key] = change.reason
                    if change.pull_secret is not None:
                        pull_secrets.append(change.pull_secret)
        result = "rerouted" if images else "unchanged"
        if audit:
            self.metrics.audit_decisions.labels(result=result).inc()
            return _Outcome(result="audited", warnings=outcome.warnings)
        outcome.patch = build_patch(pod, images, plan.annotation, pull_secrets, reasons)
        outcome.result = result
        if key is not None and (outcome.memo_until is not None or not plan.targets):
            outcome.template = ResponseTemplate.of(patch=outcome.patch, warnings=outcome.warnings)
            self._remember(key, plan, outcome)
        return outcome

    # --- identical admissions ------------------------------------------------------------------

    def _stamp(self) -> Stamp:
        return (self.routes.generation, self.chooser.version)

    def _remember(self, key: MemoKey, plan: PodPlan, outcome: _Outcome) -> None:
        assert outcome.template is not None
        entry = RememberedAdmission(
            outcome.template,
            outcome.result,
            outcome.memo_until if outcome.memo_until is not None else float("inf"),
            tuple(str(problem) for problem in plan.problems),
            tuple(outcome.lines),
            tuple(outcome.reroutes),
            tuple(outcome.stale_jobs),
        )
        self.memo.remember(key, entry, self._stamp())

    def _replay(self, memo: RememberedAdmission, request: AdmissionRequest) -> _Outcome:
        for problem in memo.problems:
            log.warning("routing resource skipped", error=problem)
        if not request.dry_run:
            for job in memo.stale_jobs:
                self.reporter.report(job)
        for counter in memo.reroutes:
            counter.inc()
        self.log.write(*memo.lines)
        return _Outcome(result=memo.result, template=memo.template)

    async def _choose(
        self, request: AdmissionRequest, plan: PodPlan, outcome: _Outcome, choose_by: float
    ) -> tuple[list[Decision], dict[SecretRef, dict[str, Any]]]:
        pod = request.object
        listed = [
            s.get("name")
            for s in (pod["spec"].get("imagePullSecrets") or [])
            if isinstance(s, Mapping) and isinstance(s.get("name"), str)
        ]
        pod_refs = [SecretRef(str(name), plan.namespace) for name in listed]
        wanted = list(pod_refs)
        if plan.can_add_pull_secrets:
            wanted += [
                a.credential_secret
                for t in plan.targets
                for a in t.route.alternatives
                if a.credential_secret is not None
            ]
        # secrets must leave the checks half of the time that is left
        found, problems = await self.secrets.read(wanted, within=(choose_by - time.monotonic()) / 2)
        for pod_ref in pod_refs:
            if pod_ref in problems:
                log.info(
                    "pod has invalid image pull secret",
                    secret=f"{pod_ref.namespace}/{pod_ref.name}",
                    reason=problems[pod_ref],
                )
        pod_secrets = [found[r] for r in pod_refs if r in found]
        keyrings: dict[SecretRef | None, Keyring | None] = {None: _keyring(pod_secrets, outcome)}
        lists = []
        for target in plan.targets:
            candidates = []
            for alternative in target.route.alternatives:
                ref = alternative.credential_secret
                name = pull_secret_name(alternative, plan.namespace)
                if ref is None or name in listed:
                    keyring = keyrings[None]
                    candidates.append(Candidate(alternative, _lookup(keyring, alternative.image)))
                    continue
                if not plan.can_add_pull_secrets:
                    # cannot add it to this Pod: check with the Pod's own credentials only
                    creds = _lookup(keyrings[None], alternative.image)
                    candidates.append(Candidate(alternative, creds, trust_board_available=False))
                    continue
                if ref not in found:
                    candidates.append(
                        Candidate(alternative, unusable=problems.get(ref, "unreadable"))
                    )
                    continue
                if ref not in keyrings:
                    keyrings[ref] = _keyring([*pod_secrets, found[ref]], outcome)
                creds = _lookup(keyrings[ref], alternative.image)
                candidates.append(Candidate(alternative, creds, pull_secret=name))
            lists.append(candidates)
        if not wanted:
            cached = self.chooser.decide_cached(lists)
            if cached is not None:  # nothing read, nothing to wait for: may be reused
                outcome.memo_until = cached[1]
                return cached[0], found
        return await self.chooser.decide(lists, choose_by), found

    async def _apply(
        self,
        request: AdmissionRequest,
        plan: PodPlan,
        target: Target,
        decision: Decision,
        found: Mapping[SecretRef, Mapping[str, Any]],
        outcome: _Outcome,
        *,
        audit: bool = False,
    ) -> _Change | None:
        """The change for a rerouted container, else None. Nothing is written in the cluster
        for a dry run or in audit mode."""
        quiet = request.dry_run or audit
        if not quiet:
            self._report_stale(decision, outcome)
        choice = decision.choice
        if choice is None or choice.is_original:
            return None
        secret_name = choice.pull_secret if plan.can_add_pull_secrets else None
        ref = choice.alternative.credential_secret
        owner = choice.alternative.owner
        if secret_name is not None and ref is not None and ref.namespace != plan.namespace:
            if owner is None:  # pragma: no cover - routing gives every CR alternative its owner
                return None
            if not quiet:
                try:
                    await self.secrets.ensure_copy(found[ref], plan.namespace, secret_name, owner)
                except Exception as exc:
                    log.warning(
                        "pull secret copy failed, container kept",
                        container=target.container.key,
                        secret=secret_name,
                        error=repr(exc),
                    )
                    outcome.warnings.append(
                        f"kuik: container {target.container.key} not rerouted to {choice.image}: "
                        f"could not copy pull secret {secret_name}: {type(exc).__name__}"
                    )
                    return None
        original = target.route.image
        rejected = decision.rejected()
        fields: dict[str, Any] = {
            "pod": _pod_label(request, plan.namespace),
            "container": target.container.key,
            "original": original,
            "image": choice.image,
            "source": choice.alternative.source,
            "reason": decision.reason,
            "rejected": rejected,
            "dry_run": request.dry_run,
        }
        if audit:  # said, never done: no reroute counted, no line to replay
            self.log.write(self.log.prepare("would reroute image", **fields, mode="audit"))
            return _Change(choice.image, secret_name, "")
        counter = self._reroute_counter(original, choice.image)
        counter.inc()
        line = self.log.prepare("rerouting image", **fields)
        self.log.write(line)
        outcome.lines.append(line)
        outcome.reroutes.append(counter)
        return _Change(choice.image, secret_name, reroute_reason(original, rejected, choice))

    def _reroute_counter(self, original: str, image: str) -> Any:
        """The `reroutes_total` child for these two images' registries (parsing costs)."""
        counter = self._reroutes.get((original, image))
        if counter is None:
            hosts = self.metrics.hosts  # input: valid host syntax, a capped number of them
            counter = self.metrics.reroutes.labels(
                from_registry=hosts(_registry(original)), to_registry=hosts(_registry(image))
            )
            if len(self._reroutes) < _MAX_CHILDREN:
                self._reroutes[(original, image)] = counter
        return counter

    def _report_stale(self, decision: Decision, outcome: _Outcome) -> None:
        for candidate, verdict in zip(decision.candidates, decision.verdicts, strict=True):
            if verdict is None or verdict.status.value != "NotFound":
                continue
            alternative = candidate.alternative
            job = stale_mirror_job(
                alternative.owner, alternative.image, alternative.credential_secret
            )
            if job is not None:
                self.reporter.report(job)
                outcome.stale_jobs.append(job)


def _lookup(keyring: Keyring | None, image: str) -> tuple[Credentials, ...]:
    return tuple(keyring.lookup(image)) if keyring is not None else ()


def _keyring(secrets: Sequence[Mapping[str, Any]], outcome: _Outcome) -> Keyring | None:
    """The credentials of `secrets`, or None when there are none (most Pods: no lookups)."""
    if not secrets:
        return None
    keyring = Keyring()
    for secret in secrets:
        try:
            keyring.add_secret(secret)
        except InvalidDockerConfig as exc:
            log.warning("unreadable pull secret ignored", error=str(exc))
            outcome.warnings.append(f"kuik: {exc}")
    return keyring if len(keyring) else None
