"""The operator config file as a pydantic model tree: upstream kuik v2's keys and defaults, plus kuik's own.

YAML keys are camelCase (aliases), attributes are their snake_case mirrors. Every model is frozen and
rejects unknown keys; the loader (`kuikcore.config.load`) turns pydantic's errors into `ConfigError`s
that name the dotted key path. Validators raise `FieldIssue` when the problem sits below the field they
validate (a map key, a sub-field of a model-level rule), so the error path points at the real culprit.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from kuikcore.duration import format_duration, parse_duration
from kuikcore.mode import Mode
from kuikcore.redis_url import parse_redis_url
from kuikcore.selectors import InvalidSelector, parse_selector

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ActiveCheck",
    "Config",
    "CredentialSecretRef",
    "FieldIssue",
    "HistogramConfig",
    "LegacyHistogram",
    "ListenAddress",
    "Metrics",
    "Mirroring",
    "Monitoring",
    "PlatformConfig",
    "Redis",
    "RegistryHealth",
    "RegistryMonitoring",
    "RegistryMonitoringOverride",
    "RegistryTLSConfig",
    "RerouteEvents",
    "Routing",
    "StaleMirrorCleanup",
    "Webhook",
    "exponential_buckets",
    "exponential_buckets_range",
    "parse_listen",
]

DEFAULT_CONFIG_PATH = Path("/etc/kube-image-keeper/config.yaml")


class FieldIssue(ValueError):
    """A validation problem located below the value being validated.

    `at` is the relative location: a key, a list index, or a tuple of them (`("custom", 2)`).
    """

    def __init__(self, at: str | int | tuple[str | int, ...], message: str) -> None:
        self.at: tuple[str | int, ...] = at if isinstance(at, tuple) else (at,)
        super().__init__(message)


# --- value types -------------------------------------------------------------------------------


def _duration_input(value: object) -> object:
    """Go duration strings only; a bare `0` is allowed (upstream's docs write `timeout: 0`).

    Other bare numbers are refused: Go would read `timeout: 5` as 5 nanoseconds, which is never
    what the author meant.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return timedelta(0)
    raise ValueError('must be a duration such as "30s", "1h30m" or "500ms"')


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be > 0")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must be >= 0")
    return value


_DurationBase = Annotated[
    timedelta,
    BeforeValidator(_duration_input),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
PositiveDuration = Annotated[_DurationBase, AfterValidator(_positive)]
NonNegativeDuration = Annotated[_DurationBase, AfterValidator(_not_negative)]


class ListenAddress(NamedTuple):
    """Where a server listens. An empty host means every interface (`:8080`, as Go writes it)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """`HOST:PORT`, `[IPV6]:PORT` or `:PORT`; raises ValueError naming the input."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f'must be HOST:PORT (e.g. "0.0.0.0:8080"), got {text!r}')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 host must be written in brackets ([::1]:8080), got {text!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {text!r}")
    return ListenAddress(host, int(port_text))


def _listen_input(value: object) -> object:
    if isinstance(value, ListenAddress):
        return value
    if isinstance(value, str):
        return parse_listen(value)
    raise ValueError(f'must be HOST:PORT (e.g. "0.0.0.0:8080"), got {value!r}')


Listen = Annotated[
    ListenAddress,
    BeforeValidator(_listen_input),
    PlainSerializer(str, return_type=str, when_used="json"),
]


def _existing_file(value: Path) -> Path:
    if not value.is_file():
        raise ValueError(f"file not found: {value}")
    return value


ExistingFile = Annotated[Path, AfterValidator(_existing_file)]

_HOST_RE = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d+)?$"
)


def _check_hosts(mapping: dict[str, Any]) -> None:
    """Map keys must be registry hosts as the normalised image reference spells them."""
    for host in mapping:
        if not _HOST_RE.match(host):
            raise FieldIssue(
                host,
                "must be a registry host as written in image references "
                '(e.g. "quay.io", "registry:5000"), without scheme or path',
            )
        if host in ("index.docker.io", "registry-1.docker.io"):
            # Normalised references call Docker Hub "docker.io": this key would never match.
            raise FieldIssue(host, 'write "docker.io": image references name Docker Hub that way')


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )


