"""Which pods and images a kuik CR selects: RE2 patterns and Kubernetes label selectors.

Upstream's semantics, exactly:
- patterns are RE2, matched against the whole string (implicitly anchored);
- the unified `spec.filter`: items grouped by dimension (image, label, annotation, and namespace
  on cluster-scoped kinds); OR within a dimension, AND across; any matching exclude item wins;
  a dimension without include items matches everything;
- the deprecated `imageFilter`: include/exclude lists; include empty with excludes given means
  "everything but", both empty means nothing; used only when `spec.filter` has no item at all;
- a (Cluster)ReplicatedImageSet upstream's `imageFilter` is matched against what follows its
  `registry` prefix (`/library/nginx:1.27`).
Compiling a CR's filters raises `InvalidFilter` naming the CR and the item, so a caller can skip
that CR (or that upstream) alone and report it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import re2

from kuikcore.api.models import (
    AnyFilter,
    ClusterFilter,
    Filter,
    ImageFilterDefinition,
    ReplicatedUpstream,
    Resource,
)
from kuikcore.pods import pod_annotations, pod_labels, pod_namespace

__all__ = [
    "InvalidFilter",
    "InvalidPattern",
    "InvalidSelector",
    "Operator",
    "PatternSet",
    "PodSelector",
    "Requirement",
    "ResourceFilter",
    "Selector",
    "SkipRules",
    "UpstreamFilter",
    "compile_filter",
    "compile_pattern",
    "compile_upstream",
    "parse_selector",
    "pod_annotations",
    "pod_labels",
    "pod_namespace",
]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors are raised to the caller, not printed by the C++ side


class InvalidPattern(ValueError):
    """A pattern RE2 refuses (Go's regexp would refuse it too: same engine, same syntax)."""

    def __init__(self, pattern: str, reason: str) -> None:
        self.pattern = pattern
        self.reason = reason
        super().__init__(f"invalid regular expression {pattern!r}: {reason}")


class InvalidFilter(ValueError):
    """A CR whose filter cannot be compiled: `resource` is `Kind/[namespace/]name`."""

    def __init__(self, resource: str, field_path: str, reason: str) -> None:
        self.resource = resource
        self.field_path = field_path
        self.reason = reason
        super().__init__(f"{resource}: {field_path}: {reason}")


class _Compiled(Protocol):
    def fullmatch(self, text: str) -> object | None: ...


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> _Compiled:
    """Compile with RE2; the result's `fullmatch` gives upstream's anchored `^(...)$` semantics."""
    try:
        compiled: _Compiled = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "invalid"
        reason = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        raise InvalidPattern(pattern, reason) from None
    return compiled


@dataclass(frozen=True, slots=True)
class PatternSet:
    """Include/exclude pattern lists: some include matches and no exclude does.

    An empty `include` matches nothing (upstream's `CompileIncludeExcludeFilter`); builders
    that mean "everything" put `.*` there.
    """

    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for pattern in (*self.include, *self.exclude):
            compile_pattern(pattern)

    def match(self, text: str) -> bool:
        if not any(compile_pattern(p).fullmatch(text) for p in self.include):
            return False
        return not any(compile_pattern(p).fullmatch(text) for p in self.exclude)


MATCH_ALL = (".*",)


# --- label selectors (k8s.io/apimachinery/pkg/labels.Parse) ---------------------------


class InvalidSelector(ValueError):
    def __init__(self, selector: str, reason: str) -> None:
        self.selector = selector
        self.reason = reason
        super().__init__(f"invalid selector {selector!r}: {reason}")


class Operator(StrEnum):
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        # GREATER_THAN / LESS_THAN: both sides must be integers
        if self.key not in labels:
            return False
        try:
            have = _parse_int64(labels[self.key])
        except ValueError:
            return False
        want = _parse_int64(next(iter(self.values)))
        return have > want if op is Operator.GREATER_THAN else have < want


@dataclass(frozen=True, slots=True)
class Selector:
    """ANDed requirements; `text` is the selector as written (for messages)."""

    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


# --- lexer --------------------------------------------------------------------------------

_SPECIAL = "=!(),<>"
_SYMBOLS = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")
_IDENT, _END = "identifier", "end of string"


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, literal) pairs; kind is a symbol, "in"/"notin", _IDENT or _END."""
    out: list[tuple[str, str]] = []
    i = 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            out.append((_END, ""))
            return out
        if text[i] in _SPECIAL:
            symbol = next(s for s in _SYMBOLS if text.startswith(s, i))
            out.append((symbol, symbol))
            i += len(symbol)
            continue
        start = i
        while i < len(text) and text[i] not in _SPECIAL and text[i] not in " \t\r\n":
            i += 1
        word = text[start:i]
        out.append((word if word in ("in", "notin") else _IDENT, word))


# --- parser -------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def error(self, reason: str) -> InvalidSelector:
        return InvalidSelector(self.text, reason)

    def peek(self, values: bool = False) -> tuple[str, str]:
        kind, literal = self.tokens[self.pos]
        if values and kind in ("in", "notin"):
            kind = _IDENT  # in value position keywords are plain identifiers
        return kind, literal

    def take(self, values: bool = False) -> tuple[str, str]:
        token = self.peek(values)
        if token[0] != _END:
            self.pos += 1
        return token

    def parse(self) -> Selector:
        requirements: list[Requirement] = []
        while True:
            kind, literal = self.peek(values=True)
            if kind == _END:
                break
            if kind not in (_IDENT, "!"):
                raise self.error(f"found '{literal}', expected: !, identifier, or 'end of string'")
            requirements.append(self.requirement())
            kind, literal = self.take(values=True)
            if kind == _END:
                break
            if kind != ",":
                raise self.error(f"found '{literal}', expected: ',' or 'end of string'")
            if self.peek(values=True)[0] not in (_IDENT, "!"):
                raise self.error(f"found '{self.peek()[1]}', expected: identifier after ','")
        return Selector(self.text, tuple(requirements))

    def requirement(self) -> Requirement:
        operator: Operator | None = None
        kind, literal = self.take(values=True)
        if kind == "!":
            operator = Operator.DOES_NOT_EXIST
            kind, literal = self.take(values=True)
        if kind != _IDENT:
            raise self.error(f"found '{literal}', expected: identifier")
        key = literal
        _validate_key(key, self)
        if self.peek(values=True)[0] in (_END, ","):
            return Requirement(key, operator or Operator.EXISTS, frozenset())
        if operator is Operator.DOES_NOT_EXIST:
            return Requirement(key, operator, frozenset())  # the caller reports what follows
        kind, literal = self.take()
        operators = {
            "in": Operator.IN,
            "notin": Operator.NOT_IN,
            "=": Operator.EQUALS,
            "==": Operator.DOUBLE_EQUALS,
            "!=": Operator.NOT_EQUALS,
            ">": Operator.GREATER_THAN,
            "<": Operator.LESS_THAN,
        }
        if kind not in operators:
            raise self.error(f"found '{literal}', expected: in, notin, =, ==, !=, gt, lt")
        operator = operators[kind]
        values = (
            self.set_values() if operator in (Operator.IN, Operator.NOT_IN) else self.exact_value()
        )
        for value in values:
            _validate_value(value, self)
        if operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
            (value,) = values
            try:
                _parse_int64(value)
            except ValueError:
                raise self.error(
                    f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}"
                ) from None
        return Requirement(key, operator, frozenset(values))

    def exact_value(self) -> set[str]:
        if self.peek(values=True)[0] in (_END, ","):
            return {""}
        kind, literal = self.take(values=True)
        if kind != _IDENT:
            raise self.error(f"found '{literal}', expected: identifier")
        return {literal}

    def set_values(self) -> set[str]:
        kind, literal = self.take(values=True)
        if kind != "(":
            raise self.error(f"found '{literal}', expected: '('")
        kind, literal = self.peek(values=True)
        if kind == ")":
            self.take(values=True)
            return {""}
        if kind not in (_IDENT, ","):
            raise self.error(f"found '{literal}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            kind, literal = self.take(values=True)
            if kind == _IDENT:
                values.add(literal)
                nxt, nxt_literal = self.peek(values=True)
                if nxt == ",":
                    self.take(values=True)
                    if self.peek(values=True)[0] == ")":
                        values.add("")
                        self.take(values=True)
                        return values
                    continue
                if nxt == ")":
                    self.take(values=True)
                    return values
                raise self.error(f"found '{nxt_literal}', expected: ',' or ')'")
            if kind == ",":
                values.add("")  # "(,a)" and "(a,,b)" carry an empty value
                if self.peek(values=True)[0] == ")":
                    self.take(values=True)
                    return values
                continue
            raise self.error(f"found '{literal}', expected: ',', or identifier")


_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _validate_key(key: str, parser: _Parser) -> None:
    prefix, slash, name = key.rpartition("/")
    if key.count("/") > 1:
        raise parser.error(f"invalid label key {key!r}: a qualified name has at most one '/'")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise parser.error(
            f"invalid label key {key!r}: prefix must be a lowercase DNS subdomain (at most 253 characters)"
        )
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        raise parser.error(
            f"invalid label key {key!r}: name part must be at most 63 alphanumeric characters, "
            "'-', '_' or '.', starting and ending with an alphanumeric character"
        )


def _validate_value(value: str, parser: _Parser) -> None:
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        raise parser.error(
            f"invalid label value {value!r}: must be empty or at most 63 alphanumeric characters, "
            "'-', '_' or '.', starting and ending with an alphanumeric character"
        )


def _parse_int64(text: str) -> int:
    """Go's strconv.ParseInt(text, 10, 64)."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(text)
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError(text)
    return value


