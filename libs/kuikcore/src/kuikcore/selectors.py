"""Kubernetes label selectors, parsed exactly like `k8s.io/apimachinery/pkg/labels.Parse`. A leaf:
the config (skip selectors) and the CR filters build on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["InvalidSelector", "Operator", "Requirement", "Selector", "parse_selector"]


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
