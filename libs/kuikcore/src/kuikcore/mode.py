"""Whether the webhook changes Pods (`enforce`) or only says what it would do (`audit`).

The operator config's `webhook.mode` is the cluster's default; a Namespace labelled
`kuik.enix.io/mode: audit` (or `enforce`) overrides it, so kuik can be rolled out namespace by
namespace. Pure: the webhook and `kuik route` decide the same way from the same labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from kuikcore.names import MODE_LABEL

__all__ = ["Mode", "ModeChoice", "mode_for"]


class Mode(StrEnum):
    ENFORCE = "enforce"
    AUDIT = "audit"


@dataclass(frozen=True, slots=True)
class ModeChoice:
    mode: Mode
    source: str
    """Where it came from, for logs and `kuik route`: the label, or the config."""
    problem: str | None = None
    """A label value that is no mode (ignored: the config's mode applies)."""


def mode_for(default: Mode, namespace_labels: Mapping[str, str] | None) -> ModeChoice:
    """The mode for a Pod of a Namespace with these labels (None: the Namespace is unknown)."""
    value = (namespace_labels or {}).get(MODE_LABEL)
    if value is None:
        return ModeChoice(default, "config webhook.mode")
    try:
        return ModeChoice(Mode(value), f"namespace label {MODE_LABEL}={value}")
    except ValueError:
        problem = (
            f"namespace label {MODE_LABEL}={value!r} is not one of "
            f"{', '.join(m.value for m in Mode)}: ignored"
        )
        return ModeChoice(default, "config webhook.mode", problem)
