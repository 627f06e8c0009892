"""Issue 19: hostile guests against the engine's run machinery. Each case is one that aborted,
hung or fooled the host before; each runs in its own process under wall-clock and memory
bounds (_harness.run_case)."""

from _harness import run_case

# Guest code that reaches the driver's globals, as any user code can.
DRIVER = "import sys\ng = sys._getframe(1).f_globals\n"


def test_slow_callbacks_cannot_exhaust_host_threads():
    # Before: 1,000 slow sync calls per run, left running when the run returns, passed Go's
    # 10,000-thread cap after ~9 runs and the process aborted (SIGABRT).
    out = run_case("""
        import os, threading, time, eryx
        def slow(t: float) -> str:
            time.sleep(t)
            return 'x'
        sb = eryx.Sandbox(callbacks=[{'name': 'slow', 'fn': slow}])
        code = '''import asyncio
        ts = [asyncio.ensure_future(slow(t=120.0)) for _ in range(1000)]
        await asyncio.sleep(0.5)
        refused = [t for t in ts if t.done() and isinstance(t.exception(), eryx_guest.CallbackLimitError)]
        print(len(refused), refused[0].exception() if refused else "")
        '''.replace('\\n        ', '\\n')
        refused = []
        for i in range(14):
            r = sb.execute('import eryx_guest\\n' + code)
            refused.append(r.stdout)
        threads = int([l for l in open('/proc/self/status') if l.startswith('Threads:')][0].split()[1])
        report(refused=refused, threads=threads)
        os._exit(0)  # the sleeping host calls would keep the process for 120 s
    """, wall_s=180, max_rss_mib=3000)
    rep = out.check()
    assert out.peak_threads < 1500, out.peak_threads
    first, later = rep["refused"][0], rep["refused"][1:]
    assert first.startswith("744 too many host callbacks in flight: at most 256 per sandbox"), first
    # Later runs find the sandbox's slots taken by the first run's sleeping calls. (A call whose
    # run ended before its goroutine reached Python never runs and frees its slot, so under
    # load a few later calls may be accepted.)
    for line in later:
        count, message = line.split(" ", 1)
        assert int(count) > 700 and message.startswith("too many host callbacks in flight"), later


def test_state_operations_obey_the_timeout_and_close():
    out = run_case("""
        import threading, time, eryx
        s = eryx.Session(execution_timeout_ms=300)
        s.execute('class L:\\n    def __reduce__(self):\\n        while True: pass\\nx = L()\\nkeep = 1')
        t0 = time.monotonic()
        try:
            s.snapshot_state()
            snap = 'returned'
        except eryx.TimeoutError as e:
            snap = 'TimeoutError state_lost=%s' % e.state_lost
        snap_s = time.monotonic() - t0
        kept = s.execute('print(keep)').stdout

        s.execute('class D:\\n    def __del__(self):\\n        while True:\\n            try:\\n                while True: pass\\n            except BaseException: pass\\nd = D()')
        try:
            s.clear_state()
            clear = 'returned'
        except eryx.TimeoutError as e:
            clear = 'TimeoutError state_lost=%s' % e.state_lost

        s.execute('import time\\nclass S:\\n    def __reduce__(self):\\n        return (time.sleep, (3600,))\\nx = S()')
        data = s.snapshot_state()
        try:
            s.restore_state(data)
            restore = 'returned'
        except eryx.TimeoutError:
            restore = 'TimeoutError'

        c = eryx.Session()
        c.execute('class L:\\n    def __reduce__(self):\\n        while True: pass\\nx = L()')
        threading.Timer(0.3, c.close).start()
        try:
            c.snapshot_state()
            closed = 'returned'
        except eryx.CancelledError as e:
            closed = str(e)
        report(snap=snap, snap_s=snap_s, kept=kept, clear=clear, restore=restore, closed=closed)
    """, wall_s=60)
    rep = out.check()
    assert rep["snap"] == "TimeoutError state_lost=False" and rep["snap_s"] < 3
    assert rep["kept"] == "1"
    assert rep["clear"] == "TimeoutError state_lost=True"
    assert rep["restore"] == "TimeoutError"
    assert rep["closed"] == "Session was closed during execution"


def test_trap_during_restore_resets_the_session():
    out = run_case("""
        import eryx
        s = eryx.Session()
        s.execute('import os\\nclass X:\\n    def __reduce__(self):\\n        return (os._exit, (3,))\\nx = X()')
        data = s.snapshot_state()
        s.execute('y = 1')
        try:
            s.restore_state(data)
            err = None
        except eryx.EryxError as e:
            err = [type(e).__name__, e.state_lost]
        report(err=err, after=s.execute('print("y" in globals())').stdout, snap=len(s.snapshot_state()) > 0)
    """, wall_s=60)
    rep = out.check()
    assert rep["err"] == ["ExecutionError", True]
    assert rep["after"] == "False"
    assert rep["snap"] is True


def test_fuel_cannot_be_switched_off_from_the_guest():
    out = run_case("""
        import eryx
        s = eryx.Session(resource_limits=eryx.ResourceLimits(max_fuel=2_000_000_000, execution_timeout_ms=60_000))
        s.execute(%r + "g['_start_fuel'] = lambda: None")
        used = s.execute('x = 0\\nfor i in range(10000):\\n    x += i').fuel_consumed
        try:
            s.execute('while True: pass')
            outcome = 'returned'
        except eryx.ResourceLimitError as e:
            outcome = str(e)
        report(used=used, outcome=outcome)
    """ % DRIVER, wall_s=120)
    rep = out.check()
    assert rep["used"] > 1_000_000
    assert rep["outcome"].startswith("execution ran out of fuel (max_fuel=2000000000)")


def test_memory_limit_classification_survives_exit():
    out = run_case("""
        import eryx
        sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(max_memory_bytes=64 << 20))
        try:
            sb.execute('try:\\n    bytearray(10**9)\\nexcept MemoryError:\\n    pass\\nimport os\\nos._exit(3)')
            got = 'returned'
        except eryx.EryxError as e:
            got = type(e).__name__
        report(got=got)
    """, wall_s=60)
    assert out.check()["got"] == "ResourceLimitError"


def test_forged_result_is_rejected_by_the_host():
    out = run_case("""
        import eryx
        s = eryx.Session()
        s.execute(%r + "g['_capture_result'] = lambda: {'result_json': 'NaN'}")
        r = s.execute('result = 1')
        report(result=r.result, result_json=r.result_json, result_error=r.result_error)
    """ % DRIVER, wall_s=60)
    rep = out.check()
    assert rep == {"result": None, "result_json": None,
                   "result_error": "result was rejected by the host: it is not valid JSON"}