def parse_selector(text: str) -> Selector:
    """Parse like `labels.Parse`; raises `InvalidSelector` naming the selector and the problem."""
    return _Parser(text).parse()


# --- pods ---------------------------------------------------------------------------------


def _selectors_match(
    include: Sequence[Selector], exclude: Sequence[Selector], labels: Mapping[str, str]
) -> bool:
    if include and not any(s.matches(labels) for s in include):
        return False
    return not any(s.matches(labels) for s in exclude)


@dataclass(frozen=True, slots=True)
class PodSelector:
    """Label, annotation and (cluster kinds) namespace dimensions of a filter."""

    include_labels: tuple[Selector, ...] = ()
    exclude_labels: tuple[Selector, ...] = ()
    include_annotations: tuple[Selector, ...] = ()
    exclude_annotations: tuple[Selector, ...] = ()
    namespaces: PatternSet | None = None

    def matches(self, pod: Mapping[str, Any]) -> bool:
        if not _selectors_match(self.include_labels, self.exclude_labels, pod_labels(pod)):
            return False
        if not _selectors_match(
            self.include_annotations, self.exclude_annotations, pod_annotations(pod)
        ):
            return False
        return self.namespaces is None or self.namespaces.match(pod_namespace(pod))


@dataclass(frozen=True, slots=True)
class SkipRules:
    """Operator-wide `skipLabels` / `skipAnnotations`: a pod matching any one is left alone."""

    labels: tuple[Selector, ...] = ()
    annotations: tuple[Selector, ...] = ()

    @classmethod
    def parse(
        cls, skip_labels: Iterable[str] = (), skip_annotations: Iterable[str] = ()
    ) -> SkipRules:
        """Raises `InvalidSelector` (upstream refuses to start on one)."""
        return cls(
            tuple(parse_selector(s) for s in skip_labels),
            tuple(parse_selector(s) for s in skip_annotations),
        )

    def reason(self, pod: Mapping[str, Any]) -> str | None:
        """Why the pod is skipped, or None."""
        for selector in self.labels:
            if selector.matches(pod_labels(pod)):
                return f"pod labels match skipLabels selector {selector.text!r}"
        for selector in self.annotations:
            if selector.matches(pod_annotations(pod)):
                return f"pod annotations match skipAnnotations selector {selector.text!r}"
        return None


