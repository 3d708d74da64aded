"""kuikcore.config: upstream defaults, merge rules, Go durations, error messages, overrides."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuikcore.config import (
    ENV_OVERRIDES,
    Config,
    ConfigError,
    CredentialSecretRef,
    InvalidDuration,
    LegacyHistogram,
    ListenAddress,
    Override,
    PlatformConfig,
    exponential_buckets,
    exponential_buckets_range,
    format_duration,
    format_duration_ns,
    load_config,
    parse_duration,
    parse_duration_ns,
    parse_listen,
)

NS = 1
US = 1000
MS = 1000 * US
S = 1000 * MS
M = 60 * S
H = 60 * M


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str, **kwargs: object) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


# --- defaults ------------------------------------------------------------------------------------


def test_every_upstream_default() -> None:
    c = load_config(None, env={})
    assert c.skip_labels == []
    assert c.skip_annotations == []
    assert c.routing.active_check.timeout == timedelta(seconds=1)
    assert c.routing.active_check.resolve_digest is False
    assert c.routing.active_check.stale_mirror_cleanup.max_concurrent == 10
    assert c.routing.active_check.stale_mirror_cleanup.timeout == timedelta(seconds=5)
    assert c.routing.rewrite_on_never_image_pull_policy is False
    assert c.routing.honor_priorities_on_always_image_pull_policy is False
    assert c.mirroring.platforms == [PlatformConfig(architecture="amd64")]
    assert (c.mirroring.platforms[0].os, c.mirroring.platforms[0].variant) == ("", "")
    default = c.monitoring.registries.default
    assert default.method == "HEAD"
    assert default.interval == timedelta(hours=3)
    assert default.max_per_interval == 25
    assert default.timeout == timedelta(0)
    assert default.resolve_digest is None
    assert default.resolve_digest_enabled is False
    assert default.fallback_credential_secret is None
    assert set(c.monitoring.registries.items) == {"docker.io"}
    hub = c.monitoring.registries.items["docker.io"]
    assert (hub.interval, hub.max_per_interval) == (timedelta(hours=1), 6)
    assert (hub.method, hub.timeout, hub.resolve_digest, hub.fallback_credential_secret) == (
        None,
        None,
        None,
        None,
    )
    histogram = c.metrics.image_last_monitor_age_minutes
    assert (histogram.bucket_factor, histogram.zero_threshold, histogram.max_bucket_number) == (
        1.1,
        1.0,
        20,
    )
    legacy = histogram.legacy
    assert legacy.bucket_type == ""
    assert (legacy.start, legacy.factor, legacy.count) == (1, 1.94, 12)
    assert (legacy.min, legacy.max) == (1, 1440)
    assert legacy.custom == [1, 5, 10, 30, 60, 120, 180, 360, 720, 1440]
    assert legacy.enabled


def test_every_kuik_default() -> None:
    c = load_config(None, env={})
    assert c.redis.url is None
    assert c.redis.key_prefix == "kuik:"
    assert (c.redis.username, c.redis.password, c.redis.ca_file) == (None, None, None)
    assert c.cluster == "kubernetes"
    assert c.cluster_id is None
    assert c.registries == {}
    assert c.mirroring.max_concurrent_per_registry == 4
    assert c.mirroring.workers == 4
    assert c.metrics.listen == ListenAddress("0.0.0.0", 8080)
    assert c.webhook.listen == ListenAddress("0.0.0.0", 9443)
    assert (c.webhook.tls_cert, c.webhook.tls_key) == (None, None)


def test_missing_and_empty_files_mean_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.yaml", env={}) == Config()
    assert load_config(write(tmp_path, ""), env={}) == Config()
    assert load_config(write(tmp_path, "# only a comment\n"), env={}) == Config()


def test_defaults_round_trip_through_yaml_keys() -> None:
    dumped = Config().model_dump(mode="json")
    assert dumped["routing"]["activeCheck"]["timeout"] == "1s"
    assert dumped["monitoring"]["registries"]["default"]["interval"] == "3h0m0s"
    assert dumped["clusterID"] is None
    assert Config.model_validate(dumped) == Config()


def test_full_upstream_example_loads(tmp_path: Path) -> None:
    """The complete example of upstream's docs/configuration.md, verbatim in substance."""
    c = load_config(
        write(
            tmp_path,
            """
            skipLabels: []
            skipAnnotations: []
            routing:
              activeCheck:
                timeout: 1s
                resolveDigest: false
                staleMirrorCleanup:
                  maxConcurrent: 10
                  timeout: 5s
              rewriteOnNeverImagePullPolicy: false
              honorPrioritiesOnAlwaysImagePullPolicy: false
            mirroring:
              platforms:
                - architecture: amd64
            monitoring:
              registries:
                default:
                  method: HEAD
                  interval: 3h
                  maxPerInterval: 25
                  resolveDigest: false
                items:
                  docker.io:
                    interval: 1h
                    maxPerInterval: 6
            metrics:
              imageLastMonitorAgeMinutes:
                bucketFactor: 1.1
                zeroThreshold: 1.0
                maxBucketNumber: 20
                legacy:
                  bucketType: exponential
                  count: 12
                  start: 1
                  factor: 1.94
            """,
        ),
        env={},
    )
    assert c.monitoring.registries.default.resolve_digest is False
    assert c.metrics.image_last_monitor_age_minutes.legacy.bucket_type == "exponential"