# --- upstream keys -----------------------------------------------------------------------------


class StaleMirrorCleanup(_Model):
    """Background clearing of a mirror found missing at admission (upstream §1.8)."""

    max_concurrent: int = Field(default=10, ge=0)
    timeout: PositiveDuration = timedelta(seconds=5)


class ActiveCheck(_Model):
    """The webhook's availability probe of each candidate image."""

    timeout: PositiveDuration = timedelta(seconds=1)
    resolve_digest: bool = False
    stale_mirror_cleanup: StaleMirrorCleanup = StaleMirrorCleanup()


class Routing(_Model):
    active_check: ActiveCheck = ActiveCheck()
    rewrite_on_never_image_pull_policy: bool = False
    honor_priorities_on_always_image_pull_policy: bool = False


class PlatformConfig(_Model):
    """One platform to keep when mirroring a multi-platform image; empty os/variant match any."""

    os: str = ""
    architecture: str
    variant: str = ""

    @field_validator("architecture")
    @classmethod
    def _architecture_required(cls, value: str) -> str:
        if not value:
            raise ValueError("is required")
        return value


class Mirroring(_Model):
    platforms: list[PlatformConfig] = Field(
        default_factory=lambda: [PlatformConfig(architecture="amd64")], min_length=1
    )
    # kuik: a cap on concurrent copies per registry across every replicator replica (issue 9).
    max_concurrent_per_registry: int = Field(default=4, gt=0)
    # kuik: concurrent copies per replicator process (`--workers`).
    workers: int = Field(default=4, gt=0)
    # kuik (replicator): full re-plan period besides change-driven planning.
    resync_interval: PositiveDuration = timedelta(minutes=1)
    # kuik (replicator): a copy not heartbeating for this long is reclaimed by another worker.
    job_timeout: PositiveDuration = timedelta(seconds=60)
    # kuik (replicator): leader lease; a dead leader is replaced within it.
    leader_ttl: PositiveDuration = Field(default=timedelta(seconds=15), alias="leaderTTL")
    # kuik (replicator): images of Pods younger than this are copied on the expedite lane.
    expedite_window: PositiveDuration = timedelta(minutes=5)


class CredentialSecretRef(_Model):
    """A `kubernetes.io/dockerconfigjson` Secret; the config is cluster-wide, so both are needed."""

    name: str = Field(min_length=1)
    namespace: str = Field(min_length=1)


def _method_input(value: object) -> object:
    """HEAD or GET, any case (upstream panics at check time on anything else, Appendix B #8)."""
    if isinstance(value, str) and value.upper() in ("HEAD", "GET"):
        return value.upper()
    raise ValueError(f'must be "HEAD" or "GET", got {value!r}')


Method = Annotated[str, BeforeValidator(_method_input)]


class RegistryMonitoring(_Model):
    """Monitoring budget and probe settings of one registry (the merged, effective values)."""

    method: Method = "HEAD"
    interval: PositiveDuration = timedelta(hours=3)
    max_per_interval: int = Field(default=25, gt=0)
    timeout: NonNegativeDuration = timedelta(0)
    # Three states, like upstream's *bool: None inherits (and means disabled), False opts out.
    resolve_digest: bool | None = None
    fallback_credential_secret: CredentialSecretRef | None = None

    @property
    def resolve_digest_enabled(self) -> bool:
        return self.resolve_digest is True

    @property
    def tick(self) -> timedelta:
        """Time between two checks of this registry: `interval / maxPerInterval`."""
        return self.interval / self.max_per_interval


class RegistryMonitoringOverride(_Model):
    """`monitoring.registries.items.<host>`: a field left out inherits `default`'s value."""

    method: Method | None = None
    interval: PositiveDuration | None = None
    max_per_interval: int | None = Field(default=None, gt=0)
    timeout: NonNegativeDuration | None = None
    resolve_digest: bool | None = None
    fallback_credential_secret: CredentialSecretRef | None = None


