"""LATER SLICE: execute_async (API.md §6.2, §8.2).

Enable with ERYX_TEST_LATER=async (see conftest.py).
"""

import asyncio
import time

import pytest

import eryx


def test_execute_async_returns_result():
    async def main():
        with eryx.Sandbox() as sb:
            return await sb.execute_async("print('async')\nresult = 3")

    r = asyncio.run(main())
    assert isinstance(r, eryx.ExecuteResult)
    assert r.stdout == "async"
    assert r.result == 3


def test_execute_async_does_not_block_the_loop():
    async def main():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        with eryx.Sandbox() as sb:
            await sb.execute_async("import time\ntime.sleep(0.4)")
        done.set()
        await t
        return ticks

    assert asyncio.run(main()) >= 10


def test_cancelling_stops_the_run():
    store = eryx.VfsStorage()

    async def main():
        with eryx.Sandbox(vfs=store) as sb:
            task = asyncio.create_task(sb.execute_async(
                "import time\nfor i in range(100):\n    time.sleep(0.05)\n"
                "open('/data/finished', 'w').close()"))
            await asyncio.sleep(0.3)
            task.cancel()
            start = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert elapsed < 2.0
    time.sleep(0.3)
    with pytest.raises(FileNotFoundError):
        store.read_file("finished")


def test_session_execute_async_and_cancel_keeps_state():
    async def main():
        with eryx.Session() as s:
            await s.execute_async("a = 1")
            task = asyncio.create_task(s.execute_async("b = 2\nwhile True:\n    pass"))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return (await s.execute_async("print(a, b)")).stdout

    assert asyncio.run(main()) == "1 2"


def test_concurrent_async_runs():
    async def main():
        with eryx.Sandbox() as sb:
            t = time.monotonic()
            rs = await asyncio.gather(*(sb.execute_async(
                f"import time\ntime.sleep(0.3)\nresult = {i}") for i in range(3)))
            return [r.result for r in rs], time.monotonic() - t

    results, elapsed = asyncio.run(main())
    assert results == [0, 1, 2]
    assert elapsed < 0.85