# --- merge rules ---------------------------------------------------------------------------------


def test_items_merge_with_the_builtin_docker_hub_entry(tmp_path: Path) -> None:
    """koanf merges maps key by key: adding a host keeps docker.io's override."""
    c = load_config(
        write(
            tmp_path,
            """
            monitoring:
              registries:
                items:
                  quay.io:
                    maxPerInterval: 50
            """,
        ),
        env={},
    )
    assert set(c.monitoring.registries.items) == {"docker.io", "quay.io"}
    assert c.monitoring.registry_config("docker.io").max_per_interval == 6
    assert c.monitoring.registry_config("quay.io").max_per_interval == 50
    assert c.monitoring.registry_config("quay.io").interval == timedelta(hours=3)


def test_setting_one_field_of_docker_hub_keeps_the_others(tmp_path: Path) -> None:
    c = load_config(
        write(
            tmp_path,
            """
            monitoring:
              registries:
                items:
                  docker.io:
                    timeout: 5s
            """,
        ),
        env={},
    )
    hub = c.monitoring.registry_config("docker.io")
    assert (hub.interval, hub.max_per_interval, hub.timeout) == (
        timedelta(hours=1),
        6,
        timedelta(seconds=5),
    )


def test_lists_are_replaced_not_merged(tmp_path: Path) -> None:
    c = load_config(
        write(
            tmp_path,
            """
            mirroring:
              platforms:
                - os: linux
                  architecture: arm64
                  variant: v8
            """,
        ),
        env={},
    )
    assert c.mirroring.platforms == [PlatformConfig(os="linux", architecture="arm64", variant="v8")]


def test_empty_value_means_unset(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "routing:\nmonitoring:\n  registries:\n"), env={})
    assert c == Config()


def test_registry_config_overrides_field_by_field(tmp_path: Path) -> None:
    c = load_config(
        write(
            tmp_path,
            """
            monitoring:
              registries:
                default:
                  method: GET
                  timeout: 10s
                  fallbackCredentialSecret: {name: fallback, namespace: kuik-system}
                items:
                  registry.example.com:
                    interval: 30m
                    fallbackCredentialSecret: {name: internal, namespace: ops}
            """,
        ),
        env={},
    )
    merged = c.monitoring.registry_config("registry.example.com")
    assert merged.method == "GET"
    assert merged.interval == timedelta(minutes=30)
    assert merged.max_per_interval == 25
    assert merged.timeout == timedelta(seconds=10)
    assert merged.fallback_credential_secret == CredentialSecretRef(
        name="internal", namespace="ops"
    )
    assert merged.tick == timedelta(minutes=30) / 25
    other = c.monitoring.registry_config("ghcr.io")
    assert other == c.monitoring.registries.default
    assert other.fallback_credential_secret == CredentialSecretRef(
        name="fallback", namespace="kuik-system"
    )


