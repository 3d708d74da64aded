"""Observability shared by every kuik process: logging, secret redaction, metrics, health server."""

from kuikcore.observe.authz import Authorizer, Denial, KubernetesAuthorizer
from kuikcore.observe.health import HealthServer, ReadinessCheck, ReadinessResult, serve_app
from kuikcore.observe.labels import MAX_HOST_LABELS, OTHER, HostLabels, closed, object_name
from kuikcore.observe.logs import LOG_LEVELS, HotLogger, LogLine, configure_logging, get_logger
from kuikcore.observe.metrics import NAMESPACE, build_info, metrics_registry
from kuikcore.observe.redact import REDACTED, is_sensitive_key, redact, redact_event, redact_text

__all__ = [
    "LOG_LEVELS",
    "MAX_HOST_LABELS",
    "NAMESPACE",
    "OTHER",
    "REDACTED",
    "Authorizer",
    "Denial",
    "HealthServer",
    "HostLabels",
    "HotLogger",
    "KubernetesAuthorizer",
    "LogLine",
    "ReadinessCheck",
    "ReadinessResult",
    "build_info",
    "closed",
    "configure_logging",
    "get_logger",
    "is_sensitive_key",
    "metrics_registry",
    "object_name",
    "redact",
    "redact_event",
    "redact_text",
    "serve_app",
]
