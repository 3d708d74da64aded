"""Drop the fields a kuik CR's schema does not know, as the API server does with a structural
CRD schema, for local mode: a manifest with a stray field is kept, its unknown fields removed
and named, where validation alone refuses the whole CR and names only its first unknown field.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from kuikcore.api.crd import openapi_schema
from kuikcore.api.validation import KINDS
from kuikcore.names import API_VERSION

__all__ = ["prune_unknown_fields"]


@functools.cache
def _schema(kind: str) -> dict[str, Any]:
    """The kind's CRD schema, `status` free-form: local mode ignores a status written in a file."""
    schema = openapi_schema(KINDS[kind].model)
    return {**schema, "properties": {**schema["properties"], "status": {"type": "object"}}}


def prune_unknown_fields(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`obj` without the fields its kind's CRD schema does not declare, and their paths
    (`spec.mirrors[0].bogus`); the same object when nothing was pruned or it is no kuik CR.

    Like the API server: `apiVersion`, `kind` and `metadata` are kept as they are (metadata is
    free-form in the schema), values of the wrong type are left for validation to refuse;
    `status` is not looked at (local mode drops it)."""
    kind = obj.get("kind")
    if obj.get("apiVersion") != API_VERSION or not isinstance(kind, str) or kind not in KINDS:
        return obj, []
    dropped: list[str] = []
    _walk(obj, _schema(kind), "", dropped, dry=True)
    if not dropped:
        return obj, []
    pruned = copy.deepcopy(obj)
    _walk(pruned, _schema(kind), "", [], dry=False)
    return pruned, dropped


def _walk(value: Any, schema: dict[str, Any], path: str, dropped: list[str], *, dry: bool) -> None:
    """Record (and unless `dry`, delete) the unknown fields under `value`."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if properties is None and extra is None:
            return  # a free-form object (metadata) or no object in the schema: nothing to prune
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True or extra is True
        for key in list(value):
            where = f"{path}.{key}" if path else str(key)
            if properties is not None and key in properties:
                _walk(value[key], properties[key], where, dropped, dry=dry)
            elif isinstance(extra, dict):
                _walk(value[key], extra, where, dropped, dry=dry)
            elif not preserve:
                dropped.append(where)
                if not dry:
                    del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _walk(item, schema["items"], f"{path}[{index}]", dropped, dry=dry)