def test_an_explicit_zero_timeout_in_items_means_no_timeout(tmp_path: Path) -> None:
    """Deliberate difference from upstream, where a zero value in items inherits the default."""
    c = load_config(
        write(
            tmp_path,
            """
            monitoring:
              registries:
                default: {timeout: 5s}
                items:
                  quay.io: {timeout: 0}
            """,
        ),
        env={},
    )
    assert c.monitoring.registry_config("quay.io").timeout == timedelta(0)


@pytest.mark.parametrize(
    ("default_flag", "override_flag", "expected"),
    [
        (None, "absent", False),  # no override, unset default is disabled
        (True, "absent", True),  # no override inherits enabled default
        (True, None, True),  # unset override inherits enabled default
        (True, False, False),  # explicit false overrides enabled default
        (None, True, True),  # explicit true overrides unset default
        (False, True, True),  # explicit true overrides disabled default
    ],
)
def test_resolve_digest_is_three_state(
    default_flag: bool | None, override_flag: bool | str | None, expected: bool
) -> None:
    """Upstream's TestRegistryConfigResolveDigest table."""
    default: dict[str, object] = {}
    if default_flag is not None:
        default["resolveDigest"] = default_flag
    items: dict[str, object] = {}
    if override_flag != "absent":
        items["registry.example.com"] = (
            {} if override_flag is None else {"resolveDigest": override_flag}
        )
    c = Config.model_validate({"monitoring": {"registries": {"default": default, "items": items}}})
    merged = c.monitoring.registry_config("registry.example.com")
    assert merged.resolve_digest_enabled is expected
    assert (merged.method, merged.max_per_interval) == ("HEAD", 25)


def test_registry_tls_lookup(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    c = load_config(
        write(
            tmp_path,
            f"""
            registries:
              registry.local:5000: {{insecure: true}}
              "[::1]:5000": {{skipVerify: true}}
              harbor.example.com: {{caFile: {ca}}}
            """,
        ),
        env={},
    )
    assert c.registry_tls("registry.local:5000").insecure is True
    assert c.registry_tls("[::1]:5000").skip_verify is True
    assert c.registry_tls("harbor.example.com").ca_file == ca
    unknown = c.registry_tls("quay.io")
    assert (unknown.insecure, unknown.skip_verify, unknown.ca_file) == (False, False, None)


def test_method_is_case_insensitive(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "monitoring: {registries: {default: {method: get}}}"), env={})
    assert c.monitoring.registries.default.method == "GET"


# --- legacy histogram buckets --------------------------------------------------------------------


def test_default_legacy_buckets_match_prometheus_exponential_buckets() -> None:
    buckets = Config().metrics.image_last_monitor_age_minutes.legacy.buckets()
    assert buckets is not None
    assert len(buckets) == 12
    assert buckets[0] == 1
    assert buckets[1] == pytest.approx(1.94)
    assert buckets[-1] == pytest.approx(1.94**11)


def test_bucket_helpers() -> None:
    assert exponential_buckets(1, 2, 4) == [1, 2, 4, 8]
    assert exponential_buckets_range(1, 1000, 4) == pytest.approx([1, 10, 100, 1000])
    assert exponential_buckets_range(5, 50, 1) == [5]


def test_legacy_bucket_types(tmp_path: Path) -> None:
    def legacy(body: str) -> LegacyHistogram:
        c = load_config(
            write(tmp_path, f"metrics: {{imageLastMonitorAgeMinutes: {{legacy: {body}}}}}"),
            env={},
        )
        return c.metrics.image_last_monitor_age_minutes.legacy

    ranged = legacy("{bucketType: exponentialRange, min: 1, max: 1000, count: 4}")
    assert ranged.buckets() == pytest.approx([1, 10, 100, 1000])
    custom = legacy("{bucketType: custom, custom: [1, 15, 60]}")
    assert custom.buckets() == [1, 15, 60]
    disabled = legacy("{bucketType: disabled, start: -5}")
    assert disabled.buckets() is None
    assert disabled.enabled is False


