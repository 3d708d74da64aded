"""LeaseKeeper on its own (no Redis): the body stops with LockLost when renewals say no or keep
failing until the lease would end, and only then."""

from __future__ import annotations

import asyncio
import time

import pytest

from kuikcore.coord import LeaseKeeper, LockLost


async def forever() -> None:
    await asyncio.Event().wait()


async def hold(renew: object, ttl: float = 0.3) -> None:
    async with LeaseKeeper("test", ttl, renew, granted_at=time.monotonic()):  # type: ignore[arg-type]
        await forever()


async def test_lease_refused_stops_the_holder() -> None:
    async def refused() -> bool:
        return False

    with pytest.raises(LockLost, match="taken over or expired"):
        await hold(refused)


async def test_renewals_that_keep_failing_stop_the_holder_before_the_ttl_ends() -> None:
    calls = 0

    async def broken() -> bool:
        nonlocal calls
        calls += 1
        raise RuntimeError("NOSCRIPT or anything unexpected")

    with pytest.raises(LockLost, match=r"not renewed within its 0\.3s TTL"):
        await hold(broken)
    assert calls >= 1


async def test_a_healthy_lease_lets_the_work_finish() -> None:
    renewals = 0

    async def ok() -> bool:
        nonlocal renewals
        renewals += 1
        return True

    async with LeaseKeeper("test", 0.6, ok, granted_at=time.monotonic()) as keeper:
        for _ in range(10):
            await asyncio.sleep(0.06)  # a whole TTL of work
    assert keeper.lost is None
    assert renewals >= 2


async def test_outside_cancellation_is_not_reported_as_a_lost_lease() -> None:
    async def ok() -> bool:
        return True

    task = asyncio.create_task(hold(ok, ttl=10))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
