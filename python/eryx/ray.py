"""Scale-out on Ray (API.md §14): sandbox pools and remote sessions across a Ray cluster.

Needs the optional extra ``goeryx[ray]``. ``import eryx`` never imports Ray; importing this
module without Ray installed raises ``ImportError`` naming the extra.

    >>> import ray, eryx.ray
    >>> ray.init()
    >>> with eryx.ray.SandboxPool(num_actors=2) as pool:
    ...     results = pool.map([f"print({i})" for i in range(1000)])

Each pool actor is a Ray actor process holding one goeryx runtime; it runs up to
``sandboxes_per_actor`` sandboxes at once on threads (a run releases the GIL). Runs go to the
least-loaded actor; ``map``/``imap`` send them in batches (a Ray call costs more than a small
run). A stateless run whose actor dies is retried on another actor; a
``RemoteSession`` whose actor dies reports that its state is lost.
"""

from __future__ import annotations

try:
    import ray
    from ray.exceptions import RayActorError
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "eryx.ray needs Ray, which is not installed: pip install 'goeryx[ray]'"
    ) from exc

import collections
import itertools
import operator
import pickle
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._errors import EryxError

if TYPE_CHECKING:
    from ._limits import ResourceLimits
    from ._result import ExecuteResult

__all__ = ["RemoteSession", "SandboxPool"]

# ---------------------------------------------------------------------------
# The actor (runs in a Ray worker process)


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickle, else an EryxError describing it (so that a
    failure is reported as itself, never as a Ray serialisation error)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return EryxError(f"{type(exc).__name__}: {exc}")