# --- validation errors, literally ----------------------------------------------------------------

_LEGACY = "metrics.imageLastMonitorAgeMinutes.legacy"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "monitoring: {registries: {default: {maxPerInterval: 0}}}",
            "monitoring.registries.default.maxPerInterval: must be > 0",
        ),
        (
            "monitoring: {registries: {items: {quay.io: {maxPerInterval: -3}}}}",
            "monitoring.registries.items.quay.io.maxPerInterval: must be > 0",
        ),
        (
            "monitoring: {registries: {default: {method: PUT}}}",
            'monitoring.registries.default.method: must be "HEAD" or "GET", got \'PUT\'',
        ),
        (
            "monitoring: {registries: {default: {interval: 0s}}}",
            "monitoring.registries.default.interval: must be > 0",
        ),
        (
            "monitoring: {registries: {default: {timeout: -1s}}}",
            "monitoring.registries.default.timeout: must be >= 0",
        ),
        (
            "monitoring: {registries: {default: {fallbackCredentialSecret: {name: x}}}}",
            "monitoring.registries.default.fallbackCredentialSecret.namespace: is required",
        ),
        (
            "monitoring: {registries: {items: {'https://quay.io': {}}}}",
            "monitoring.registries.items.https://quay.io: must be a registry host as written in "
            'image references (e.g. "quay.io", "registry:5000"), without scheme or path',
        ),
        (
            "registries: {'[::1]/v2': {insecure: true}}",
            "registries.[::1]/v2: must be a registry host as written in image references "
            '(e.g. "quay.io", "registry:5000"), without scheme or path',
        ),
        (
            "monitoring: {registries: {items: {index.docker.io: {maxPerInterval: 3}}}}",
            'monitoring.registries.items.index.docker.io: write "docker.io": image references name '
            "Docker Hub that way",
        ),
        (
            "routing: {activeCheck: {timeout: 1d}}",
            "routing.activeCheck.timeout: invalid duration '1d': unknown unit 'd' (ns, us, ms, s, m, h)",
        ),
        (
            "routing: {activeCheck: {timeout: 5}}",
            'routing.activeCheck.timeout: must be a duration such as "30s", "1h30m" or "500ms"',
        ),
        (
            "routing: {activeCheck: {staleMirrorCleanup: {maxConcurrent: -1}}}",
            "routing.activeCheck.staleMirrorCleanup.maxConcurrent: must be >= 0",
        ),
        (
            "routing: {rewriteOnNeverImagePullPolicy: maybe}",
            "routing.rewriteOnNeverImagePullPolicy: must be true or false, got a string",
        ),
        ("mirroring: {platforms: []}", "mirroring.platforms: must contain at least 1 item"),
        (
            "mirroring: {platforms: [{architecture: amd64}, {os: linux, variant: v8}]}",
            "mirroring.platforms[1].architecture: is required",
        ),
        (
            "mirroring: {platforms: [{architecture: ''}]}",
            "mirroring.platforms[0].architecture: is required",
        ),
        (
            "mirroring: {maxConcurrentPerRegistry: 0}",
            "mirroring.maxConcurrentPerRegistry: must be > 0",
        ),
        ("mirroring: {workers: many}", "mirroring.workers: must be an integer, got a string"),
        (
            "metrics: {imageLastMonitorAgeMinutes: {legacy: {start: 0}}}",
            f"{_LEGACY}.start: must be > 0 when bucketType is exponential",
        ),
        (
            "metrics: {imageLastMonitorAgeMinutes: {legacy: {factor: 1}}}",
            f"{_LEGACY}.factor: must be > 1 when bucketType is exponential",
        ),
        (
            "metrics: {imageLastMonitorAgeMinutes: {legacy: {count: 0}}}",
            f"{_LEGACY}.count: must be >= 1 when bucketType is exponential",
        ),
        (
            "metrics: {imageLastMonitorAgeMinutes: {legacy: {bucketType: exponentialRange, min: 0}}}",
            f"{_LEGACY}.min: must be > 0 when bucketType is exponentialRange",
        ),
        (
            "metrics: {imageLastMonitorAgeMinutes: {legacy: {bucketType: exponentialRange, max: 1}}}",
            f"{_LEGACY}.max: must be > min when bucketType is exponentialRange",
        ),
        (
            "metrics: {imageLastMonitorAgeMinutes: {legacy: {bucketType: exponentialRange, count: 0}}}",
            f"{_LEGACY}.count: must be >= 1 when bucketType is exponentialRange",
        ),
        (
            "metrics: {imageLastMonitorAgeMinutes: {legacy: {bucketType: custom, custom: []}}}",
            f"{_LEGACY}.custom: must contain at least one bucket boundary",
        ),
        (
            "metrics: {imageLastMonitorAgeMinutes: {legacy: {bucketType: custom, custom: [1, 5, 5]}}}",
            f"{_LEGACY}.custom[2]: must be greater than the previous boundary",
        ),
        (
            "metrics: {imageLastMonitorAgeMinutes: {legacy: {bucketType: linear}}}",
            f'{_LEGACY}.bucketType: must be one of "exponential", "exponentialRange", "custom", '
            "\"disabled\", got 'linear'",
        ),
        (
            "metrics: {imageLastMonitorAgeMinutes: {maxBucketNumber: 4294967296}}",
            "metrics.imageLastMonitorAgeMinutes.maxBucketNumber: must be <= 4294967295",
        ),
        (
            "metrics: {listen: 8080}",
            'metrics.listen: must be HOST:PORT (e.g. "0.0.0.0:8080"), got 8080',
        ),
        (
            "metrics: {listen: 'localhost'}",
            "metrics.listen: must be HOST:PORT (e.g. \"0.0.0.0:8080\"), got 'localhost'",
        ),
        (
            "webhook: {listen: '::1:9443'}",
            "webhook.listen: an IPv6 host must be written in brackets ([::1]:8080), got '::1:9443'",
        ),
        (
            "webhook: {listen: '0.0.0.0:99999'}",
            "webhook.listen: port must be a number from 0 to 65535, got '0.0.0.0:99999'",
        ),
        (
            "webhook: {tlsCert: /etc/hostname}",
            "webhook.tlsKey: is required when tlsCert or tlsKey is set",
        ),
        (
            "webhook: {tlsCert: /nonexistent/tls.crt}",
            "webhook.tlsCert: file not found: /nonexistent/tls.crt",
        ),
        (
            "redis: {url: 'http://user:hunter2@redis:6379'}",
            "redis.url: invalid Redis URL 'http://user:***@redis:6379': scheme must be one of "
            "redis, redis+sentinel, rediss, rediss+sentinel, got 'http'",
        ),
        (
            "redis: {url: 'redis://redis:6379?timeout=3'}",
            "redis.url: invalid Redis URL 'redis://redis:6379?timeout=3': unknown query parameter "
            "'timeout'",
        ),
        ("redis: {keyPrefix: ''}", "redis.keyPrefix: must not be empty"),
        ("cluster: k8s", 'cluster: must be "kubernetes" or "dir:PATH", got \'k8s\''),
        (
            "clusterID: 'prod cluster'",
            "clusterID: must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, got 'prod cluster'",
        ),
        (
            "registries: {'registry:5000': {insecure: true, skipVerify: true}}",
            "registries.registry:5000.skipVerify: applies to HTTPS only, but insecure: true "
            "selects plain HTTP",
        ),
        ("skipLabels: app=x", "skipLabels: must be a list, got a string"),
        (
            "skipLabels: ['kube-image-keeper.enix.io/image-caching-policy=ignore', 'a=b=c']",
            "skipLabels[1]: invalid selector 'a=b=c': found '=', expected: ',' or 'end of string'",
        ),
        (
            "skipAnnotations: ['app in (x']",
            "skipAnnotations[0]: invalid selector 'app in (x': found '', expected: ',' or ')'",
        ),
        ("routing: []", "routing: must be a mapping, got a list"),
    ],
)
def test_validation_messages(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text) == expected