def _default_items() -> dict[str, RegistryMonitoringOverride]:
    # Docker Hub's anonymous pull limits: upstream ships this override.
    return {
        "docker.io": RegistryMonitoringOverride(interval=timedelta(hours=1), max_per_interval=6)
    }


class Registries(_Model):
    default: RegistryMonitoring = RegistryMonitoring()
    items: dict[str, RegistryMonitoringOverride] = Field(default_factory=_default_items)

    @field_validator("items")
    @classmethod
    def _hosts(
        cls, value: dict[str, RegistryMonitoringOverride]
    ) -> dict[str, RegistryMonitoringOverride]:
        _check_hosts(value)
        return value


class Monitoring(_Model):
    registries: Registries = Registries()

    def registry_config(self, host: str) -> RegistryMonitoring:
        """`default`, overridden field by field by `items[host]` (upstream's registryConfig)."""
        base = self.registries.default
        override = self.registries.items.get(host)
        if override is None:
            return base
        update = {
            name: value
            for name in RegistryMonitoringOverride.model_fields
            if (value := getattr(override, name)) is not None
        }
        return base.model_copy(update=update)


_BUCKET_TYPES = ("exponential", "exponentialRange", "custom", "disabled")


def exponential_buckets(start: float, factor: float, count: int) -> list[float]:
    """Prometheus client_golang's ExponentialBuckets."""
    buckets = []
    value = start
    for _ in range(count):
        buckets.append(value)
        value *= factor
    return buckets


def exponential_buckets_range(low: float, high: float, count: int) -> list[float]:
    """Prometheus client_golang's ExponentialBucketsRange: `count` buckets from low to high."""
    if count == 1:
        return [low]
    growth = math.pow(high / low, 1.0 / (count - 1))
    return [low * math.pow(growth, i) for i in range(count)]


