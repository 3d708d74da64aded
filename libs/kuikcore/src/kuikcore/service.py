"""What the three service commands share: options, config loading, logging, health server, shutdown.

A service is one coroutine, `run(ctx)`, plus the command-line options it adds. This module builds
its click command (`service_command`) and runs it:

1. logging configured first (`--log-level`, `--log-format`), so every later message has one shape;
2. the config loaded with CLI > environment > file > built-in defaults; an invalid config logs
   the file and key path and exits with status 1;
3. the health/metrics server started on `metrics.listen` (a busy port: exit 1);
4. `run(ctx)` started; `/readyz` stays 503 until it calls `ctx.mark_started()`, then reflects the
   readiness checks it registered; its background loops run under `ctx.supervisor`, so one loop's
   failure is logged, counted and restarted instead of ending the process;
5. SIGTERM or SIGINT cancels `run` (again every 0.5 s: a library may lose a cancellation), waits
   up to `STOP_GRACE` seconds, stops the server and exits 0
   (well inside Kubernetes' and the tests' 5 s); a `run` that ignores cancellation, or a second
   Ctrl-C, ends the process at once with status 1. Repeated SIGTERMs are harmless.
`run` returning ends the process with 0, `run` raising with 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import structlog
from prometheus_client import CollectorRegistry

from kuikcore.config import (
    DEFAULT_CONFIG_PATH,
    ENV_OVERRIDES,
    Config,
    ConfigError,
    ConfigIssue,
    Override,
    load_config,
)
from kuikcore.observe import (
    LOG_LEVELS,
    HealthServer,
    KubernetesAuthorizer,
    configure_logging,
    get_logger,
    metrics_registry,
)
from kuikcore.supervise import Supervisor

if TYPE_CHECKING:
    from kuikcore.cluster import ClusterSource
    from kuikcore.coord import Coord

__all__ = [
    "COMMON_OPTIONS",
    "STOP_GRACE",
    "ConfigOption",
    "RunFn",
    "ServiceContext",
    "StartupError",
    "service_command",
]

STOP_GRACE = 4.0  # seconds for run() to unwind after cancellation; the server stop fits in the rest
_SERVER_STOP_TIMEOUT = 0.5
_RECANCEL_PERIOD = 0.5


@dataclass
class ServiceContext:
    """What `run(ctx)` gets: the loaded config and the process's observability handles."""

    service: str
    config: Config
    config_source: str
    metrics: CollectorRegistry
    health: HealthServer
    log: structlog.stdlib.BoundLogger
    supervisor: Supervisor = field(init=False, repr=False)
    _started: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.metrics)

    def mark_started(self) -> None:
        """Say startup is over (readiness checks registered); until then /readyz answers 503."""
        self._started.set()

    @property
    def started(self) -> bool:
        return self._started.is_set()

    def track_cluster(self, cluster: ClusterSource) -> None:
        """`/readyz` says whether the cluster view is ready and, if not, why (a permanent API
        error names the verb and resource); `/metrics` counts failed lists and watches."""
        from kuikcore.cluster.health import ClusterCollector, cluster_ready

        async def ready() -> bool:
            return await cluster_ready(cluster)

        self.health.add_readiness_check("cluster", ready)
        self.metrics.register(ClusterCollector(cluster))

    def connect_coord(self, *, retries: int | None = None) -> Coord:
        """The Redis coordination client from `redis.*`, named after this service.

        No Redis URL is a `StartupError` (one clear log line, exit 1) rather than a failure
        deep inside `run`; a service for which Redis is optional checks `config.redis.url` first.
        """
        redis = self.config.redis
        if not redis.url:
            raise StartupError(
                f"kuik-{self.service} needs Redis: set --redis-url, KUIK_REDIS_URL "
                "or redis.url in the config file"
            )
        from kuikcore.coord import connect  # only services that use Redis pay its import

        return connect(
            redis.url,
            prefix=redis.key_prefix,
            client_name=f"kuik-{self.service}",
            username=redis.username,
            password=redis.password.get_secret_value() if redis.password else None,
            ca_file=str(redis.ca_file) if redis.ca_file else None,
            **({"retries": retries} if retries is not None else {}),
        )


