"""The operator config file: upstream kuik v2's keys and defaults, kuik's own keys, Go durations.

`load_config(path)` is the one way in; the returned `Config` is immutable. See docs/configuration.md
for every key.
"""

from kuikcore.config.load import ENV_OVERRIDES, ConfigError, ConfigIssue, Override, load_config
from kuikcore.config.model import (
    DEFAULT_CONFIG_PATH,
    ActiveCheck,
    Config,
    CredentialSecretRef,
    HistogramConfig,
    LegacyHistogram,
    ListenAddress,
    Metrics,
    Mirroring,
    Monitoring,
    PlatformConfig,
    Redis,
    RegistryHealth,
    RegistryMonitoring,
    RegistryMonitoringOverride,
    RegistryTLSConfig,
    Routing,
    StaleMirrorCleanup,
    Webhook,
    exponential_buckets,
    exponential_buckets_range,
    parse_listen,
)
from kuikcore.duration import (
    InvalidDuration,
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_OVERRIDES",
    "ActiveCheck",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "CredentialSecretRef",
    "HistogramConfig",
    "InvalidDuration",
    "LegacyHistogram",
    "ListenAddress",
    "Metrics",
    "Mirroring",
    "Monitoring",
    "Override",
    "PlatformConfig",
    "Redis",
    "RegistryHealth",
    "RegistryMonitoring",
    "RegistryMonitoringOverride",
    "RegistryTLSConfig",
    "Routing",
    "StaleMirrorCleanup",
    "Webhook",
    "exponential_buckets",
    "exponential_buckets_range",
    "format_duration",
    "format_duration_ns",
    "load_config",
    "parse_duration",
    "parse_duration_ns",
    "parse_listen",
]
