"""Issue 11: hostile guests against the host's network layer. Each case runs in its own process
under wall-clock and memory bounds (_harness.run_case); the servers are in that process too,
on 127.0.0.1."""

import textwrap

from _harness import run_case


# Guest code of the cases.
HOLD_FLOODED = """
import socket, time
conns = [socket.create_connection(("127.0.0.1", {FLOOD})) for _ in range(50)]
for c in conns:
    c.recv(1)  # start reading, then never again
try:
    socket.create_connection(("127.0.0.1", {FLOOD}))
except PermissionError as e:
    print(e)
time.sleep(3)
"""
CONNECT_UNTIL_LIMIT = """
import socket
n, kept = 0, []
while True:
    try:
        socket.create_connection(("10.0.0.1", 80))
    except PermissionError:
        pass
    s = socket.create_connection(("127.0.0.1", {DISCARD}))
    n += 1
    if n % 2:
        s.close()
    else:
        kept.append(s)  # left open: the limit refuses more until the run ends
"""
CONNECT_FOREVER = """
import socket
while True:
    try:
        socket.create_connection(("10.0.0.1", 80))
    except PermissionError:
        pass
    socket.create_connection(("127.0.0.1", {DISCARD})).close()
"""
SEND_1GIB = """
import socket
s = socket.create_connection(("127.0.0.1", {port}))
chunk = b"y" * (1 << 20)
for _ in range(1024):
    s.sendall(chunk)
print("sent")
"""
RECV_PAST_DEADLINE = """
import socket
s = socket.create_connection(("127.0.0.1", {SINK}))
while True:
    try:
        s.recv(10)
    except BaseException:
        pass
"""


def case(body, **guest):
    """The servers, the guest code constants, then the case."""
    consts = "".join("%s = %r\n" % kv for kv in guest.items())
    return SERVERS + consts + textwrap.dedent(body)

# Local servers for the cases: FLOOD sends endlessly to every client, SINK reads nothing,
# DISCARD reads and drops everything, HANG accepts and stays silent.
SERVERS = """
import os, socket, threading, time, eryx

def serve(handler):
    srv = socket.create_server(("127.0.0.1", 0))
    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1]

def flood(c):
    chunk = b"x" * 65536
    try:
        while True:
            c.sendall(chunk)
    except OSError:
        pass

def sink(c):
    time.sleep(600)

def discard(c):
    try:
        while c.recv(1 << 20):
            pass
    except OSError:
        pass

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def fds():
    return len(os.listdir("/proc/self/fd"))

FLOOD, SINK, DISCARD = serve(flood), serve(sink), serve(discard)
net = eryx.NetConfig().allow_localhost()
"""


def test_open_max_connections_and_never_read():
    # 50 connections whose peers send as fast as they can, never read by the guest: the host
    # reads ahead at most a bounded amount per connection, and other sandboxes stay responsive.
    out = run_case(case("""
        net.max_connections = 50
        sb = eryx.Sandbox(network=net, resource_limits=eryx.ResourceLimits(execution_timeout_ms=20000))
        before = rss_mib()
        result = {}
        def hold():
            r = sb.execute(HOLD_FLOODED.format(**globals()))
            result["stdout"] = r.stdout
        t = threading.Thread(target=hold)
        t.start()
        time.sleep(1.5)
        t0 = time.monotonic()
        other = eryx.Sandbox().execute("print(6*7)").stdout
        other_s = time.monotonic() - t0
        peak = rss_mib()
        t.join()
        report(stdout=result.get("stdout"), other=other, other_s=other_s, growth=peak - before)
    """, HOLD_FLOODED=HOLD_FLOODED), wall_s=90, max_rss_mib=1500)
    rep = out.check()
    assert rep["stdout"] == "not permitted: connection limit reached (max_connections=50)"
    assert rep["other"] == "42"
    assert rep["other_s"] < 5, rep
    # 50 x 256 KiB of read-ahead plus buffers: far below what an unbounded reader would hold
    # (the flood runs at GB/s on loopback).
    assert rep["growth"] < 300, rep


