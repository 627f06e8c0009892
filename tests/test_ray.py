"""eryx.ray (API.md §14): sandbox pools and remote sessions on a real local Ray cluster.

One Ray instance for the module (``ray.init(num_cpus=2)``), shut down at the end. The shared
pool's two actors reserve the two CPUs; every other pool here asks for ``num_cpus=0`` so that
it can be scheduled next to it.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import textwrap
import time

import pytest

ray = pytest.importorskip("ray")

import eryx  # noqa: E402
import eryx.ray  # noqa: E402

pytestmark = pytest.mark.timeout(180, method="thread")

ZERO_CPU = {"num_cpus": 0}


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             resources={"sandbox_slot": 1})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(cluster):
    with eryx.ray.SandboxPool(num_actors=2, sandboxes_per_actor=2) as p:
        yield p


def _wait_dead(actor) -> None:
    """ray.kill is asynchronous: wait until the actor answers no more."""
    for _ in range(600):
        try:
            ray.get(actor.ready.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError("the killed actor is still alive")


def _pid_callback():
    return [{"name": "pid", "fn": os.getpid, "description": "the actor's process id"}]


# ---------------------------------------------------------------------------
# single runs


def test_execute_returns_the_result(pool):
    r = pool.execute("print(6 * 7)\nresult = {'a': [1, 2]}")
    assert isinstance(r, eryx.ExecuteResult)
    assert r.stdout == "42"
    assert r.result == {"a": [1, 2]}
    assert r.duration_ms > 0


def test_guest_failures_raise_the_local_exceptions(pool):
    with pytest.raises(eryx.ExecutionError) as info:
        pool.execute("print('before')\nraise KeyError('k')")
    assert type(info.value) is eryx.ExecutionError
    assert info.value.exc_type == "KeyError"
    assert info.value.stdout == "before"
    assert "KeyError" in str(info.value)

    with pytest.raises(eryx.TimeoutError):
        pool.execute("while True: pass",
                     resource_limits=eryx.ResourceLimits(execution_timeout_ms=200))
    with pytest.raises(eryx.ResourceLimitError) as info:
        pool.execute("while True: pass", resource_limits=eryx.ResourceLimits(max_fuel=1_000_000))
    assert info.value.limit == "max_fuel"


def test_invalid_arguments_raise_locally(pool):
    with pytest.raises(TypeError):
        pool.execute(b"print(1)")
    with pytest.raises(TypeError):  # a Sandbox argument check, made in the actor
        pool.execute("pass", callbacks=42)


def test_sandbox_kwargs_apply_to_one_run(pool):
    r = pool.execute("answer = 5", result_variable="answer")
    assert r.result == 5
    r = pool.execute("import os; print(os.environ['T'])", secrets={"T": {"value": "tok-123"}})
    assert r.stdout == "[REDACTED]"  # the placeholder, scrubbed from stdout
    # Callbacks run in the actor, a process of its own.
    r = pool.execute("print(await pid())", callbacks=_pid_callback())
    assert int(r.stdout) != os.getpid()
    # ...and the next default run is unaffected.
    assert pool.execute("answer = 5").result is None


def test_pool_limits_apply_to_every_run(cluster):
    limits = eryx.ResourceLimits(execution_timeout_ms=300)
    with eryx.ray.SandboxPool(num_actors=1, resource_limits=limits, actor_options=ZERO_CPU) as p:
        with pytest.raises(eryx.TimeoutError):
            p.execute("while True: pass")
        results = p.map(["while True: pass", "print(1)"], return_exceptions=True)
        assert isinstance(results[0], eryx.TimeoutError)
        assert results[1].stdout == "1"


def test_execute_async_and_least_loaded_dispatch(pool):
    # Two runs started together go to the two actors (the second sees the first's load),
    # which are two processes.
    async def both():
        return await asyncio.gather(*(
            pool.execute_async("print(await pid())", callbacks=_pid_callback())
            for _ in range(2)))

    results = asyncio.run(both())
    pids = {int(r.stdout) for r in results}
    assert len(pids) == 2

    async def failing():
        await pool.execute_async("1/0")

    with pytest.raises(eryx.ExecutionError) as info:
        asyncio.run(failing())
    assert info.value.exc_type == "ZeroDivisionError"


# ---------------------------------------------------------------------------
# many runs


def test_map_keeps_input_order(pool):
    results = pool.map([f"print({i})" for i in range(60)])
    assert [r.stdout for r in results] == [str(i) for i in range(60)]


def test_map_unordered_returns_every_result(pool):
    results = pool.map([f"print({i})" for i in range(60)], ordered=False)
    assert sorted(int(r.stdout) for r in results) == list(range(60))


def test_map_return_exceptions(pool):
    codes = ["print(0)", "raise ValueError('one')", "print(2)", "1/0"]
    results = pool.map(codes, return_exceptions=True)
    assert results[0].stdout == "0" and results[2].stdout == "2"
    assert isinstance(results[1], eryx.ExecutionError) and results[1].exc_type == "ValueError"
    assert isinstance(results[3], eryx.ExecutionError)
    assert results[3].exc_type == "ZeroDivisionError"
    with pytest.raises(eryx.ExecutionError) as info:
        pool.map(codes)
    assert info.value.exc_type in {"ValueError", "ZeroDivisionError"}


def _counting(codes):
    """A lazy input that says how many codes were taken from it."""
    taken = [0]

    def gen():
        for code in codes:
            taken[0] += 1
            yield code

    return gen(), taken


def test_imap_backpressure(pool):
    assert pool.capacity == 4
    codes, taken = _counting(f"print({i})" for i in range(300))
    seen = []
    for r in pool.imap(codes):
        # Never more than capacity + num_actors actor calls of at most _MAX_BATCH runs each
        # taken from the input and not yet returned.
        assert taken[0] - len(seen) <= \
            (pool.capacity + pool.num_actors) * eryx.ray.SandboxPool._MAX_BATCH
        seen.append(int(r.stdout))
    assert sorted(seen) == list(range(300))


def test_slow_runs_go_one_per_call(pool):
    # A batch aims at ~100 ms of work: runs of 200 ms travel alone, so imap reads no further
    # ahead than one run per call slot and yields each run as it finishes.
    codes, taken = _counting(f"import time\ntime.sleep(0.2)\nprint({i})" for i in range(12))
    seen = []
    for r in pool.imap(codes):
        assert taken[0] - len(seen) <= pool.capacity
        seen.append(int(r.stdout))
    assert sorted(seen) == list(range(12))


@pytest.fixture
def batching_pool(cluster):
    """A pool whose batches are as large as allowed (the target duration of a batch is out of
    reach), so that batch boundaries do not depend on timing: the first call carries one run,
    then each call carries min(_MAX_BATCH, the remaining runs / capacity)."""
    with eryx.ray.SandboxPool(num_actors=1, sandboxes_per_actor=1, max_retries=3,
                              network=eryx.NetConfig().allow_localhost(),
                              actor_options=ZERO_CPU) as p:
        p._BATCH_TARGET_S = 1e9
        yield p


def test_batches_keep_order_and_failures_in_place(batching_pool):
    p = batching_pool
    codes = [f"print({i})" for i in range(150)]
    codes[3] = "raise KeyError('three')"
    codes[70] = "raise ValueError('seventy')"
    codes[71] = "1/0"
    results = p.map(codes, return_exceptions=True)
    assert len(results) == 150
    for i, r in enumerate(results):
        if i == 3:
            assert isinstance(r, eryx.ExecutionError) and r.exc_type == "KeyError"
        elif i == 70:
            assert isinstance(r, eryx.ExecutionError) and r.exc_type == "ValueError"
        elif i == 71:
            assert isinstance(r, eryx.ExecutionError) and r.exc_type == "ZeroDivisionError"
        else:
            assert r.stdout == str(i)
    # Ordered, without return_exceptions: the first failure in input order is raised.
    with pytest.raises(eryx.ExecutionError) as info:
        p.map(codes[:70])
    assert info.value.exc_type == "KeyError"
    # Unordered: every result, each once.
    fine = [f"print({i})" for i in range(150)]
    assert sorted(int(r.stdout) for r in p.map(fine, ordered=False)) == list(range(150))
    # A lazy input is read ahead by more than one run per call slot (runs travel in batches),
    # but by no more than the calls in flight carry.
    codes, taken = _counting(iter(fine))
    ahead = 0
    for n, r in enumerate(p.imap(codes)):
        ahead = max(ahead, taken[0] - n)
        assert taken[0] - n <= (p.capacity + p.num_actors) * eryx.ray.SandboxPool._MAX_BATCH
    assert ahead > p.capacity
    ordered = p.imap(iter(fine), ordered=True)
    assert [r.stdout for r in ordered] == [str(i) for i in range(150)]


class _Recorder:
    """An HTTP server on 127.0.0.1 that counts the requests for /run/<i>, and kills the pool's
    actor while it serves /run/<kill_at> (the run is blocked in its request: the actor dies in
    the middle of a batch), on the first such request or on every one."""

    def __init__(self, pool, kill_at, every_time=False):
        import http.server
        import threading

        self.pool, self.kill_at, self.every_time = pool, kill_at, every_time
        self.counts: dict[int, int] = {}
        self.kills = 0
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                i = int(self.path.rsplit("/", 1)[1])
                recorder.counts[i] = recorder.counts.get(i, 0) + 1
                if i == recorder.kill_at and (recorder.every_time or recorder.kills == 0):
                    recorder.kills += 1
                    victim = recorder.pool.actors[0]
                    ray.kill(victim)
                    _wait_dead(victim)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def codes(self, n):
        port = self.server.server_address[1]
        return [f"import urllib.request\n"
                f"urllib.request.urlopen('http://127.0.0.1:{port}/run/{i}', timeout=30).read()\n"
                f"print({i})" for i in range(n)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_actor_killed_mid_batch_every_run_retried(batching_pool):
    p = batching_pool
    rec = _Recorder(p, kill_at=30)
    try:
        victim = p.actors[0]
        results = p.map(rec.codes(60))
    finally:
        rec.close()
    assert [r.stdout for r in results] == [str(i) for i in range(60)]
    assert rec.kills == 1
    assert p.actors[0]._actor_id != victim._actor_id
    # Call 1 carried run 0; call 2 runs 1..59 and died in run 30: runs 1..30 ran twice, the
    # rest of the lost batch once (on the replacement actor).
    assert rec.counts == {i: 1 if i == 0 or i > 30 else 2 for i in range(60)}


def test_actor_killed_mid_batch_without_retries(cluster):
    with eryx.ray.SandboxPool(num_actors=1, sandboxes_per_actor=1, max_retries=0,
                              network=eryx.NetConfig().allow_localhost(),
                              actor_options=ZERO_CPU) as p:
        p._BATCH_TARGET_S = 1e9
        rec = _Recorder(p, kill_at=30)
        try:
            results = p.map(rec.codes(60), return_exceptions=True)
        finally:
            rec.close()
    assert results[0].stdout == "0"
    # Every run of the lost batch is lost: max_retries=0 allows no second attempt.
    for r in results[1:]:
        assert isinstance(r, eryx.EryxError) and "run lost: its actor died" in str(r)


def test_a_run_that_kills_its_actor_every_time_takes_no_other_run_with_it(batching_pool):
    p = batching_pool
    p.max_retries = 1
    rec = _Recorder(p, kill_at=30, every_time=True)
    try:
        results = p.map(rec.codes(60), return_exceptions=True)
    finally:
        rec.close()
    # The lost batch's runs are retried one per call, so only run 30 exhausts its retries.
    assert rec.kills == 2
    assert isinstance(results[30], eryx.EryxError)
    assert "run lost: its actor died on each of 2 attempt(s)" in str(results[30])
    assert [r.stdout for i, r in enumerate(results) if i != 30] == \
        [str(i) for i in range(60) if i != 30]


def test_imap_ordered(pool):
    out = [r.stdout for r in pool.imap((f"print({i})" for i in range(30)), ordered=True)]
    assert out == [str(i) for i in range(30)]


def test_killed_actor_mid_map_is_replaced_and_runs_retried(pool):
    codes = [f"import time\ntime.sleep(0.05)\nprint({i})" for i in range(40)]
    victim = pool.actors[0]
    results = []
    for r in pool.imap(codes):
        results.append(int(r.stdout))
        if len(results) == 1:
            ray.kill(victim)
    assert sorted(results) == list(range(40))
    assert victim._actor_id not in {a._actor_id for a in pool.actors}
    # The replacement works.
    assert pool.execute("print('after')").stdout == "after"


def test_retries_are_bounded_by_max_retries(cluster):
    with eryx.ray.SandboxPool(num_actors=1, max_retries=0, actor_options=ZERO_CPU) as p:
        victim = p.actors[0]
        ray.kill(victim)
        _wait_dead(victim)
        with pytest.raises(eryx.EryxError, match="actor died"):
            p.execute("print(1)")
        # The dead actor was replaced: the next run succeeds.
        assert p.execute("print(1)").stdout == "1"
    with eryx.ray.SandboxPool(num_actors=1, max_retries=1, actor_options=ZERO_CPU) as p:
        victim = p.actors[0]
        ray.kill(victim)
        _wait_dead(victim)
        assert p.execute("print(2)").stdout == "2"
        assert p.actors[0]._actor_id != victim._actor_id


# ---------------------------------------------------------------------------
# construction, options, factories


def test_defaults_one_actor_per_cluster_cpu(cluster):
    with eryx.ray.SandboxPool(actor_options=ZERO_CPU) as p:
        assert p.num_actors == 2 == len(p.actors)
        assert p.sandboxes_per_actor == 1
        assert p.capacity == 2
        assert p.execute("print('ok')").stdout == "ok"


def test_actor_options_resources_and_runtime_env(cluster):
    opts = {"num_cpus": 0, "resources": {"sandbox_slot": 1},
            "runtime_env": {"env_vars": {"ERYX_RAY_TEST": "from-runtime-env"}}}
    cb = [{"name": "env", "fn": lambda: os.environ.get("ERYX_RAY_TEST", ""), "description": ""}]
    with eryx.ray.SandboxPool(num_actors=1, actor_options=opts) as p:
        assert p.execute("print(await env())", callbacks=cb).stdout == "from-runtime-env"
        assert ray.available_resources().get("sandbox_slot", 0) == 0


def test_factory_is_shipped_to_the_actors(cluster, tmp_path):
    pkg = tmp_path / "raypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 'from the factory'\n")
    with eryx.SandboxFactory(packages=[str(pkg)]) as factory:
        with eryx.ray.SandboxPool(num_actors=1, factory=factory, actor_options=ZERO_CPU) as p:
            assert p.execute("import raypkg; print(raypkg.VALUE)").stdout == "from the factory"
            assert [r.stdout for r in p.map(["import raypkg; print(raypkg.VALUE)"] * 3)] == \
                ["from the factory"] * 3
            s = p.session()
            assert s.execute("import raypkg; print(raypkg.VALUE)").stdout == "from the factory"


def test_constructor_validation(cluster):
    with pytest.raises(ValueError):
        eryx.ray.SandboxPool(num_actors=0)
    with pytest.raises(ValueError):
        eryx.ray.SandboxPool(sandboxes_per_actor=-1)
    with pytest.raises(TypeError):
        eryx.ray.SandboxPool(resource_limits={"max_fuel": 1})
    with pytest.raises(TypeError):
        eryx.ray.SandboxPool(num_actors=1, extra=1)


def test_a_sandbox_that_cannot_be_made_fails_the_constructor(cluster):
    tiny = eryx.ResourceLimits(max_memory_bytes=2 << 20)
    with pytest.raises(eryx.InitializationError, match="max_memory_bytes"):
        eryx.ray.SandboxPool(num_actors=1, resource_limits=tiny, actor_options=ZERO_CPU)


def test_close_kills_the_actors(cluster):
    p = eryx.ray.SandboxPool(num_actors=1, actor_options=ZERO_CPU)
    actor = p.actors[0]
    with pytest.raises(TypeError):
        pickle.dumps(p)
    p.close()
    p.close()
    assert p.closed
    _wait_dead(actor)
    with pytest.raises(ValueError, match="SandboxPool is closed"):
        p.execute("pass")
    with pytest.raises(ValueError, match="SandboxPool is closed"):
        p.map(["pass"])


def test_close_during_a_map_ends_it(cluster):
    p = eryx.ray.SandboxPool(num_actors=1, actor_options=ZERO_CPU)
    results = p.imap(f"print({i})" for i in range(20))
    assert next(results).stdout.isdigit()
    p.close()
    with pytest.raises(ValueError, match="SandboxPool is closed"):
        list(results)
    with pytest.raises(ValueError, match="SandboxPool is closed"):
        p.session()


# ---------------------------------------------------------------------------
# remote sessions


def test_remote_session_keeps_state(pool):
    with pool.session() as s:
        s.execute("x = 41\ndef f(): return x + 1")
        assert s.execute("print(f())").stdout == "42"
        assert s.execution_count == 2
        with pytest.raises(eryx.ExecutionError) as info:
            s.execute("raise RuntimeError('kept')")
        assert info.value.exc_type == "RuntimeError" and not info.value.state_lost
        assert s.execute("print(x)").stdout == "41"

        snap = s.snapshot_state()
        assert isinstance(snap, bytes)
        s.clear_state()
        with pytest.raises(eryx.ExecutionError):
            s.execute("x")
        s.restore_state(snap)
        assert s.execute("print(f())").stdout == "42"
        s.reset()
        assert s.execution_count == 0

        s.execution_timeout_ms = 300
        assert s.execution_timeout_ms == 300
        assert s.resource_limits.execution_timeout_ms == 300
        with pytest.raises(eryx.TimeoutError):
            s.execute("while True: pass")
        assert s.last_snapshot_skipped == []
    assert s.closed
    with pytest.raises(ValueError, match="Session is closed"):
        s.execute("pass")


def test_sessions_spread_over_the_actors(pool):
    a, b = pool.session(), pool.session()
    try:
        assert a.actor._actor_id != b.actor._actor_id
        a.execute("v = 'a'")
        b.execute("v = 'b'")
        assert (a.execute("print(v)").stdout, b.execute("print(v)").stdout) == ("a", "b")
    finally:
        a.close()
        b.close()


def test_remote_session_async_and_kwargs(pool):
    s = pool.session(result_variable="out", max_fuel=10_000_000)
    try:
        async def run():
            await s.execute_async("n = 3")
            return await s.execute_async("out = n * 2")

        assert asyncio.run(run()).result == 6
        assert s.fuel_limit == 10_000_000
        with pytest.raises(eryx.ResourceLimitError):
            s.execute("while True: pass")
    finally:
        s.close()


def test_remote_session_lost_with_its_actor(cluster):
    with eryx.ray.SandboxPool(num_actors=1, actor_options=ZERO_CPU) as p:
        s = p.session()
        s.execute("x = 1")
        victim = s.actor
        ray.kill(victim)
        _wait_dead(victim)
        for _ in range(2):  # the next call, and every later one
            with pytest.raises(eryx.EryxError) as info:
                s.execute("print(x)")
            assert str(info.value) == "session lost: its actor died"
            assert info.value.state_lost is True
        s.close()
        # The pool replaced the actor: new runs and sessions work.
        assert p.actors[0]._actor_id != victim._actor_id
        assert p.execute("print(1)").stdout == "1"
        assert p.session().execute("print(2)").stdout == "2"


# ---------------------------------------------------------------------------
# the optional extra


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_import_without_ray_names_the_extra():
    proc = _python("""
        import sys
        sys.modules["ray"] = None  # makes `import ray` fail as if Ray were not installed
        try:
            import eryx.ray
        except ImportError as exc:
            print("ImportError:", exc)
        else:
            print("imported")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ImportError:")
    assert "goeryx[ray]" in proc.stdout


