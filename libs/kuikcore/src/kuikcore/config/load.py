"""Reading the config: built-in defaults < YAML file < environment < command line, then validation.

Maps are merged key by key and lists replaced, as upstream's koanf loader does: a file that adds
`monitoring.registries.items.quay.io` keeps the built-in `docker.io` entry, and one that sets only
`items.docker.io.timeout` keeps its `interval` and `maxPerInterval`. A key whose value is empty
(`key:` or `key: null`) counts as unset. Unlike upstream, unknown keys are errors (with the nearest
valid key suggested) and so are values that upstream would only trip over at run time.
"""

from __future__ import annotations

import copy
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kuikcore.config.model import Config, FieldIssue

__all__ = ["ENV_OVERRIDES", "ConfigError", "ConfigIssue", "Override", "load_config"]

# Environment variables for kuik's own keys (upstream's keys come from the file only).
ENV_OVERRIDES: dict[str, str] = {
    "KUIK_REDIS_URL": "redis.url",
    "KUIK_REDIS_KEY_PREFIX": "redis.keyPrefix",
    "KUIK_REDIS_USERNAME": "redis.username",
    "KUIK_REDIS_PASSWORD": "redis.password",
    "KUIK_REDIS_CA_FILE": "redis.caFile",
    "KUIK_CLUSTER": "cluster",
    "KUIK_CLUSTER_ID": "clusterID",
    "KUIK_METRICS_LISTEN": "metrics.listen",
    "KUIK_METRICS_SECURE": "metrics.secure",
    "KUIK_WEBHOOK_LISTEN": "webhook.listen",
    "KUIK_WEBHOOK_TLS_CERT": "webhook.tlsCert",
    "KUIK_WEBHOOK_TLS_KEY": "webhook.tlsKey",
    "KUIK_MIRRORING_WORKERS": "mirroring.workers",
    "KUIK_MIRRORING_MAX_CONCURRENT_PER_REGISTRY": "mirroring.maxConcurrentPerRegistry",
}


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One bad key: its dotted path (`mirroring.platforms[0].architecture`) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """The configuration cannot be used. The message names the file and every bad key."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        super().__init__(f"{source}: " + "; ".join(str(issue) for issue in self.issues))


@dataclass(frozen=True, slots=True)
class Override:
    """A value set outside the file: `path` is the dotted camelCase key, `origin` who set it."""

    path: str
    value: object
    origin: str


# --- reading -----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _read_file(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read the file: {exc}")]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {_yaml_reason(exc)}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            source, [ConfigIssue("", f"the top level must be a mapping, got {_kind(data)}")]
        )
    return data


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(exc)


def _kind(value: object) -> str:
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)


# --- merging -----------------------------------------------------------------------------------


def _merge(base: Mapping[str, Any], top: Mapping[Any, Any]) -> dict[Any, Any]:
    """koanf's merge: maps merged recursively, anything else (lists too) replaced; None = unset."""
    merged: dict[Any, Any] = dict(base)
    for key, value in top.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_path(data: dict[str, Any], path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def env_overrides(env: Mapping[str, str]) -> list[Override]:
    """The `KUIK_*` variables that are set and not empty, as overrides."""
    found = []
    for name, path in ENV_OVERRIDES.items():
        raw = env.get(name, "")
        if raw == "":
            continue
        found.append(Override(path, raw, name))
    return found


# --- errors ------------------------------------------------------------------------------------


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class whose keys are valid at `loc` (for unknown-key suggestions)."""
    current: Any = Config
    for part in loc:
        while True:
            origin = typing.get_origin(current)
            if origin in (typing.Union, types.UnionType):
                args = [a for a in typing.get_args(current) if a is not type(None)]
                current = args[0] if len(args) == 1 else None
            elif origin is typing.Annotated:
                current = typing.get_args(current)[0]
            else:
                break
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            field = fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    while typing.get_origin(current) in (typing.Union, types.UnionType, typing.Annotated):
        args = [a for a in typing.get_args(current) if a is not type(None)]
        current = args[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _suggest(key: str, parent: Sequence[str | int]) -> str:
    model = _model_at(parent)
    if model is None:
        return "unknown key"
    valid = [f.alias or n for n, f in model.model_fields.items()]
    squashed = {v.lower(): v for v in valid}
    match = squashed.get(key.replace("_", "").replace("-", "").lower())
    if match is None:
        prefixed = [v for v in valid if len(key) >= 3 and v.lower().startswith(key.lower())]
        close = prefixed or difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        match = close[0] if len(close) == 1 else None
    if match is not None:
        return f'unknown key, did you mean "{match}"?'
    return "unknown key (valid keys: " + ", ".join(valid) + ")"


_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "missing": "is required",
    "invalid_key": "keys must be strings",
}


def _message(error: Any) -> tuple[list[str | int], str]:
    """Our wording for one pydantic error, and any extra path below its location."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        cause = ctx.get("error")
        if isinstance(cause, FieldIssue):
            return list(cause.at), str(cause)
        return [], str(cause) if cause is not None else error["msg"]
    if kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
        if kind.endswith(("_type", "_parsing")):
            message += f", got {_kind(error['input'])}"
        return [], message
    comparisons = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if kind in comparisons:
        bound = next(iter(ctx.values()))
        return [], f"must be {comparisons[kind]} {bound}"
    if kind == "string_too_short":
        return [], "must not be empty"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return [], f"must contain at least {n} item" + ("s" if n != 1 else "")
    if kind == "literal_error":
        return [], f"must be one of {ctx.get('expected')}"
    return [], error["msg"]


def _format_path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text


def _within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _issues(exc: ValidationError, origins: Mapping[str, str]) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if p != "[key]"]
        if error["type"] == "extra_forbidden":
            message = _suggest(str(loc[-1]), loc[:-1])
        else:
            extra, message = _message(error)
            loc += extra
        path = _format_path(loc)
        origin = next((o for p, o in origins.items() if _within(path, p)), None)
        issues.append(ConfigIssue(f"{path} ({origin})" if origin else path, message))
    return sorted(issues, key=lambda issue: issue.path)


# --- entry point -------------------------------------------------------------------------------

_DEFAULTS: dict[str, Any] = Config().model_dump(mode="json", exclude_none=True)


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[Override] = (),
) -> Config:
    """Defaults, then the YAML file at `path` (a missing file adds nothing), then the `KUIK_*`
    environment (`env`, default `os.environ`), then `overrides` (the command line).

    Raises `ConfigError` naming the file (or the variable/option) and each bad key's path.
    """
    source = str(path) if path is not None else "built-in defaults"
    data = copy.deepcopy(_DEFAULTS)
    if path is not None:
        data = _merge(data, _read_file(Path(path)))
    origins: dict[str, str] = {}
    for override in [*env_overrides(os.environ if env is None else env), *overrides]:
        if override.value is None:
            continue
        _set_path(data, override.path, override.value)
        origins[override.path] = override.origin
    try:
        return Config.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ConfigError(source, _issues(exc, origins)) from None