def test_the_url_of_a_rejected_redis_setting_is_not_echoed(tmp_path: Path) -> None:
    message = error_of(tmp_path, "redis: {url: 'http://user:hunter2@redis:6379'}")
    assert "hunter2" not in message


def test_several_errors_are_all_reported_sorted(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """
        mirroring: {workers: 0}
        cluster: nowhere
        """,
    )
    assert message == (
        'cluster: must be "kubernetes" or "dir:PATH", got \'nowhere\'; '
        "mirroring.workers: must be > 0"
    )


def test_config_error_carries_structured_issues(tmp_path: Path) -> None:
    path = write(tmp_path, "mirroring: {workers: 0}")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.source == str(path)
    assert [(i.path, i.message) for i in info.value.issues] == [
        ("mirroring.workers", "must be > 0")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("routing: [", "invalid YAML: expected the node content"),
        ("- a\n- b\n", "the top level must be a mapping, got a list"),
        (
            "redis:\n  url: redis://a\n  url: redis://b\n",
            "invalid YAML: duplicate key 'url' at line 3",
        ),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text).startswith(expected)


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the file"):
        load_config(tmp_path, env={})


# --- unknown keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "monitoring: {registries: {default: {maxPerIntervall: 3}}}",
            'monitoring.registries.default.maxPerIntervall: unknown key, did you mean "maxPerInterval"?',
        ),
        (
            "monitoring: {registries: {items: {quay.io: {max_per_interval: 3}}}}",
            'monitoring.registries.items.quay.io.max_per_interval: unknown key, did you mean "maxPerInterval"?',
        ),
        (
            "routing: {activecheck: {}}",
            'routing.activecheck: unknown key, did you mean "activeCheck"?',
        ),
        ("skiplabels: []", 'skiplabels: unknown key, did you mean "skipLabels"?'),
        ("clusterId: a", 'clusterId: unknown key, did you mean "clusterID"?'),
        (
            "mirroring: {platforms: [{architecture: amd64, arch: x}]}",
            'mirroring.platforms[0].arch: unknown key, did you mean "architecture"?',
        ),
        (
            "registries: {quay.io: {insecureSkipVerify: true}}",
            'registries.quay.io.insecureSkipVerify: unknown key, did you mean "skipVerify"?',
        ),
        (
            "routing: {zzz: 1}",
            "routing.zzz: unknown key (valid keys: activeCheck, rewriteOnNeverImagePullPolicy, "
            "honorPrioritiesOnAlwaysImagePullPolicy)",
        ),
    ],
)
def test_unknown_keys_suggest_the_nearest(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text) == expected


