"""The CRDs' CEL rules, run by a real CEL engine, agree with the Python validation.

Every `x-kubernetes-validations` rule of the generated CRDs is evaluated (like the API server
does, on each node present in the object) with `common-expression-language`, and the rules it
breaks must be exactly the ones `kuikcore.api.check_rules` reports, on hypothesis-made CRs.
"""

from __future__ import annotations

from typing import Any

import cel
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kuikcore.api import KINDS, Resource, check_rules
from kuikcore.api.crd import crd_files

SCHEMAS = {
    yaml.safe_load(text)["spec"]["names"]["kind"]: yaml.safe_load(text)["spec"]["versions"][0][
        "schema"
    ]["openAPIV3Schema"]
    for text in crd_files().values()
}


def cel_failures(schema: dict[str, Any], value: Any, path: str = "") -> list[tuple[str, str]]:
    out = []
    for validation in schema.get("x-kubernetes-validations", []):
        try:
            ok = cel.evaluate(validation["rule"], {"self": value})
        except RuntimeError:  # e.g. matches() on a bad regex: the API server rejects too
            ok = False
        if ok is not True:
            out.append((path, validation["message"]))
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                out += cel_failures(sub, value[name], f"{path}.{name}" if path else name)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += cel_failures(schema["items"], item, f"{path}[{i}]")
    return out


# patterns both engines (RE2 here, Rust's regex in the CEL engine) judge alike
PATTERNS = [".*", "docker\\.io/.+", "", "a|ab", "[", "(?=x)", "a{2,1}", "(unclosed"]
SELECTORS = ["app=foo", "===", ""]


@st.composite
def filter_items(draw: st.DrawFn, cluster: bool) -> dict[str, str]:
    fields = ["image", "label", "annotation", *(["namespace"] if cluster else [])]
    chosen = draw(st.lists(st.sampled_from(fields), max_size=3, unique=True))
    item = {}
    for name in chosen:
        pool = SELECTORS if name in ("label", "annotation") else PATTERNS
        item[name] = draw(st.sampled_from(pool))
    return item


@st.composite
def specs(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    cluster = not KINDS[kind].namespaced
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        filter_: dict[str, Any] = {}
        for side in ("include", "exclude"):
            if draw(st.booleans()):
                filter_[side] = draw(st.lists(filter_items(cluster), max_size=3))
        spec["filter"] = filter_
    pattern_lists = st.lists(st.sampled_from(PATTERNS), max_size=3)
    image_filter = st.fixed_dictionaries(
        {}, optional={"include": pattern_lists, "exclude": pattern_lists}
    )
    if kind.endswith("ReplicatedImageSet"):
        spec["upstreams"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"registry": st.just("r.example"), "path": st.just("/p")},
                    optional={"imageFilter": image_filter},
                ),
                max_size=2,
            )
        )
    elif draw(st.booleans()):
        spec["imageFilter"] = draw(image_filter)
    return spec


def _python_failures(resource: Resource) -> set[str]:
    return {
        reason.split(": ", 1)[0] if "regular expression" in reason else reason
        for _, reason in check_rules(resource)
    }


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_python_rules_match_the_crd_cel_rules(kind: str, data: st.DataObject) -> None:
    spec = data.draw(specs(kind))
    namespace = {"namespace": "n"} if KINDS[kind].namespaced else {}
    document = {
        "apiVersion": "kuik.enix.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", **namespace},
        "spec": spec,
    }
    cel_broken = cel_failures(SCHEMAS[kind], document)
    resource = KINDS[kind].model.model_validate(document)  # structure only: CEL half compared below
    python_broken = list(check_rules(resource))
    assert {message for _, message in cel_broken} == _python_failures(resource)
    # the Python path is the CEL node's path or below it (items are named individually)
    for path, message in python_broken:
        base = message.split(": ", 1)[0]
        assert any(path.startswith(p) for p, m in cel_broken if m == base), (
            path,
            message,
            cel_broken,
        )