def test_connect_flood():
    # A guest that connects and closes as fast as it can, plus refused attempts, until its
    # timeout: the run ends on time and no descriptor leaks.
    out = run_case(case("""
        sb = eryx.Sandbox(network=net, resource_limits=eryx.ResourceLimits(execution_timeout_ms=3000))
        sb.execute("pass")
        before = fds()
        t0 = time.monotonic()
        try:
            sb.execute(CONNECT_UNTIL_LIMIT.format(**globals()))
            outcome = "returned"
        except eryx.TimeoutError:
            outcome = "timeout"
        except eryx.ExecutionError as e:
            outcome = "error: " + str(e).splitlines()[-1]
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
        report(outcome=outcome, elapsed=elapsed, leaked=fds() - before)
    """, CONNECT_UNTIL_LIMIT=CONNECT_UNTIL_LIMIT), wall_s=60, max_rss_mib=1500)
    rep = out.check()
    # The limit (10) is reached quickly: the guest sees PermissionError and the run fails.
    assert rep["outcome"].startswith("error: PermissionError: not permitted: connection limit reached"), rep
    assert rep["elapsed"] < 6, rep
    assert rep["leaked"] <= 2, rep


def test_connect_flood_until_timeout():
    out = run_case(case("""
        sb = eryx.Sandbox(network=net, resource_limits=eryx.ResourceLimits(execution_timeout_ms=2000))
        sb.execute("pass")
        before = fds()
        t0 = time.monotonic()
        try:
            sb.execute(CONNECT_FOREVER.format(**globals()))
            outcome = "returned"
        except eryx.TimeoutError:
            outcome = "timeout"
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
        report(outcome=outcome, elapsed=elapsed, leaked=fds() - before)
    """, CONNECT_FOREVER=CONNECT_FOREVER), wall_s=60, max_rss_mib=1500)
    rep = out.check()
    assert rep["outcome"] == "timeout"
    assert rep["elapsed"] < 6, rep
    assert rep["leaked"] <= 2, rep


def test_send_a_gibibyte():
    # To a peer that never reads: the send queue is bounded, the run ends at its timeout.
    # To a peer that reads: 1 GiB goes through with bounded host memory.
    out = run_case(case("""
        code = SEND_1GIB
        before = rss_mib()
        sb = eryx.Sandbox(network=net, resource_limits=eryx.ResourceLimits(execution_timeout_ms=2000))
        t0 = time.monotonic()
        try:
            sb.execute(code.format(port=SINK))
            stalled = "returned"
        except eryx.TimeoutError:
            stalled = "timeout"
        stalled_s = time.monotonic() - t0
        sb = eryx.Sandbox(network=net, resource_limits=eryx.ResourceLimits(execution_timeout_ms=60000))
        t0 = time.monotonic()
        sent = sb.execute(code.format(port=DISCARD)).stdout
        sent_s = time.monotonic() - t0
        report(stalled=stalled, stalled_s=stalled_s, sent=sent, sent_s=sent_s, growth=rss_mib() - before)
    """, SEND_1GIB=SEND_1GIB), wall_s=120, max_rss_mib=1500)
    rep = out.check()
    assert rep["stalled"] == "timeout" and rep["stalled_s"] < 6, rep
    assert rep["sent"] == "sent", rep
    assert rep["growth"] < 300, rep


def test_read_held_past_the_deadline():
    # A guest that swallows the interrupt and goes back to a blocked read is stopped hard.
    out = run_case(case("""
        sb = eryx.Sandbox(network=net, resource_limits=eryx.ResourceLimits(execution_timeout_ms=500))
        t0 = time.monotonic()
        try:
            sb.execute(RECV_PAST_DEADLINE.format(**globals()))
            outcome = "returned"
        except eryx.TimeoutError:
            outcome = "timeout"
        elapsed = time.monotonic() - t0
        again = sb.execute("print('alive')").stdout
        report(outcome=outcome, elapsed=elapsed, again=again)
    """, RECV_PAST_DEADLINE=RECV_PAST_DEADLINE), wall_s=60, max_rss_mib=1500)
    rep = out.check()
    assert rep["outcome"] == "timeout"
    assert rep["elapsed"] < 5, rep
    assert rep["again"] == "alive"