class _PoolActor:
    """One runtime per process; runs are threads (Ray's max_concurrency)."""

    def __init__(
        self, factory_bytes: bytes | None, resource_limits: Any, network: Any, runs_at_once: int
    ) -> None:
        from ._factory import SandboxFactory
        from ._sandbox import Sandbox

        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()
        # Stateless runs at once (sessions have threads of their own: max_concurrency is higher).
        self._runs = threading.BoundedSemaphore(runs_at_once)
        self._defaults: dict[str, Any] = {}
        if resource_limits is not None:
            self._defaults["resource_limits"] = resource_limits
        if network is not None:
            self._defaults["network"] = network
        # A failure here is kept and reported by ready() as itself (an InitializationError, say),
        # rather than as a Ray actor-creation error.
        self._init_error: BaseException | None = None
        try:
            self._factory = SandboxFactory.from_bytes(factory_bytes) if factory_bytes else None
            make = self._factory.create_sandbox if self._factory is not None else Sandbox
            self._sandbox = make(**self._defaults)
        except Exception as exc:
            self._init_error = _portable(exc)

    def ready(self) -> tuple[bool, Any]:
        return self._init_error is None, self._init_error

    def execute(self, code: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        if self._init_error is not None:
            return False, self._init_error
        with self._runs:
            return self._execute(code, kwargs)

    def execute_batch(self, codes: list[str]) -> tuple[float, bytes]:
        """Runs several codes one after another in this call's thread (so a batch takes one
        of the actor's run slots, and the actor runs ``runs_at_once`` batches at once).

        Returns the batch's wall time in the actor (the pool sizes later batches from it)
        and the ``(ok, value)`` replies, in order, pickled once as one bytes object: Ray
        then moves one buffer instead of serialising every result with cloudpickle."""
        if self._init_error is not None:
            return 0.0, pickle.dumps([(False, self._init_error)] * len(codes))
        with self._runs:
            start = time.perf_counter()
            replies = [self._execute(code, {}) for code in codes]
            elapsed = time.perf_counter() - start
        return elapsed, pickle.dumps(replies, protocol=pickle.HIGHEST_PROTOCOL)

    def _execute(self, code: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        try:
            if not kwargs:
                return True, self._sandbox.execute(code)
            from ._sandbox import Sandbox

            make = self._factory.create_sandbox if self._factory is not None else Sandbox
            with make(**{**self._defaults, **kwargs}) as sandbox:
                return True, sandbox.execute(code)
        except Exception as exc:
            return False, _portable(exc)

    def open_session(self, sid: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        if self._init_error is not None:
            return False, self._init_error
        try:
            from ._session import Session

            make = self._factory.create_session if self._factory is not None else Session
            session = make(**{**self._defaults, **kwargs})
            with self._lock:
                self._sessions[sid] = session
            return True, None
        except Exception as exc:
            return False, _portable(exc)

    def _session(self, sid: str) -> Any:
        with self._lock:
            session = self._sessions.get(sid)
        if session is None:
            raise ValueError("Session is closed")
        return session

    def session_call(self, sid: str, name: str, args: tuple, kwargs: dict) -> tuple[bool, Any]:
        try:
            return True, getattr(self._session(sid), name)(*args, **kwargs)
        except Exception as exc:
            return False, _portable(exc)

    def session_get(self, sid: str, name: str) -> tuple[bool, Any]:
        try:
            return True, getattr(self._session(sid), name)
        except Exception as exc:
            return False, _portable(exc)

    def session_set(self, sid: str, name: str, value: Any) -> tuple[bool, Any]:
        try:
            setattr(self._session(sid), name, value)
            return True, None
        except Exception as exc:
            return False, _portable(exc)

    def close_session(self, sid: str) -> None:
        with self._lock:
            session = self._sessions.pop(sid, None)
        if session is not None:
            session.close()


_remote_actor: Any = None


def _actor_class() -> Any:
    global _remote_actor
    if _remote_actor is None:
        _remote_actor = ray.remote(_PoolActor)
    return _remote_actor


def _unwrap(reply: tuple[bool, Any]) -> Any:
    ok, value = reply
    if ok:
        return value
    raise value


# ---------------------------------------------------------------------------
# The pool (runs in the driver)


class SandboxPool:
    """Ray actors that each hold a goeryx runtime and run many sandboxes at once.

    Args:
        num_actors: How many actors to start; default one per CPU of the cluster.
        sandboxes_per_actor: How many runs each actor runs at once; default its CPUs
            (``actor_options["num_cpus"]``, 1 unless given).
        resource_limits: The ``ResourceLimits`` of every run (and the default of sessions).
        network: The ``NetConfig`` of every run (and the default of sessions).
        factory: A ``SandboxFactory``; its bytes go to the object store once and every actor
            creates its sandboxes from it.
        actor_options: Passed to the actor class's ``.options()``: ``num_cpus``, ``memory``,
            ``resources``, ``scheduling_strategy`` (placement groups), ``runtime_env``, ...
        max_retries: How many times a run whose actor died is retried on another actor.

    The constructor starts Ray (``ray.init()``) if it is not running yet, and returns once
    every actor has made its sandbox: a sandbox that cannot be made (a memory cap too small
    to start, say) raises the same exception as a local ``Sandbox`` here.
    """

    def __init__(
        self,
        *,
        num_actors: int | None = None,
        sandboxes_per_actor: int | None = None,
        resource_limits: Any = None,
        network: Any = None,
        factory: Any = None,
        actor_options: dict[str, Any] | None = None,
        max_retries: int = 3,
    ) -> None:
        from ._factory import SandboxFactory
        from ._limits import ResourceLimits
        from ._netconfig import NetConfig

        for name, value in (("num_actors", num_actors), ("sandboxes_per_actor", sandboxes_per_actor)):
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if type(max_retries) is not int or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if resource_limits is not None and not isinstance(resource_limits, ResourceLimits):
            raise TypeError("resource_limits must be a ResourceLimits")
        if network is not None and not isinstance(network, NetConfig):
            raise TypeError("network must be a NetConfig")
        if factory is not None and not isinstance(factory, SandboxFactory):
            raise TypeError("factory must be a SandboxFactory")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError("actor_options must be a dict")

        self._closed = False
        self._actors: list[Any] = []
        if not ray.is_initialized():
            ray.init()
        options = {"num_cpus": 1, **(actor_options or {})}
        if num_actors is None:
            num_actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if sandboxes_per_actor is None:
            sandboxes_per_actor = max(1, int(options.get("num_cpus") or 1))
        self.num_actors = num_actors
        self.sandboxes_per_actor = sandboxes_per_actor
        self.max_retries = max_retries
        # Session calls get threads of their own beyond the runs' (a session queues its own
        # operations), so a busy actor still answers them.
        options.setdefault("max_concurrency", sandboxes_per_actor + 16)
        self._options = options
        # Shipped once: every actor gets the same object-store reference.
        self._factory_ref = ray.put(factory.to_bytes()) if factory is not None else None
        self._limits = resource_limits
        self._network = network
        self._lock = threading.Lock()
        self._load = [0] * num_actors  # runs in flight per actor slot
        self._sessions = [0] * num_actors  # open sessions per actor slot
        self._actors = [self._start_actor() for _ in range(num_actors)]
        # Wait for every actor (Ray waits for resources: an infeasible actor_options waits
        # until the cluster can place the actor). A sandbox that cannot be made raises here,
        # as locally.
        try:
            for reply in ray.get([a.ready.remote() for a in self._actors]):
                _unwrap(reply)
        except RayActorError as exc:
            self.close()
            raise EryxError(f"SandboxPool actor failed to start: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _start_actor(self) -> Any:
        return _actor_class().options(**self._options).remote(
            self._factory_ref, self._limits, self._network, self.sandboxes_per_actor)

    # -- bookkeeping

    @property
    def actors(self) -> list[Any]:
        """The current actor handles (a dead actor is replaced when the pool notices)."""
        with self._lock:
            return list(self._actors)

    @property
    def capacity(self) -> int:
        """``num_actors × sandboxes_per_actor``: the most runs the pool runs at once."""
        return self.num_actors * self.sandboxes_per_actor

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("SandboxPool is closed")

    def _acquire(
        self, runs: int = 1, busy: list[int] | None = None, per_slot: int = 0
    ) -> tuple[int, Any]:
        """The least-loaded actor, with ``runs`` counted against its load. ``busy``: a map's
        calls in flight per slot; slots with ``per_slot`` of them are skipped."""
        with self._lock:
            if self._closed:  # closed by another thread during a map
                raise ValueError("SandboxPool is closed")
            slots = range(len(self._load))
            if busy is not None:
                slots = [i for i in slots if busy[i] < per_slot] or list(slots)
            slot = min(slots, key=self._load.__getitem__)
            self._load[slot] += runs
            return slot, self._actors[slot]

    def _release(self, slot: int, runs: int = 1) -> None:
        with self._lock:
            self._load[slot] -= runs

    def _actor_died(self, slot: int, handle: Any) -> None:
        """Replace a dead actor (once, however many runs noticed)."""
        with self._lock:
            if self._closed or self._actors[slot] is not handle:
                return
            try:
                ray.kill(handle)
            except Exception:
                pass
            self._actors[slot] = self._start_actor()

    def _submit(self, code: str, kwargs: dict[str, Any]) -> tuple[Any, int, Any]:
        slot, handle = self._acquire()
        try:
            ref = handle.execute.remote(code, kwargs)
        except Exception:
            self._release(slot)
            raise
        return ref, slot, handle

    def _finish(self, ref: Any, slot: int, handle: Any) -> tuple[bool, Any]:
        """The reply of a finished run, or raises RayActorError after replacing the actor."""
        try:
            return ray.get(ref)
        except RayActorError:
            self._actor_died(slot, handle)
            raise
        finally:
            self._release(slot)

    def _lost(self, attempts: int) -> EryxError:
        return EryxError(
            f"run lost: its actor died on each of {attempts} attempt(s) (max_retries={self.max_retries})")

    # -- single runs

    def execute(self, code: str, **sandbox_kwargs: Any) -> ExecuteResult:
        """One run on the least-loaded actor, retried on another if its actor dies.

        Guest failures raise the same ``eryx`` exceptions as a local ``Sandbox``.

        Args:
            code: The Python source to run.
            **sandbox_kwargs: ``Sandbox`` arguments for this run only (``result_variable``,
                ``secrets``, ``callbacks``, ...). They are pickled to the actor, so callbacks
                run in the actor's process.

        Raises:
            EryxError: the run's actor died on every attempt (``max_retries`` + 1).
        """
        self._check_open()
        _check_code(code)
        for attempt in itertools.count(1):
            ref, slot, handle = self._submit(code, sandbox_kwargs)
            try:
                reply = self._finish(ref, slot, handle)
            except RayActorError:
                if attempt > self.max_retries:
                    raise self._lost(attempt) from None
                continue
            return _unwrap(reply)

    async def execute_async(self, code: str, **sandbox_kwargs: Any) -> ExecuteResult:
        """``execute`` as an awaitable: it does not block the event loop.

        Args:
            code: The Python source to run.
            **sandbox_kwargs: ``Sandbox`` arguments for this run only, as for ``execute``.
        """
        self._check_open()
        _check_code(code)
        for attempt in itertools.count(1):
            slot, handle = self._acquire()
            try:
                reply = await handle.execute.remote(code, sandbox_kwargs)
            except RayActorError:
                self._actor_died(slot, handle)
                if attempt > self.max_retries:
                    raise self._lost(attempt) from None
                continue
            finally:
                self._release(slot)
            return _unwrap(reply)

    # -- many runs

    def imap(
        self, codes: Iterable[str], *, ordered: bool = False, return_exceptions: bool = False
    ) -> Iterator[ExecuteResult | Exception]:
        """Yields results as runs finish, with backpressure.

        Runs go to the actors in batches of up to 64 (fewer when runs are slow: a batch aims
        at ~100 ms of work, so runs of 100 ms or more travel one per call, and then at most
        ``capacity`` are in flight, as for ``execute``). Each actor has at most
        ``sandboxes_per_actor`` batches running and one more queued, so that it never waits
        for the next batch: at most ``(capacity + num_actors) × 64`` codes are taken from the
        input and not yet yielded. The runs of a batch whose actor dies are retried one per
        call (up to ``max_retries`` times each, as ``execute``).

        Args:
            codes: The sources to run, consumed lazily (a generator works).
            ordered: Yield in input order instead of completion order.
            return_exceptions: Yield a failed run's exception as a value instead of raising
                it (which ends the iteration; with ``ordered``, the first failure in input
                order is raised once every run before it has been yielded).
        """
        self._check_open()
        return self._imap(iter(codes), ordered, return_exceptions)

    # Batching (RATIONALE.md, "Why eryx.ray sends runs in batches"): a Ray actor call costs more
    # CPU than a small run, so map/imap send several runs per call. A batch aims at
    # _BATCH_TARGET_S of work in the actor, measured from the previous batches (the first
    # calls carry one run each), and never carries more than _MAX_BATCH runs.
    _MAX_BATCH = 64
    _BATCH_TARGET_S = 0.1

    def _batch_size(self, per_run_s: float | None, remaining: int) -> int:
        if per_run_s is None:
            return 1
        size = max(1, min(self._MAX_BATCH, int(self._BATCH_TARGET_S / max(per_run_s, 1e-6))))
        if remaining > 0:  # a known length: spread the tail over every call slot
            size = min(size, -(-remaining // self.capacity))
        return size

    def _imap(self, codes: Iterator[str], ordered: bool, return_exceptions: bool) -> Iterator[Any]:
        # ref -> (items, slot, actor); an item is (index, code, attempt).
        pending: dict[Any, tuple[list[tuple[int, str, int]], int, Any]] = {}
        retry: collections.deque[tuple[int, str, int]] = collections.deque()
        busy = [0] * self.num_actors  # this map's calls in flight per actor slot
        done: dict[int, tuple[bool, Any]] = {}  # ordered: finished runs waiting for their turn
        next_out = 0
        index = 0
        exhausted = False
        per_run_s: float | None = None  # seconds per run in the actors, smoothed
        try:
            while True:
                while True:
                    remaining = operator.length_hint(codes, 0)
                    size = self._batch_size(per_run_s, remaining)
                    if retry:
                        size = 1
                    # Batches: one more call queued per actor, which it starts as soon as
                    # one ends (the reply and the next call then travel while it works).
                    per_slot = self.sandboxes_per_actor + (1 if size > 1 else 0)
                    if len(pending) >= per_slot * self.num_actors:
                        break
                    if retry:
                        # One run per call: a run that kills its actor (a callback that
                        # crashes the process, an OOM kill) then takes no other run with it.
                        items = [retry.popleft()]
                    else:
                        items = []
                    while not exhausted and len(items) < size:
                        try:
                            code = next(codes)
                        except StopIteration:
                            exhausted = True
                            break
                        _check_code(code)
                        items.append((index, code, 1))
                        index += 1
                    if not items:
                        break
                    slot, handle = self._acquire(len(items), busy, per_slot)
                    try:
                        ref = handle.execute_batch.remote([code for _, code, _ in items])
                    except Exception:
                        self._release(slot, len(items))
                        raise
                    busy[slot] += 1
                    pending[ref] = (items, slot, handle)
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1)
                ref = ready[0]
                items, slot, handle = pending.pop(ref)
                busy[slot] -= 1
                runs = len(items)
                try:
                    elapsed, blob = ray.get(ref)
                    replies = pickle.loads(blob)
                except RayActorError:
                    self._actor_died(slot, handle)
                    replies = []
                    for i, code, attempt in items:
                        if attempt > self.max_retries:
                            replies.append((False, self._lost(attempt)))
                        else:  # the whole batch is lost: each of its runs goes again
                            retry.append((i, code, attempt + 1))
                    items = [item for item in items if item[2] > self.max_retries]
                else:
                    if elapsed > 0:
                        sample = elapsed / runs
                        per_run_s = sample if per_run_s is None else 0.7 * per_run_s + 0.3 * sample
                finally:
                    self._release(slot, runs)
                for (i, _, _), (ok, value) in zip(items, replies):
                    if not ordered:
                        if not ok and not return_exceptions:
                            raise value
                        yield value
                        continue
                    done[i] = (ok, value)
                    while next_out in done:
                        ok, value = done.pop(next_out)
                        next_out += 1
                        if not ok and not return_exceptions:
                            raise value
                        yield value
        finally:
            # Abandoned runs (an exception, or the caller stopped iterating): stop counting
            # them against their actors' load, and cancel what has not started.
            for ref, (items, slot, _) in pending.items():
                self._release(slot, len(items))
                try:
                    ray.cancel(ref)
                except Exception:
                    pass

    def map(
        self, codes: Iterable[str], *, ordered: bool = True, return_exceptions: bool = False
    ) -> list[ExecuteResult | Exception]:
        """Runs every code, in batches with backpressure (as ``imap``).

        Args:
            codes: The sources to run.
            ordered: Return the results in input order (else in completion order).
            return_exceptions: Put a failed run's exception in its place in the list instead
                of raising it.

        Returns:
            One ``ExecuteResult`` (or exception) per code.
        """
        return list(self.imap(codes, ordered=ordered, return_exceptions=return_exceptions))

    # -- sessions

    def session(self, **kwargs: Any) -> RemoteSession:
        """A ``Session`` living in one actor (the one with the fewest sessions), with its state
        across calls.

        Args:
            **kwargs: ``Session`` arguments (they must pickle). The pool's ``resource_limits``
                and ``network`` are the defaults.
        """
        self._check_open()
        with self._lock:
            if self._closed:
                raise ValueError("SandboxPool is closed")
            slot = min(range(len(self._load)), key=lambda i: (self._sessions[i], self._load[i]))
            handle = self._actors[slot]
            self._sessions[slot] += 1
        sid = uuid.uuid4().hex
        try:
            _unwrap(ray.get(handle.open_session.remote(sid, kwargs)))
        except RayActorError:
            self._session_gone(slot)
            self._actor_died(slot, handle)
            raise EryxError("session could not start: its actor died") from None
        except BaseException:
            self._session_gone(slot)
            raise
        return RemoteSession(self, slot, handle, sid)

    def _session_gone(self, slot: int) -> None:
        with self._lock:
            self._sessions[slot] -= 1

    # -- lifetime

    def close(self) -> None:
        """Kills the actors (idempotent); sessions in them are gone."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            actors, self._actors = self._actors, []
        for handle in actors:
            try:
                ray.kill(handle)
            except Exception:
                pass

    num_actors: int
    """How many actors the pool keeps."""
    sandboxes_per_actor: int
    """How many runs one actor runs at once."""
    max_retries: int
    """How many times a run whose actor died is retried."""

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"num_actors={self.num_actors}, sandboxes_per_actor={self.sandboxes_per_actor}"
        return f"SandboxPool({state})"

    def __reduce_ex__(self, protocol: object):
        raise TypeError("cannot pickle 'SandboxPool' object")


def _check_code(code: object) -> None:
    if not isinstance(code, str):
        raise TypeError(f"code must be str, not {type(code).__name__}")


class RemoteSession:
    """A ``Session`` in one pool actor: the same methods, its state kept across calls.

    If its actor dies, the next call raises ``EryxError("session lost: its actor died")`` with
    ``state_lost=True`` (and so does every later call). Create it with ``SandboxPool.session``.
    """

    def __init__(self, pool: SandboxPool, slot: int, actor: Any, sid: str) -> None:
        self._pool = pool
        self._slot = slot
        self._actor = actor
        self._sid = sid
        self._closed = False
        self._lost = False
        self._counted = True  # counted in the pool's sessions of its slot

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._pool._session_gone(self._slot)

    def _mark_lost(self) -> None:
        self._lost = True
        self._uncount()
        self._pool._actor_died(self._slot, self._actor)

    @property
    def actor(self) -> Any:
        """The handle of the actor holding the session."""
        return self._actor

    def _get(self, ref: Any) -> Any:
        try:
            reply = ray.get(ref)
        except RayActorError:
            self._mark_lost()
            raise self._lost_error() from None
        return _unwrap(reply)

    async def _await(self, ref: Any) -> Any:
        try:
            reply = await ref
        except RayActorError:
            self._mark_lost()
            raise self._lost_error() from None
        return _unwrap(reply)

    @staticmethod
    def _lost_error() -> EryxError:
        return EryxError("session lost: its actor died", state_lost=True)

    def _check(self) -> None:
        if self._closed:
            raise ValueError("Session is closed")
        if self._lost:
            raise self._lost_error()

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._get(self._actor.session_call.remote(self._sid, name, args, kwargs))

    def _attr(self, name: str) -> Any:
        self._check()
        return self._get(self._actor.session_get.remote(self._sid, name))

    def execute(self, code: str, *, stdin: str | bytes | None = None) -> ExecuteResult:
        """Runs code in the session's namespace, as ``Session.execute``.

        Args:
            code: The Python source to run.
            stdin: The run's standard input.
        """
        _check_code(code)
        return self._call("execute", code, stdin=stdin)

    async def execute_async(self, code: str, *, stdin: str | bytes | None = None) -> ExecuteResult:
        """``execute`` as an awaitable.

        Args:
            code: The Python source to run.
            stdin: The run's standard input.
        """
        _check_code(code)
        self._check()
        return await self._await(
            self._actor.session_call.remote(self._sid, "execute", (code,), {"stdin": stdin}))

    def reset(self) -> None:
        """A new interpreter: as ``Session.reset``."""
        self._call("reset")

    def clear_state(self) -> None:
        """Deletes the user globals: as ``Session.clear_state``."""
        self._call("clear_state")

    def snapshot_state(self) -> bytes:
        """The user globals as bytes: as ``Session.snapshot_state``."""
        return self._call("snapshot_state")

    def restore_state(self, data: Any) -> None:
        """Merges a snapshot into the globals: as ``Session.restore_state``.

        Args:
            data: A snapshot (any bytes-like object).
        """
        self._call("restore_state", bytes(data))

    @property
    def execution_count(self) -> int:
        """Runs since creation or the last ``reset()``."""
        return self._attr("execution_count")

    @property
    def last_snapshot_skipped(self) -> list[str]:
        """The names the last snapshot left out."""
        return self._attr("last_snapshot_skipped")

    @property
    def resource_limits(self) -> ResourceLimits:
        """A copy of the limits in effect."""
        return self._attr("resource_limits")

    @property
    def execution_timeout_ms(self) -> int | None:
        """The timeout of later runs, in ms (``None``: none); settable."""
        return self._attr("execution_timeout_ms")

    @execution_timeout_ms.setter
    def execution_timeout_ms(self, value: int | None) -> None:
        self._check()
        self._get(self._actor.session_set.remote(self._sid, "execution_timeout_ms", value))

    @property
    def fuel_limit(self) -> int | None:
        """The fuel budget of later runs (``None``: unmetered); settable."""
        return self._attr("fuel_limit")

    @fuel_limit.setter
    def fuel_limit(self, value: int | None) -> None:
        self._check()
        self._get(self._actor.session_set.remote(self._sid, "fuel_limit", value))

    @property
    def vfs(self) -> None:
        """Always ``None``: a ``VfsStorage`` lives in one process and cannot be shared."""
        return None

    @property
    def vfs_mount_path(self) -> None:
        """Always ``None``, as ``vfs``."""
        return None

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def close(self) -> None:
        """Closes the session in its actor (idempotent; a lost session just counts as closed)."""
        if self._closed:
            return
        self._closed = True
        self._uncount()
        if self._lost or self._pool.closed:
            return
        try:
            ray.get(self._actor.close_session.remote(self._sid))
        except RayActorError:
            self._mark_lost()

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "lost" if self._lost else "open"
        return f"RemoteSession({state})"

    def __reduce_ex__(self, protocol: object):
        raise TypeError("cannot pickle 'RemoteSession' object")
