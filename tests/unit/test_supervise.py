"""kuikcore.supervise: a failed background loop is logged, counted and restarted with backoff;
cancellation still stops it."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from kuikcore.supervise import Loop, Supervisor


def restarts(registry: CollectorRegistry, loop: Loop) -> float | None:
    return registry.get_sample_value("kube_image_keeper_loop_restarts_total", {"loop": loop.value})


async def test_a_failing_loop_is_logged_counted_and_restarted_until_it_returns() -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry, base=0.01, cap=0.04)
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise RuntimeError(f"boom {runs}")

    with capture_logs() as logs:
        await asyncio.wait_for(supervisor.run(Loop.REPLICATOR_WORKERS, flaky), 5)
    assert runs == 4
    assert restarts(registry, Loop.REPLICATOR_WORKERS) == 3
    failures = [e for e in logs if e["event"] == "background loop failed, restarting it"]
    assert [e["failures"] for e in failures] == [1, 2, 3]
    assert all(e["log_level"] == "error" for e in failures)
    assert all(e["loop"] == "replicator-workers" for e in failures)
    assert [str(e["exc_info"]) for e in failures] == ["boom 1", "boom 2", "boom 3"]  # traceback
    delays = [e["restart_in"] for e in failures]
    assert 0.005 <= delays[0] <= 0.01
    assert 0.01 <= delays[1] <= 0.02
    assert 0.02 <= delays[2] <= 0.04


async def test_the_backoff_starts_over_after_a_run_that_lasted() -> None:
    supervisor = Supervisor(base=0.01, cap=0.05)
    runs = 0

    async def fails_after_a_while() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            await asyncio.sleep(0.06)  # longer than the cap: it was running well
            raise RuntimeError("late")

    with capture_logs() as logs:
        await asyncio.wait_for(supervisor.run(Loop.MONITOR_FLUSHING, fails_after_a_while), 5)
    assert [e["failures"] for e in logs if "failures" in e] == [1, 1]


@pytest.mark.parametrize("where", ["while running", "while backing off"])
async def test_cancellation_stops_the_loop(where: str) -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry, base=30.0, cap=60.0)
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        if where == "while backing off":
            raise RuntimeError("fails at once, then waits 15-30 s")
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervisor.run(Loop.MONITOR_TRACKING, body))
    await started.wait()
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert restarts(registry, Loop.MONITOR_TRACKING) == (1 if where == "while backing off" else 0)


async def test_a_supervised_loop_is_exported_before_it_ever_fails() -> None:
    registry = CollectorRegistry()

    async def done() -> None:
        return None

    await Supervisor(registry).run(Loop.WEBHOOK_CERT_RELOADER, done)
    text = generate_latest(registry).decode()
    assert 'kube_image_keeper_loop_restarts_total{loop="webhook-cert-reloader"} 0.0' in text
    assert "replicator-workers" not in text  # only the loops this process runs


async def test_stop_tasks_delivers_a_lost_cancellation_again() -> None:
    """A loop whose cancellation was swallowed (as Python 3.11's `wait_for` in redis-py can) is
    cancelled again until it stops; the caller's own cancellation waits for that, then comes."""
    from kuikcore.supervise import stop_tasks

    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # the first one is lost
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stop_tasks(task, within=2.0)
    assert task.cancelled()
    assert swallowed == 2
    assert loop.time() - started < 1.0

    again = asyncio.create_task(stubborn())
    swallowed = 0

    async def stopper() -> None:
        await stop_tasks(again, within=2.0)

    outer = asyncio.create_task(stopper())
    await asyncio.sleep(0.05)
    outer.cancel()  # the runner re-delivering its stop while we clean up
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert again.done()  # the cleanup still finished before the cancellation came through