class LegacyHistogram(_Model):
    """Classic buckets of the last-monitor-age histogram; `bucketType` picks the fields read."""

    bucket_type: Literal["", "exponential", "exponentialRange", "custom", "disabled"] = ""
    count: int = 12
    start: float = 1.0
    factor: float = 1.94
    min: float = 1.0
    max: float = 1440.0
    custom: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 360.0, 720.0, 1440.0]
    )

    @field_validator("bucket_type", mode="before")
    @classmethod
    def _known_type(cls, value: object) -> object:
        if value not in ("", *_BUCKET_TYPES):
            raise ValueError(
                "must be one of " + ", ".join(f'"{t}"' for t in _BUCKET_TYPES) + f", got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LegacyHistogram:
        kind = self.bucket_type or "exponential"
        if kind == "exponential":
            if self.start <= 0:
                raise FieldIssue("start", "must be > 0 when bucketType is exponential")
            if self.factor <= 1:
                raise FieldIssue("factor", "must be > 1 when bucketType is exponential")
        if kind in ("exponential", "exponentialRange") and self.count < 1:
            raise FieldIssue("count", f"must be >= 1 when bucketType is {kind}")
        if kind == "exponentialRange":
            if self.min <= 0:
                raise FieldIssue("min", "must be > 0 when bucketType is exponentialRange")
            if self.max <= self.min:
                raise FieldIssue("max", "must be > min when bucketType is exponentialRange")
        if kind == "custom":
            if not self.custom:
                raise FieldIssue("custom", "must contain at least one bucket boundary")
            for i in range(1, len(self.custom)):
                if self.custom[i] <= self.custom[i - 1]:
                    raise FieldIssue(("custom", i), "must be greater than the previous boundary")
        return self

    @property
    def enabled(self) -> bool:
        return self.bucket_type != "disabled"

    def buckets(self) -> list[float] | None:
        """The bucket upper bounds, or None when legacy buckets are disabled."""
        kind = self.bucket_type or "exponential"
        if kind == "exponential":
            return exponential_buckets(self.start, self.factor, self.count)
        if kind == "exponentialRange":
            return exponential_buckets_range(self.min, self.max, self.count)
        if kind == "custom":
            return list(self.custom)
        return None


class HistogramConfig(_Model):
    """Native-histogram parameters plus the classic buckets (upstream `HistogramConfig`)."""

    bucket_factor: float = 1.1
    zero_threshold: float = 1.0
    max_bucket_number: int = Field(default=20, ge=0, le=2**32 - 1)
    legacy: LegacyHistogram = LegacyHistogram()


class Metrics(_Model):
    image_last_monitor_age_minutes: HistogramConfig = HistogramConfig()
    # kuik: where /metrics, /healthz, /readyz (and the monitor's /status/images) are served.
    listen: Listen = ListenAddress("0.0.0.0", 8080)
    # kuik (upstream's --metrics-secure): /metrics and /status/images only for a bearer token
    # the API server accepts (TokenReview) whose user may get that path
    # (SubjectAccessReview); /healthz and /readyz stay open for the kubelet.
    secure: bool = False
    # how long one token's answer for one path is reused
    auth_cache_ttl: PositiveDuration = timedelta(seconds=10)


# --- kuik's own keys ---------------------------------------------------------------------------

_CLUSTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Redis(_Model):
    """The coordination store. No URL: services that can run without Redis do so.

    Everything else about the connection (TLS options, Sentinel, timeouts) is written in the URL,
    which `kuikcore.redis_url` parses; the separate keys exist so secrets can come from their own
    environment variables and a CA bundle from a mounted file.
    """

    url: str | None = None
    key_prefix: str = Field(default="kuik:", min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    ca_file: ExistingFile | None = None

    @field_validator("url")
    @classmethod
    def _parseable(cls, value: str | None) -> str | None:
        if value is not None:
            parse_redis_url(value)  # InvalidRedisURL: its message never holds the password
        return value


CloudAuthKind = Literal["ecr", "gcp", "azure", "auto"]


class RegistryTLSConfig(_Model):
    """How kuik reaches one registry host (beyond upstream, which has no such setting).

    `cloudAuth` opts the host into tokens from the service's cloud workload identity
    (`kuikcore.registry.cloud`); `auto` reads the cloud from the host name, an explicit kind
    serves private endpoints and hosts named otherwise. `region` and `registryId` are ECR's.
    """

    insecure: bool = False
    skip_verify: bool = False
    ca_file: ExistingFile | None = None
    cloud_auth: CloudAuthKind | None = None
    region: str | None = None
    registry_id: str | None = Field(default=None, alias="registryID")

    @model_validator(mode="after")
    def _coherent(self) -> RegistryTLSConfig:
        for name, value in (("region", self.region), ("registryID", self.registry_id)):
            if value is not None and self.cloud_auth not in ("ecr", "auto"):
                raise FieldIssue(name, "is an ECR setting: it needs cloudAuth: ecr (or auto)")
        if self.insecure and (self.skip_verify or self.ca_file is not None):
            field = "skipVerify" if self.skip_verify else "caFile"
            raise FieldIssue(field, "applies to HTTPS only, but insecure: true selects plain HTTP")
        if self.skip_verify and self.ca_file is not None:
            raise FieldIssue("caFile", "is never used when skipVerify: true")
        return self


class RegistryHealth(_Model):
    """Probing of every registry host that routing may pick (kuik; upstream relies on a 1 s cache).

    One prober cluster-wide (a Redis lease) sends `GET /v2/` to each host every `probeInterval`;
    a host is down at its first failed probe (or failed connection anywhere) or second timeout in a
    row, and up again after `upAfter` consecutive answers. Knowledge not confirmed within `4 x probeInterval +
    probeTimeout` is treated as unknown."""

    probe_interval: PositiveDuration = timedelta(milliseconds=500)
    probe_timeout: PositiveDuration = timedelta(milliseconds=500)
    up_after: int = Field(default=2, ge=1, le=100)
    # hosts probed at most (the least recently wanted are dropped first)
    max_hosts: int = Field(default=512, ge=1, le=10_000)
    # a host no service has wanted for this long is no longer probed
    forget_after: PositiveDuration = timedelta(hours=1)


class RerouteEvents(_Model):
    """The `Rerouted` Event on each Pod the webhook rerouted, written by the replicator's leader
    once the Pod exists (the webhook never knows the Pod's name and UID at admission).

    Bounded so a 1,000-replica rollout is not 1,000 Events: Pods of one workload rerouted the
    same way within `window` share one Event (on the first Pod; its note says so),
    and at most `perSecond` Events leave per second cluster-wide (`burst` at once); what the
    bounds hold back is counted (`kube_image_keeper_replicator_reroute_events_total{result}`), never queued."""

    enabled: bool = True
    per_second: float = Field(default=5.0, gt=0, le=1000)
    burst: int = Field(default=20, ge=1, le=10_000)
    # also: Pods first seen older than this (a restart, a new leader) get no Event
    window: PositiveDuration = timedelta(minutes=10)


class Webhook(_Model):
    """The admission endpoint's HTTPS listener (`kuik-webhook --listen/--tls-cert/--tls-key`)."""

    listen: Listen = ListenAddress("0.0.0.0", 9443)
    tls_cert: ExistingFile | None = None
    tls_key: ExistingFile | None = None
    # Every admission is answered within this, whatever the registries do (keep it below the
    # MutatingWebhookConfiguration's timeoutSeconds, so a slow check never makes the API server
    # give up on the webhook).
    deadline: PositiveDuration = timedelta(seconds=3)
    # How long the webhook trusts its own availability results (upstream: 1s, no credentials).
    cache_ttl: PositiveDuration = Field(default=timedelta(seconds=5), alias="cacheTTL")
    # kuik: `audit` decides for every Pod and patches none (logged and counted); a Namespace
    # label `kuik.enix.io/mode` overrides it per namespace (kuikcore.mode).
    mode: Mode = Mode.ENFORCE

    @model_validator(mode="after")
    def _pair(self) -> Webhook:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tlsKey" if self.tls_key is None else "tlsCert"
            raise FieldIssue(missing, "is required when tlsCert or tlsKey is set")
        return self


def _check_cluster(value: str) -> str:
    if value == "kubernetes":
        return value
    if value.startswith("dir:") and len(value) > len("dir:"):
        return value
    raise ValueError(f'must be "kubernetes" or "dir:PATH", got {value!r}')


class Config(_Model):
    """The whole operator config. `Config()` is the built-in defaults."""

    skip_labels: list[str] = Field(default_factory=list)
    skip_annotations: list[str] = Field(default_factory=list)
    routing: Routing = Routing()
    mirroring: Mirroring = Mirroring()
    monitoring: Monitoring = Monitoring()
    metrics: Metrics = Metrics()
    redis: Redis = Redis()
    cluster: Annotated[str, AfterValidator(_check_cluster)] = "kubernetes"
    cluster_id: str | None = Field(default=None, alias="clusterID")
    registries: dict[str, RegistryTLSConfig] = Field(default_factory=dict)
    registry_health: RegistryHealth = RegistryHealth()
    reroute_events: RerouteEvents = RerouteEvents()
    webhook: Webhook = Webhook()

    @field_validator("skip_labels", "skip_annotations")
    @classmethod
    def _selectors(cls, value: list[str]) -> list[str]:
        """Upstream refuses to start on a bad skip selector; so do we, naming the item."""
        for i, text in enumerate(value):
            try:
                parse_selector(text)
            except InvalidSelector as exc:
                raise FieldIssue(i, str(exc)) from None
        return value

    @field_validator("cluster_id")
    @classmethod
    def _cluster_id(cls, value: str | None) -> str | None:
        if value is not None and not _CLUSTER_ID_RE.match(value):
            raise ValueError(
                "must be 1-128 characters of letters, digits, '.', '_' or '-', "
                f"starting with a letter or digit, got {value!r}"
            )
        return value

    @field_validator("registries")
    @classmethod
    def _registry_hosts(cls, value: dict[str, RegistryTLSConfig]) -> dict[str, RegistryTLSConfig]:
        _check_hosts(value)
        return value

    def registry_tls(self, host: str) -> RegistryTLSConfig:
        """TLS settings for a registry host; hosts without an entry get the defaults (verify)."""
        return self.registries.get(host) or RegistryTLSConfig()
