"""User-supplied regular expressions, as upstream kuik reads them: RE2 (Go's engine and syntax),
matched against the whole string. A leaf: CR validation, filters and config build on it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import re2

__all__ = ["MATCH_ALL", "InvalidPattern", "PatternSet", "compile_pattern"]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors are raised to the caller, not printed by the C++ side


class InvalidPattern(ValueError):
    """A pattern RE2 refuses (Go's regexp would refuse it too: same engine, same syntax)."""

    def __init__(self, pattern: str, reason: str) -> None:
        self.pattern = pattern
        self.reason = reason
        super().__init__(f"invalid regular expression {pattern!r}: {reason}")


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