def test_import_eryx_never_imports_ray():
    proc = _python("""
        import sys, eryx
        eryx.Sandbox().execute("pass")
        dir(eryx)
        print("ray" in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# ---------------------------------------------------------------------------
# a cluster started with `ray start --head`, and the example script


def test_example_on_a_cluster_made_with_ray_start():
    import shutil
    import signal
    import socket
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A short directory: Ray's unix socket paths must stay under 108 bytes.
    temp = tempfile.mkdtemp(prefix="eryxray", dir="/tmp")
    # The head and the driver agree on token authentication (Ray 2.5x enables it in ray start).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_AUTH_MODE"] = "token"
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True)
    try:
        # `ray start --block` prints its next steps once the head runs.
        lines = []
        for line in head.stdout:
            lines.append(line)
            if "Ray runtime started" in line:
                break
        else:
            raise AssertionError("ray start --head failed:\n" + "".join(lines))
        proc = subprocess.run(
            [sys.executable, os.path.join(root, "examples", "ray_cluster.py"),
             "--address", f"127.0.0.1:{port}", "--runs", "60"],
            capture_output=True, text=True, timeout=150, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "1 node(s): 1 actors x 2 sandboxes = 2 runs in flight" in proc.stdout
        assert "60 runs in " in proc.stdout
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
        # The head's processes share its process group: make sure none is left.
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)
