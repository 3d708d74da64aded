"""Go duration strings (`time.ParseDuration` / `Duration.String`), as upstream's config uses them.

Upstream kuik decodes every duration key with Go's parser, so a config file that Go accepts must
mean exactly the same here: same grammar (`[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`, bare `0`), same units,
same overflow limit (the int64 nanosecond range) and the same float arithmetic for fractions.
Python's `timedelta` stops at microseconds, so `parse_duration` rounds the nanosecond result to the
nearest microsecond; `parse_duration_ns` keeps every nanosecond.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = [
    "InvalidDuration",
    "format_duration",
    "format_duration_ns",
    "parse_duration",
    "parse_duration_ns",
]

_NS = 1
_US = 1_000
_MS = 1_000_000
_S = 1_000_000_000
_M = 60 * _S
_H = 60 * _M

# Same table as Go's time.unitMap: both the micro sign (U+00B5) and the Greek mu (U+03BC).
_UNITS: dict[str, int] = {
    "ns": _NS,
    "us": _US,
    "\u00b5s": _US,
    "\u03bcs": _US,
    "ms": _MS,
    "s": _S,
    "m": _M,
    "h": _H,
}
_MAX = (1 << 63) - 1  # Go's Duration is an int64 of nanoseconds
_LIMIT = 1 << 63


class InvalidDuration(ValueError):
    """A string Go's `time.ParseDuration` would reject; the message says which part is wrong."""

    def __init__(self, text: str, reason: str) -> None:
        self.input = text
        self.reason = reason
        super().__init__(f"invalid duration {text!r}: {reason}")


def _leading_int(s: str) -> tuple[int, str] | None:
    """Digits at the start of `s` as an integer; None when they overflow (Go's errLeadingInt)."""
    i = 0
    x = 0
    while i < len(s) and "0" <= s[i] <= "9":
        if x > _LIMIT // 10:
            return None
        x = x * 10 + ord(s[i]) - 48
        if x > _LIMIT:
            return None
        i += 1
    return x, s[i:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    """Digits after the dot: value, its scale (10**digits kept), rest. Extra digits are dropped."""
    i = 0
    x = 0
    scale = 1.0
    overflow = False
    while i < len(s) and "0" <= s[i] <= "9":
        if not overflow:
            if x > _MAX // 10:
                overflow = True
            else:
                y = x * 10 + ord(s[i]) - 48
                if y > _LIMIT:
                    overflow = True
                else:
                    x = y
                    scale *= 10
        i += 1
    return x, scale, s[i:]


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration string into integer nanoseconds, exactly as Go does."""
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise InvalidDuration(text, "empty")
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise InvalidDuration(text, f"expected a number at {s!r}")
        before = len(s)
        lead = _leading_int(s)
        if lead is None:
            raise InvalidDuration(text, "out of range")
        value, s = lead
        pre = before != len(s)
        frac, scale, post = 0, 1.0, False
        if s and s[0] == ".":
            s = s[1:]
            before = len(s)
            frac, scale, s = _leading_fraction(s)
            post = before != len(s)
        if not pre and not post:
            raise InvalidDuration(text, "a dot without digits")
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise InvalidDuration(text, "missing unit (ns, us, ms, s, m, h)")
        unit_name, s = s[:i], s[i:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise InvalidDuration(text, f"unknown unit {unit_name!r} (ns, us, ms, s, m, h)")
        if value > _LIMIT // unit:
            raise InvalidDuration(text, "out of range")
        value *= unit
        if frac > 0:
            # Go computes the fraction in float64; the same IEEE doubles give the same result.
            value += int(float(frac) * (float(unit) / scale))
            if value > _LIMIT:
                raise InvalidDuration(text, "out of range")
        total += value
        if total > _LIMIT:
            raise InvalidDuration(text, "out of range")
    if neg:
        return -total
    if total > _MAX:
        raise InvalidDuration(text, "out of range")
    return total


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string (`1h30m`, `500ms`, `-1.5h`) into a timedelta (µs precision)."""
    ns = parse_duration_ns(text)
    # Round half to even at the microsecond, like timedelta's own constructor.
    return timedelta(microseconds=_round_div(ns, 1000))


def _round_div(n: int, d: int) -> int:
    q, r = divmod(n, d)
    if 2 * r > d or (2 * r == d and q % 2 == 1):
        q += 1
    return q


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction digits of v / 10**prec without trailing zeros, and v // 10**prec."""
    digits = ""
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        v //= 10
    return ("." + digits if printed else ""), v


def format_duration_ns(ns: int) -> str:
    """Go's `Duration.String()`: `1h30m0s`, `500ms`, `1.5µs`, `0s`."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < _S:
        if u < _US:
            text = f"{u}ns"
        elif u < _MS:
            frac, whole = _fmt_frac(u, 3)
            text = f"{whole}{frac}\u00b5s"
        else:
            frac, whole = _fmt_frac(u, 6)
            text = f"{whole}{frac}ms"
    else:
        frac, whole_s = _fmt_frac(u, 9)
        text = f"{whole_s % 60}{frac}s"
        minutes = whole_s // 60
        if minutes > 0:
            text = f"{minutes % 60}m{text}"
            hours = minutes // 60
            if hours > 0:
                text = f"{hours}h{text}"
    return "-" + text if neg else text


def format_duration(value: timedelta) -> str:
    """Inverse of `parse_duration`: the string Go would print for this duration."""
    return format_duration_ns((value // timedelta(microseconds=1)) * 1000)
