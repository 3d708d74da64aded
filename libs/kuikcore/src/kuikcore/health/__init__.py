"""Registry host health: first-class, shared, fresh knowledge of which registries answer.

The package root holds only pure value types and rules (`state`); the I/O lives in modules
imported by path: `kuikcore.health.keeper` (the engine every service runs: probes, shared
targets, the local view), `kuikcore.health.metrics`.
"""

from __future__ import annotations

from kuikcore.health.state import (
    DOWN,
    UP,
    HostHealth,
    Knowledge,
    Observation,
    Transition,
    fold,
    knowledge,
)

__all__ = [
    "DOWN",
    "UP",
    "HostHealth",
    "Knowledge",
    "Observation",
    "Transition",
    "fold",
    "knowledge",
]
