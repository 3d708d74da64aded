"""Worker processes for the coord tests, forked from one server that has already imported
everything they need, so each starts in milliseconds instead of re-importing."""

from __future__ import annotations

import multiprocessing

__all__ = ["PROCESSES"]

PROCESSES = multiprocessing.get_context("forkserver")
PROCESSES.set_forkserver_preload(
    [
        "__main__",
        "kuikcore.coord",
        "tests.integration.test_coord_budgets",
        "tests.integration.test_coord_locks",
        "tests.integration.test_coord_queue",
    ]
)