# --- environment and command line ----------------------------------------------------------------


def test_env_overrides_kuik_keys(tmp_path: Path) -> None:
    c = load_config(
        tmp_path / "absent.yaml",
        env={
            "KUIK_REDIS_URL": "redis://127.0.0.1:6379/0",
            "KUIK_REDIS_KEY_PREFIX": "test:",
            "KUIK_REDIS_PASSWORD": "s3cret",
            "KUIK_CLUSTER": "dir:/srv/manifests",
            "KUIK_CLUSTER_ID": "prod-1",
            "KUIK_METRICS_LISTEN": ":9090",
            "KUIK_WEBHOOK_LISTEN": "[::]:8443",
            "KUIK_MIRRORING_WORKERS": "8",
            "KUIK_MIRRORING_MAX_CONCURRENT_PER_REGISTRY": "2",
        },
    )
    assert c.redis.url == "redis://127.0.0.1:6379/0"
    assert c.redis.key_prefix == "test:"
    assert c.redis.password is not None
    assert c.redis.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(c)
    assert c.cluster == "dir:/srv/manifests"
    assert c.cluster_id == "prod-1"
    assert c.metrics.listen == ListenAddress("", 9090)
    assert c.webhook.listen == ListenAddress("::", 8443)
    assert str(c.webhook.listen) == "[::]:8443"
    assert (c.mirroring.workers, c.mirroring.max_concurrent_per_registry) == (8, 2)