class StartupError(RuntimeError):
    """The service cannot start as configured; the runner logs the message alone and exits 1."""


RunFn = Callable[[ServiceContext], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class ConfigOption:
    """A command-line option that overrides one config key (`--workers` -> `mirroring.workers`)."""

    flag: str
    path: str
    help: str
    type: Any = str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


COMMON_OPTIONS = (
    ConfigOption(
        "--cluster", "cluster", 'Where Pods and CRs come from: "kubernetes" or "dir:PATH".'
    ),
    ConfigOption("--redis-url", "redis.url", "Redis URL (redis://, rediss://, redis+sentinel://)."),
    ConfigOption(
        "--metrics-listen", "metrics.listen", "HOST:PORT for /metrics, /healthz and /readyz."
    ),
)

_ENV_BY_PATH = {path: env for env, path in ENV_OVERRIDES.items()}
_DEFAULTS = Config().model_dump(mode="json")


def _default_of(path: str) -> object:
    node: Any = _DEFAULTS
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _click_option(option: ConfigOption) -> click.Option:
    extras = [f"config: {option.path}"]
    if option.path in _ENV_BY_PATH:
        extras.append(f"env: {_ENV_BY_PATH[option.path]}")
    default = _default_of(option.path)
    if default is not None:
        extras.append(f"default: {default}")
    return click.Option(
        [option.flag, option.dest],
        type=option.type,
        default=None,
        help=f"{option.help} [{'; '.join(extras)}]",
    )


def _base_options() -> list[click.Option]:
    return [
        click.Option(
            ["--config", "config_path"],
            type=click.Path(dir_okay=False, path_type=Path),
            default=DEFAULT_CONFIG_PATH,
            envvar="KUIK_CONFIG",
            show_default=True,
            show_envvar=True,
            help="Operator config file (YAML). A missing file means built-in defaults.",
        ),
        click.Option(
            ["--log-level"],
            type=click.Choice(LOG_LEVELS, case_sensitive=False),
            default="info",
            envvar="KUIK_LOG_LEVEL",
            show_default=True,
            show_envvar=True,
        ),
        click.Option(
            ["--log-format"],
            type=click.Choice(["auto", "json", "console"]),
            default="auto",
            envvar="KUIK_LOG_FORMAT",
            show_default=True,
            show_envvar=True,
            help="auto: JSON lines unless stderr is a terminal.",
        ),
    ]


def service_command(
    service: str,
    run: RunFn,
    *,
    options: Sequence[ConfigOption] = (),
    help: str | None = None,
) -> click.Command:
    """The console-script command of one service (`kuik-<service>`)."""
    config_options = [*COMMON_OPTIONS, *options]

    def callback(config_path: Path, log_level: str, log_format: str, **values: Any) -> None:
        click_ctx = click.get_current_context()
        explicit = (
            click_ctx.get_parameter_source("config_path") != click.core.ParameterSource.DEFAULT
        )
        overrides = [
            Override(opt.path, values[opt.dest], opt.flag)
            for opt in config_options
            if values.get(opt.dest) is not None
        ]
        json = {"auto": None, "json": True, "console": False}[log_format]
        configure_logging(log_level, json, service=service)
        code = _start(service, run, config_path, explicit, overrides)
        sys.exit(code)

    command = click.Command(
        name=f"kuik-{service}",
        callback=callback,
        params=[*_base_options(), *(_click_option(o) for o in config_options)],
        help=help,
    )
    # The distribution's version (kuik-<service>, the name of its pyproject), as `kuik --version`:
    # what is running, asked of the binary itself (an image, a pod) without starting it.
    return click.version_option(package_name=f"kuik-{service}", prog_name=f"kuik-{service}")(
        command
    )


def _check_cloud_auth(config: Config, source: str) -> None:
    """`registries.<host>.cloudAuth` the registry client cannot serve (`auto` on a host of no
    known cloud, ECR without a region) is a configuration error, told at start like any other.
    Imports no cloud SDK: the providers load theirs on first use."""
    from kuikcore.registry.cloud import cloud_auth_from_config

    try:
        cloud_auth_from_config(config.registries)
    except ValueError as exc:
        raise ConfigError(source, [ConfigIssue("", str(exc))]) from None


def _start(
    service: str, run: RunFn, config_path: Path, explicit: bool, overrides: list[Override]
) -> int:
    log = get_logger(f"kuik.{service}")
    if not config_path.exists():
        (log.warning if explicit else log.info)(
            "config file not found, using built-in defaults", path=str(config_path)
        )
    try:
        config = load_config(config_path, overrides=overrides)
        _check_cloud_auth(config, str(config_path))
    except ConfigError as exc:
        log.error("invalid configuration", error=str(exc))
        return 1
    code = asyncio.run(_serve(service, run, config, str(config_path), log))
    # Past this point a late signal must not turn a clean exit into death by signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    return code


async def _serve(
    service: str, run: RunFn, config: Config, source: str, log: structlog.stdlib.BoundLogger
) -> int:
    registry = metrics_registry(service)
    authorizer, auth_client = None, None
    if config.metrics.secure:
        # Lazy: only a secured metrics endpoint needs an API client in every service.
        from kuikcore.cluster.kubernetes import api_client_from_environment

        try:
            auth_client = await api_client_from_environment()
        except Exception as exc:  # no service account, no kubeconfig: cannot check tokens
            log.error("metrics.secure needs Kubernetes API access", error=str(exc))
            return 1
        authorizer = KubernetesAuthorizer(
            auth_client, ttl=config.metrics.auth_cache_ttl.total_seconds()
        )
    try:
        return await _serve_with(service, run, config, source, log, registry, authorizer)
    finally:
        if auth_client is not None:
            await auth_client.close()


async def _serve_with(
    service: str,
    run: RunFn,
    config: Config,
    source: str,
    log: structlog.stdlib.BoundLogger,
    registry: CollectorRegistry,
    authorizer: KubernetesAuthorizer | None,
) -> int:
    health = HealthServer(config.metrics.listen, registry, authorizer=authorizer)
    ctx = ServiceContext(service, config, source, registry, health, log)

    async def started() -> bool:
        return ctx.started

    health.add_readiness_check("startup", started)

    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        # A repeated SIGTERM is common (process-group kill plus a forwarding parent) and changes
        # nothing; a second Ctrl-C means the operator wants out now.
        if stop.is_set() and sig == signal.SIGINT and signal.SIGINT.name in received:
            log.error("second interrupt, exiting now")
            _hard_exit(1)
        received.append(sig.name)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    try:
        await health.start()
    except OSError as exc:
        log.error("cannot listen", address=str(config.metrics.listen), error=str(exc))
        return 1
    log.info(
        "service starting",
        config=source,
        metrics_listen=str(config.metrics.listen),
        metrics_secure=config.metrics.secure,
        cluster=config.cluster,
        redis=config.redis.url,
    )

    task = asyncio.create_task(run(ctx), name=f"kuik-{service}")
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if not task.done():
        log.info("stopping", signal=received[0] if received else None)
        await _cancel(task, STOP_GRACE)
        if not task.done():
            log.error("service did not stop in time, exiting", grace_seconds=STOP_GRACE)
            _hard_exit(1)
    else:
        waiter.cancel()
    failure = None if task.cancelled() else task.exception()
    if isinstance(failure, StartupError):
        log.error("cannot start", error=str(failure))
        code = 1
    elif failure is not None:
        log.error("service failed", exc_info=failure)
        code = 1
    try:
        async with asyncio.timeout(_SERVER_STOP_TIMEOUT):
            await health.stop()
    except TimeoutError:
        log.warning("health server did not stop in time")
    log.info("service stopped", exit_code=code)
    return code


async def _cancel(task: asyncio.Task[None], grace: float) -> None:
    """Cancel `task` and wait up to `grace` seconds, cancelling it again every
    `_RECANCEL_PERIOD`: a cancellation can be lost on the way. Python 3.11's `asyncio.wait_for`,
    which redis-py awaits on every command it sends, returns the result instead of raising when
    the result and the cancellation arrive together, so a SIGTERM landing on a Redis call would
    otherwise leave the service running until the hard exit."""
    deadline = asyncio.get_running_loop().time() + grace
    while not task.done():
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=min(_RECANCEL_PERIOD, remaining))


def _hard_exit(code: int) -> None:
    """Leave now: asyncio.run would otherwise wait forever for a task that ignores cancellation."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(code)