# --- CRs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceFilter:
    """A CR's compiled selection: which pods it applies to, and which of their images.

    `images` is None on (Cluster)ReplicatedImageSets: they select images per upstream.
    """

    resource: str
    pods: PodSelector
    images: PatternSet | None

    def matches_pod(self, pod: Mapping[str, Any]) -> bool:
        return self.pods.matches(pod)

    def matches_image(self, image: str) -> bool:
        """`image` is a normalised reference (`docker.io/library/nginx:1.27`)."""
        return self.images is not None and self.images.match(image)

    def selects(self, pod: Mapping[str, Any], image: str) -> bool:
        """Both: the CR applies to `pod` and picks `image` (normalised) from it."""
        return self.matches_pod(pod) and self.matches_image(image)


@dataclass(frozen=True, slots=True)
class UpstreamFilter:
    """A replicated upstream's `imageFilter`, matched after its `registry` prefix."""

    registry: str
    patterns: PatternSet

    def match(self, image: str) -> bool:
        if not image.startswith(self.registry):
            return False
        return self.patterns.match(image[len(self.registry) :])


def _definition_patterns(definition: ImageFilterDefinition, resource: str, path: str) -> PatternSet:
    include = tuple(definition.include or ())
    exclude = tuple(definition.exclude or ())
    for list_name, patterns in (("include", include), ("exclude", exclude)):
        for i, pattern in enumerate(patterns):
            _check_pattern(pattern, resource, f"{path}.{list_name}[{i}]")
    if not include and exclude:
        include = MATCH_ALL
    return PatternSet(include, exclude)