def test_env_beats_file_and_cli_beats_env(tmp_path: Path) -> None:
    path = write(
        tmp_path, "redis: {url: 'redis://file:6379', keyPrefix: 'file:'}\ncluster: dir:/file"
    )
    env = {"KUIK_REDIS_URL": "redis://env:6379", "KUIK_CLUSTER": "dir:/env"}
    c = load_config(path, env=env, overrides=[Override("cluster", "dir:/cli", "--cluster")])
    assert c.redis.url == "redis://env:6379"
    assert c.redis.key_prefix == "file:"
    assert c.cluster == "dir:/cli"


def test_empty_env_values_are_ignored(tmp_path: Path) -> None:
    c = load_config(None, env={"KUIK_REDIS_URL": "", "KUIK_CLUSTER_ID": ""})
    assert (c.redis.url, c.cluster_id) == (None, None)


def test_errors_name_the_variable_or_option_that_set_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"KUIK_MIRRORING_WORKERS": "zero"})
    assert str(info.value) == (
        "built-in defaults: mirroring.workers (KUIK_MIRRORING_WORKERS): "
        "must be an integer, got a string"
    )
    with pytest.raises(ConfigError) as info:
        load_config(
            None, env={}, overrides=[Override("metrics.listen", "nowhere", "--metrics-listen")]
        )
    assert str(info.value).startswith("built-in defaults: metrics.listen (--metrics-listen): ")
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"KUIK_REDIS_URL": "redis://kuik:hunter2@redis:6379/x"})
    assert str(info.value) == (
        "built-in defaults: redis.url (KUIK_REDIS_URL): invalid Redis URL "
        "'redis://kuik:***@redis:6379/x': database number must be an integer, got 'x'"
    )


def test_every_env_override_names_a_real_key() -> None:
    dumped = Config().model_dump(mode="json")
    for name, path in ENV_OVERRIDES.items():
        assert name == "KUIK_" + "_".join(
            "".join("_" + ch if ch.isupper() else ch for ch in part).upper().lstrip("_")
            for part in path.replace("clusterID", "clusterId").split(".")
        ), name
        node: object = dumped
        *parents, leaf = path.split(".")
        for part in parents:
            assert isinstance(node, dict)
            node = node.get(part) or {}
        assert isinstance(node, dict)
        assert leaf in node, path


def test_default_env_is_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUIK_CLUSTER_ID", "from-env")
    assert load_config(None).cluster_id == "from-env"


# --- Go durations --------------------------------------------------------------------------------

# Go's own table (src/time/time_test.go, parseDurationTests) plus a few of ours.
_GOOD: list[tuple[str, int]] = [
    ("0", 0),
    ("5s", 5 * S),
    ("30s", 30 * S),
    ("1478s", 1478 * S),
    ("-5s", -5 * S),
    ("+5s", 5 * S),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * S),
    ("5.6s", 5 * S + 600 * MS),
    ("5.s", 5 * S),
    (".5s", 500 * MS),
    ("1.0s", 1 * S),
    ("1.00s", 1 * S),
    ("1.004s", 1 * S + 4 * MS),
    ("1.0040s", 1 * S + 4 * MS),
    ("100.00100s", 100 * S + 1 * MS),
    ("10ns", 10 * NS),
    ("11us", 11 * US),
    ("12\u00b5s", 12 * US),
    ("12\u03bcs", 12 * US),
    ("13ms", 13 * MS),
    ("14s", 14 * S),
    ("15m", 15 * M),
    ("16h", 16 * H),
    ("3h30m", 3 * H + 30 * M),
    ("10.5s4m", 4 * M + 10 * S + 500 * MS),
    ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
    ("1h2m3s4ms5us6ns", 1 * H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
    ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
    ("52763797000ns", 52763797000 * NS),
    ("0.3333333333333333333h", 20 * M),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1),
    ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036854ms775us807ns", (1 << 63) - 1),
    ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)),
    ("-2562047h47m16.854775808s", -(1 << 63)),
    ("0.100000000000000000000h", 6 * M),
    ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
    ("1h30m", 90 * M),
    ("500ms", 500 * MS),
    ("1.5h", 90 * M),
]

