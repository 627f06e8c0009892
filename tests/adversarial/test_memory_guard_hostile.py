"""Issue 15: guest memory accesses run without bounds checks (guarded linear memory,
RATIONALE.md "Guarded linear memory"); an out-of-bounds access faults and must end as the
ordinary out-of-bounds trap, with the host alive, whatever SIGSEGV handlers the host Python has,
while a fault of the host itself still crashes it. Each case runs in its own process
(_harness.run_case)."""

import platform
import signal

import pytest

from _harness import run_case

# Guest code whose interpreter loads from linear-memory address 0xF0000000, far beyond any
# memory it has: LOAD_CONST with an index (EXTENDED_ARG) that puts co_consts[index] there.
# CPython does not check bytecode, so any guest can do this.
WILD_LOAD = r'''
import opcode
def f(): pass
base = id(()) + 12  # ob_item of the empty tuple (wasm32: refcount, type, size)
arg = ((0xF0000000 - base) // 4) & 0xFFFFFFFF
op = opcode.opmap
code = bytes([op["RESUME"], 0,
              op["EXTENDED_ARG"], arg >> 24 & 255, op["EXTENDED_ARG"], arg >> 16 & 255,
              op["EXTENDED_ARG"], arg >> 8 & 255, op["LOAD_CONST"], arg & 255,
              op["RETURN_VALUE"], 0])
f.__code__ = f.__code__.replace(co_code=code, co_consts=(), co_stacksize=1)
f()
'''

# The child's prelude: the wild load in a fresh sandbox, as (error class, first line).
PROBE = """
    import eryx
    WILD_LOAD = %r
    def wild(**kw):
        try:
            eryx.Sandbox(**kw).execute(WILD_LOAD)
            return ['returned', '']
        except eryx.EryxError as e:
            return [type(e).__name__, str(e).splitlines()[0]]
    def guard_regions():
        # 8 GiB PROT_NONE reservations in our address space (the guard regions of memories).
        n = 0
        for line in open('/proc/self/maps'):
            rng, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in rng.split('-'))
            n += perms.startswith('---') and hi - lo >= 4 << 30
        return n
""" % WILD_LOAD

GUARDED_PLATFORM = platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")


def _trap(rep_value):
    assert rep_value[0] == "ExecutionError", rep_value
    assert "out of bounds memory access" in rep_value[1], rep_value


def test_wild_guest_load_is_a_trap_guarded_and_checked():
    script = PROBE + """
    first = wild()
    regions = guard_regions()
    again = eryx.Sandbox().execute('print(6 * 7)').stdout
    report(first=first, regions=regions, again=again)
    """
    guarded = run_case(script, wall_s=120).check()
    checked = run_case(script, wall_s=120, env={"GOERYX_MEMORY_GUARD": "0"}).check()
    _trap(guarded["first"])
    assert guarded["first"] == checked["first"]  # the same error with or without the guard
    assert guarded["again"].strip() == checked["again"].strip() == "42"
    assert checked["regions"] == 0
    if GUARDED_PLATFORM:
        assert guarded["regions"] >= 1, "no guard reservation: the memory guard is off"


@pytest.mark.parametrize("when", ["before-import", "after-import"])
def test_wild_load_with_faulthandler(when):
    # faulthandler's handler for SIGSEGV dumps a traceback and kills the process: the guard's
    # handler must see the guest's fault first, whether faulthandler was enabled before goeryx
    # was loaded (the guard installs in front of it) or after (the guard goes in front again).
    enable = "    import faulthandler; faulthandler.enable()\n"
    script = (enable if when == "before-import" else "") + PROBE + (
        "    sb = eryx.Sandbox(); sb.execute('1')\n" + enable if when == "after-import" else "") + """
    results = [wild() for _ in range(3)]
    import faulthandler
    report(results=results, enabled=faulthandler.is_enabled())
    """
    out = run_case(script, wall_s=120)
    rep = out.check()
    assert rep["enabled"] is True
    for r in rep["results"]:
        _trap(r)
    assert "Fatal Python error" not in out.stderr


def test_wild_loads_in_many_threads():
    out = run_case(PROBE + """
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda _: wild(), range(48)))
    ok = eryx.Sandbox().execute('print("alive")').stdout
    report(results=results, ok=ok)
    """, wall_s=300, max_rss_mib=4096)
    rep = out.check()
    for r in rep["results"]:
        _trap(r)
    assert rep["ok"].strip() == "alive"


def test_wild_load_after_growth_and_a_callback():
    # The guest grows its memory (a 64 MiB bytearray), calls a host callback, and after the
    # callback returns (compiled code entered again) does the wild load.
    out = run_case(PROBE + """
    def ping() -> str:
        return 'pong'
    sb = eryx.Sandbox(callbacks=[{'name': 'ping', 'fn': ping}])
    code = 'big = bytearray(64 << 20)\\nbig[-1] = 1\\nprint(await ping())\\n' + WILD_LOAD
    try:
        r = sb.execute(code)
        res = ['returned', r.stdout]
    except eryx.EryxError as e:
        res = [type(e).__name__, str(e).splitlines()[0]]
    report(res=res)
    """, wall_s=120)
    _trap(out.check()["res"])


@pytest.mark.parametrize("faulthandler_on", [False, True])
def test_host_nil_dereference_still_crashes(faulthandler_on):
    # A fault of the host's own code (here a NULL read through ctypes, after goeryx has run
    # guest code) goes to the handlers that were there before: the process dies of SIGSEGV,
    # after faulthandler's traceback when it is enabled.
    script = PROBE + """
    import ctypes, faulthandler
    if %r:
        faulthandler.enable()
    _trap_first = wild()
    eryx.Sandbox().execute('1')  # the guard goes in front of faulthandler again
    ctypes.string_at(0)
    report(survived=True)
    """ % faulthandler_on
    out = run_case(script, wall_s=120)
    assert out.returncode == -signal.SIGSEGV, (out.returncode, out.stderr[-2000:])
    assert ("Fatal Python error: Segmentation fault" in out.stderr) == faulthandler_on, out.stderr[-2000:]
