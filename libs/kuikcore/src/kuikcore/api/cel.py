"""The CRDs' CEL rules and messages: one place for the generator and the Python validation.

Rule strings and messages are upstream's, word for word, except the filter-item regex rules
(`image`/`namespace` items must compile), which upstream lacks (it fails later, at use).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FILTER_EXCLUSIVE",
    "ITEM_ONE_OF",
    "ITEM_ONE_OF_CLUSTER",
    "Rule",
    "no_image_items",
    "regex_item",
    "regex_list",
    "validations",
]

Rule = tuple[str, str]  # (CEL rule, message)

ITEM_ONE_OF: Rule = (
    "self.all(item, (has(item.image) ? 1 : 0) + (has(item.label) ? 1 : 0)"
    " + (has(item.annotation) ? 1 : 0) == 1)",
    "each filter item must set exactly one of image, label or annotation",
)
ITEM_ONE_OF_CLUSTER: Rule = (
    "self.all(item, (has(item.image) ? 1 : 0) + (has(item.label) ? 1 : 0)"
    " + (has(item.annotation) ? 1 : 0) + (has(item.namespace) ? 1 : 0) == 1)",
    "each filter item must set exactly one of image, label, annotation or namespace",
)
FILTER_EXCLUSIVE: Rule = (
    "!((has(self.imageFilter) && (has(self.imageFilter.include) || has(self.imageFilter.exclude)))"
    " && (has(self.filter) && (has(self.filter.include) || has(self.filter.exclude))))",
    "spec.filter and the deprecated spec.imageFilter are mutually exclusive;"
    " fold imageFilter patterns into spec.filter image items",
)


def no_image_items(kind: str) -> Rule:
    return (
        "!has(self.filter) || ((!has(self.filter.include) || self.filter.include.all(i, !has(i.image)))"
        " && (!has(self.filter.exclude) || self.filter.exclude.all(i, !has(i.image))))",
        f"spec.filter image items are not supported on {kind};"
        " image selection is per-upstream via spec.upstreams[].imageFilter",
    )


def regex_list(field: str) -> Rule:
    """On a list of patterns (`imageFilter.include`/`exclude`): forces RE2 compilation."""
    return (
        "self.all(p, ''.matches(p) ? true : true)",
        f"{field} contains an invalid regular expression",
    )


def regex_item(field: str) -> Rule:
    """On one pattern string (filter `image`/`namespace` items)."""
    return ("''.matches(self) ? true : true", f"{field} contains an invalid regular expression")


def validations(*rules: Rule) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules into the generated CRD."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}