_BAD = [
    ("", "empty"),
    ("3", "missing unit (ns, us, ms, s, m, h)"),
    ("-", "empty"),
    ("s", "expected a number at 's'"),
    (".", "a dot without digits"),
    ("-.", "a dot without digits"),
    (".s", "a dot without digits"),
    ("+.s", "a dot without digits"),
    ("1d", "unknown unit 'd' (ns, us, ms, s, m, h)"),
    ("1 s", "unknown unit ' s' (ns, us, ms, s, m, h)"),
    (" 1s", "expected a number at ' 1s'"),
    ("1e3s", "unknown unit 'e' (ns, us, ms, s, m, h)"),
    ("1S", "unknown unit 'S' (ns, us, ms, s, m, h)"),
    ("9223372036854775808ns", "out of range"),
    ("9223372036854775.808us", "out of range"),
    ("9223372036854ms775us808ns", "out of range"),
    ("-9223372036854775809ns", "out of range"),
    ("3000000h", "out of range"),
    ("99999999999999999999s", "out of range"),
]


@pytest.mark.parametrize(("text", "ns"), _GOOD)
def test_parse_duration_like_go(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(("text", "reason"), _BAD)
def test_parse_duration_rejects_like_go(text: str, reason: str) -> None:
    with pytest.raises(InvalidDuration) as info:
        parse_duration_ns(text)
    assert str(info.value) == f"invalid duration {text!r}: {reason}"
    assert info.value.input == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1100, "1.1\u00b5s"),
        (2200 * US, "2.2ms"),
        (3300 * MS, "3.3s"),
        (4 * M + 5 * S, "4m5s"),
        (4 * M + 5001 * MS, "4m5.001s"),
        (5 * H + 6 * M + 7001 * MS, "5h6m7.001s"),
        (8 * M + 1, "8m0.000000001s"),
        ((1 << 63) - 1, "2562047h47m16.854775807s"),
        (-(1 << 63), "-2562047h47m16.854775808s"),
        (-5 * S, "-5s"),
        (H, "1h0m0s"),
    ],
)
def test_format_duration_like_go(ns: int, text: str) -> None:
    """Go's Duration.String table (src/time/time_test.go, durationTests)."""
    assert format_duration_ns(ns) == text


def test_timedelta_forms() -> None:
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_duration("1500ns") == timedelta(microseconds=2)  # rounded half to even
    assert parse_duration("2500ns") == timedelta(microseconds=2)
    assert parse_duration("-1s") == timedelta(seconds=-1)
    assert format_duration(timedelta(hours=3)) == "3h0m0s"
    assert format_duration(timedelta(milliseconds=-1500)) == "-1.5s"


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_format_then_parse_is_identity(ns: int) -> None:
    assert parse_duration_ns(format_duration_ns(ns)) == ns


@given(st.timedeltas(min_value=timedelta(days=-100000), max_value=timedelta(days=100000)))
def test_timedelta_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


# --- listen addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "back"),
    [
        ("0.0.0.0:8080", ListenAddress("0.0.0.0", 8080), "0.0.0.0:8080"),
        (":8080", ListenAddress("", 8080), ":8080"),
        ("[::]:9443", ListenAddress("::", 9443), "[::]:9443"),
        ("[::1]:0", ListenAddress("::1", 0), "[::1]:0"),
        ("localhost:80", ListenAddress("localhost", 80), "localhost:80"),
    ],
)
def test_parse_listen(text: str, expected: ListenAddress, back: str) -> None:
    assert parse_listen(text) == expected
    assert str(parse_listen(text)) == back