def _check_pattern(pattern: str, resource: str, path: str) -> None:
    try:
        compile_pattern(pattern)
    except InvalidPattern as exc:
        raise InvalidFilter(
            resource, path, f"invalid regular expression {pattern!r}: {exc.reason}"
        ) from None


class _Dimension(StrEnum):
    IMAGE = "image"
    LABEL = "label"
    ANNOTATION = "annotation"
    NAMESPACE = "namespace"


def _collect(
    filt: AnyFilter, list_name: str, dimension: _Dimension, resource: str
) -> list[tuple[str, str]]:
    """(value, field path) of the non-empty `dimension` values of `filt.<list_name>`."""
    out = []
    for i, item in enumerate(getattr(filt, list_name) or ()):
        value = getattr(item, dimension.value, None)
        if value:
            out.append((value, f"spec.filter.{list_name}[{i}].{dimension.value}"))
    return out


def _patterns(filt: AnyFilter, dimension: _Dimension, resource: str) -> PatternSet:
    sides = []
    for list_name in ("include", "exclude"):
        values = _collect(filt, list_name, dimension, resource)
        for pattern, path in values:
            _check_pattern(pattern, resource, path)
        sides.append(tuple(v for v, _ in values))
    include, exclude = sides
    return PatternSet(include or MATCH_ALL, exclude)


def _selectors(
    filt: AnyFilter, list_name: str, dimension: _Dimension, resource: str
) -> tuple[Selector, ...]:
    out = []
    for text, path in _collect(filt, list_name, dimension, resource):
        try:
            out.append(parse_selector(text))
        except InvalidSelector as exc:
            raise InvalidFilter(
                resource, path, f"invalid selector {text!r}: {exc.reason}"
            ) from None
    return tuple(out)


def compile_filter(resource: Resource) -> ResourceFilter:
    """Compile a CR's pod and image selection; raises `InvalidFilter` naming CR and item."""
    spec = getattr(resource, "spec", None)
    filt: AnyFilter = getattr(spec, "filter", None) or Filter()
    key = resource.key
    if filt.is_empty:
        pods = PodSelector()
    else:
        pods = PodSelector(
            _selectors(filt, "include", _Dimension.LABEL, key),
            _selectors(filt, "exclude", _Dimension.LABEL, key),
            _selectors(filt, "include", _Dimension.ANNOTATION, key),
            _selectors(filt, "exclude", _Dimension.ANNOTATION, key),
            _patterns(filt, _Dimension.NAMESPACE, key) if isinstance(filt, ClusterFilter) else None,
        )
    images: PatternSet | None
    if hasattr(spec, "upstreams"):
        images = None  # (Cluster)ReplicatedImageSet: image items are refused by the CRD
    elif filt.is_empty:
        legacy = getattr(spec, "image_filter", None) or ImageFilterDefinition()
        images = _definition_patterns(legacy, key, "spec.imageFilter")
    else:
        images = _patterns(filt, _Dimension.IMAGE, key)
    return ResourceFilter(key, pods, images)


def compile_upstream(
    resource: Resource, index: int, upstream: ReplicatedUpstream
) -> UpstreamFilter:
    """Compile `spec.upstreams[index].imageFilter`; raises `InvalidFilter` for that upstream."""
    path = f"spec.upstreams[{index}].imageFilter"
    patterns = _definition_patterns(upstream.image_filter, resource.key, path)
    return UpstreamFilter(upstream.registry, patterns)
