"""Redis URL parsing: every accepted form, every refusal names its input, secrets never leak."""

from __future__ import annotations

import re

import pytest

from kuikcore.coord import InvalidRedisURL, KeySpace, RedisSettings, parse_redis_url, redact_url


def test_plain_url_defaults() -> None:
    s = parse_redis_url("redis://localhost")
    assert s == RedisSettings(hosts=(("localhost", 6379),))
    assert not s.tls
    assert not s.is_sentinel
    assert s.db == 0


def test_tls_url_with_acl_user_and_custom_ca() -> None:
    s = parse_redis_url("rediss://kuik:p%40ss%3Aword@redis.example:6380/2?ssl_ca_certs=/etc/ca.pem")
    assert s.tls
    assert s.hosts == (("redis.example", 6380),)
    assert s.db == 2
    assert (s.username, s.password, s.ca_file) == ("kuik", "p@ss:word", "/etc/ca.pem")
    assert s.verify
    assert s.check_hostname


def test_password_only_url() -> None:
    s = parse_redis_url("redis://:secret@10.0.0.1")
    assert (s.username, s.password) == (None, "secret")


def test_sentinel_url_with_several_sentinels() -> None:
    s = parse_redis_url(
        "redis+sentinel://:pw@s1:26380,s2,[::1]:26381/mymaster/3?sentinel_password=sp&socket_timeout=0.5"
    )
    assert s.is_sentinel
    assert s.sentinel_service == "mymaster"
    assert s.db == 3
    assert s.hosts == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (s.password, s.sentinel_password, s.socket_timeout) == ("pw", "sp", 0.5)


def test_tls_sentinel_url() -> None:
    s = parse_redis_url("rediss+sentinel://s1/cache?ssl_cert_reqs=none")
    assert s.tls
    assert s.is_sentinel
    assert not s.verify
    assert s.db == 0


def test_ipv6_host() -> None:
    assert parse_redis_url("redis://[::1]:7000").hosts == (("::1", 7000),)


def test_config_overrides_replace_url_parts() -> None:
    s = parse_redis_url("redis://a:b@h").with_overrides(password="c", username=None)
    assert (s.username, s.password) == ("a", "c")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://h", "scheme must be one of"),
        ("h:6379", "scheme must be one of"),
        ("redis://h:notaport", "port must be an integer"),
        ("redis://h:70000", "out of range"),
        ("redis://h/x", "database number must be an integer"),
        ("redis://h/1/2", "unexpected path"),
        ("redis://a,b", "only allowed with redis+sentinel"),
        ("redis+sentinel://s1", "service name"),
        ("redis://h?sslcacerts=x", "unknown query parameter 'sslcacerts'"),
        ("redis://h?ssl_ca_certs=/ca", "need a rediss:// URL"),
        ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs must be"),
        ("redis://h?socket_timeout=-1", "must be positive"),
        ("redis://[::1", "bad IPv6 host"),
        ("redis://", "missing host"),
    ],
)
def test_bad_urls_are_refused_by_name(url: str, reason: str) -> None:
    with pytest.raises(InvalidRedisURL, match=re.escape(reason)) as info:
        parse_redis_url(url)
    assert reason in info.value.reason


def test_passwords_never_appear_in_errors_repr_or_redaction() -> None:
    with pytest.raises(InvalidRedisURL) as info:
        parse_redis_url("redis://user:hunter2@h:bad?sentinel_password=hunter3")
    assert "hunter2" not in str(info.value)
    assert "hunter3" not in str(info.value)
    s = parse_redis_url("redis+sentinel://u:hunter2@s/m?sentinel_password=hunter3")
    assert "hunter" not in repr(s)
    assert s.redacted() == "redis+sentinel://u:***@s:26379/m/0"
    assert redact_url("redis://u:hunter2@h:1/0") == "redis://u:***@h:1/0"
    assert "hunter2" not in redact_url("redis://u:hunter2@h:bad")


def test_key_space_puts_everything_under_the_prefix() -> None:
    keys = KeySpace("kuik-a:")
    built = [
        keys.lane("copies", "routine"),
        keys.delayed("copies", "routine"),
        keys.dead("copies"),
        keys.job("copies", "k"),
        keys.lock("gc:repo"),
        keys.fence("gc:repo"),
        keys.board_image("docker.io/library/nginx:1"),
        keys.board_registry("docker.io"),
        keys.rate("monitoring:docker.io"),
        keys.semaphore("copies:docker.io"),
        keys.usage("c1"),
        keys.usage_clusters(),
    ]
    assert all(k.startswith("kuik-a:") for k in built)
    assert len(set(built)) == len(built)
    with pytest.raises(ValueError, match="whitespace"):
        KeySpace("kuik :")
