"""Keep secrets out of logs, errors and health output.

Two rules, applied to every log event (and usable on any text or structure):
- a value under a sensitive key (password, token, secret, auth, authorization, dockerconfigjson, ...)
  is replaced whole, however deep it sits in dicts and lists;
- inside any string, credentials in URLs (`redis://user:pass@host`), `Authorization`-style
  `Basic`/`Bearer` values, `password=...`-style pairs and JSON `"auth": "..."` members are masked.
Over-redacting a harmless value costs little; leaking a registry password costs a lot.
"""

from __future__ import annotations

import functools
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
    return _sensitive(key)


@functools.lru_cache(maxsize=4096)  # log events reuse a few hundred keys over and over
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


_KEY_VALUE_WORDS = ("passw", "token", "secret", "apikey")
_JSON_MEMBER_WORDS = ("auth", "passw", "token", "secret")


def redact_text(text: str) -> str:
    """Mask credentials embedded in free text (URLs, auth headers, key=value, JSON members).

    Each pattern only runs when the text holds the words it needs (cheap substring tests), so
    the common log value (an image reference, a name) costs a lower-casing, not four regexes."""
    lowered = text.lower()
    if "@" in text and "://" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    if "basic" in lowered or "bearer" in lowered:
        text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    if '"' in text and any(word in lowered for word in _JSON_MEMBER_WORDS):
        text = _JSON_MEMBER.sub(lambda m: f'{m["key"]}"{REDACTED}"', text)
    if any(word in lowered for word in _KEY_VALUE_WORDS):
        text = _KEY_VALUE.sub(lambda m: f"{m['key']}{m['quote']}{REDACTED}", text)
    return text


def redact(value: Any, key: object = None) -> Any:
    """A copy of `value` with secrets masked; `key` is the name it is stored under, if any."""
    if key is not None and is_sensitive_key(key) and value not in (None, "", b""):
        return REDACTED
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
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (URL objects, exceptions' args, custom reprs) is rendered as text anyway.
    return redact_text(str(value))


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every key and every string of the event goes through `redact`."""
    return {k: redact(v, k) for k, v in event_dict.items()}
