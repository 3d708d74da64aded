"""Keep secrets out of logs, errors and health output.

Two rules, applied to every log event (and usable on any text or structure):
- a value under a sensitive key (password, token, secret, auth, authorization, dockerconfigjson, ...)
  is replaced whole, however deep it sits in dicts and lists;
- inside any string, credentials in URLs (`redis://user:pass@host`), `Authorization`-style
  `Basic`/`Bearer` values, `password=...`-style pairs and JSON `"auth": "..."` members are masked.
Over-redacting a harmless value costs little; leaking a registry password costs a lot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["REDACTED", "is_sensitive_key", "redact", "redact_event", "redact_text"]

REDACTED = "[REDACTED]"

_SENSITIVE_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "token",
    "secret",
    "authorization",
    "auth",
    "dockerconfigjson",
    "dockercfg",
    "apikey",
    "cookie",
    "credential",
    "privatekey",
)
# Keys that merely *name* a secret (a Secret's name, a token's type) stay readable.
_NAMING_SUFFIXES = ("name", "names", "namespace", "ref", "type", "kind", "count", "path", "file")


def is_sensitive_key(key: object) -> bool:
    """Does a value stored under this key need hiding? (`password`, `.dockerconfigjson`, ...)"""
    if not isinstance(key, str):
        return False
    found = _SENSITIVE_KEYS.get(key)
    if found is None:
        found = _sensitive(key)
        if len(_SENSITIVE_KEYS) < _MAX_CACHED_KEYS:  # log events reuse a few hundred keys
            _SENSITIVE_KEYS[key] = found
    return found


_SENSITIVE_KEYS: dict[str, bool] = {}
_MAX_CACHED_KEYS = 4096


def _sensitive(key: str) -> bool:
    squashed = re.sub(r"[^a-z0-9]", "", key.lower())
    if not any(word in squashed for word in _SENSITIVE_WORDS):
        return False
    return not squashed.endswith(_NAMING_SUFFIXES) or squashed.endswith("secret")


_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")
_AUTH_SCHEME = re.compile(r"(?i)\b(?P<scheme>basic|bearer)\s+[A-Za-z0-9+/=._~-]{4,}")
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>\b[\w.-]*(?:password|passwd|token|secret|apikey)[\w.-]*\s*[=:]\s*)"
    r"(?P<quote>[\"']?)(?P<value>[^\s\"'&,;}]+)"
)
_JSON_MEMBER = re.compile(
    r"(?i)(?P<key>\"(?:auth|password|identitytoken|registrytoken|token|secret)\"\s*:\s*)\"[^\"]*\""
)


def _may_hold_secret(text: str) -> bool:
    """False only when no pattern above can match: each needs `://` or one of these words.

    Substring tests on the lower-cased text are several times faster than one case-insensitive
    regex scan; non-ASCII text (where Unicode case folding could match what `lower()` misses,
    such as `ſ` for `s`) always goes through the patterns."""
    if not text.isascii():
        return True
    low = text.lower()
    return (
        "://" in low
        or "auth" in low
        or "passw" in low
        or "token" in low
        or "secret" in low
        or "basic" in low
        or "bearer" in low
        or "apikey" in low
    )


def redact_text(text: str) -> str:
    """Mask credentials embedded in free text (URLs, auth headers, key=value, JSON members)."""
    if not _may_hold_secret(text):
        return text  # nearly every log value (an image reference, a name) ends here
    if "@" in text and "://" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    if '"' in text:
        text = _JSON_MEMBER.sub(lambda m: f'{m["key"]}"{REDACTED}"', text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['quote']}{REDACTED}", text)


def redact(value: Any, key: object = None) -> Any:
    """A copy of `value` with secrets masked; `key` is the name it is stored under, if any."""
    if key is not None and is_sensitive_key(key) and value not in (None, "", b""):
        return REDACTED
    cls = type(value)  # exact types first: the common log values, without isinstance chains
    if cls is str:
        return redact_text(value)
    if value is None or cls is bool or cls is int or cls is float:
        return value
    if cls is dict:
        return {k: redact(v, k) for k, v in value.items()}
    if cls is list:
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    if isinstance(value, BaseException):
        return redact_text(str(value))
    if type(value).__name__ in ("SecretStr", "SecretBytes"):
        return REDACTED
    if isinstance(value, bool | int | float):
        return value
    # Anything else (URL objects, exceptions' args, custom reprs) is rendered as text anyway.
    return redact_text(str(value))


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every key and every string of the event goes through `redact`."""
    return {k: redact(v, k) for k, v in event_dict.items()}
