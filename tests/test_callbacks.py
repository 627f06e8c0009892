"""LATER SLICE: callbacks and CallbackRegistry (API.md §7, §8.2 re-entrancy).

Enable with ERYX_TEST_LATER=callbacks (see conftest.py).
"""

import asyncio
import logging
import time

import pytest

import eryx
from _eryxtest import dedent, run


def _sb(*cbs, **kwargs):
    return eryx.Sandbox(callbacks=list(cbs), **kwargs)


# ---------------------------------------------------------------------------
# CallbackRegistry


def test_registry_decorator_forms_and_defaults():
    reg = eryx.CallbackRegistry()

    @reg.callback
    def alpha(x: int, y: str = "a") -> int:
        """First line of doc.

        More text.
        """
        return x

    @reg.callback(name="beta", description="custom", schema={"type": "object"})
    async def b():
        return 1

    assert alpha.__name__ == "alpha"  # returned unchanged
    assert b.__name__ == "b"
    assert len(reg) == 2
    items = list(reg)
    assert items[0] == {
        "name": "alpha", "fn": alpha, "description": "First line of doc.",
        "schema": {"type": "object",
                   "properties": {"x": {"type": "integer"}, "y": {"type": "string"}},
                   "required": ["x"]},
    }
    assert items[1] == {"name": "beta", "fn": b, "description": "custom",
                        "schema": {"type": "object"}}
    assert repr(reg) == "CallbackRegistry(['alpha', 'beta'])"


def test_registry_add_and_duplicates():
    reg = eryx.CallbackRegistry()

    def f():
        return 1

    assert reg.add(f) is f
    assert reg.add(f, name="f") is f
    assert len(reg) == 2
    assert [i["name"] for i in reg] == ["f", "f"]
    assert list(reg)[0]["description"] == ""
    with pytest.raises(TypeError):
        reg.add(fn=f)  # fn is positional-only


def test_schema_inference_rules():
    reg = eryx.CallbackRegistry()

    def f(a: str, b: int, c: float, d: bool, e: list[int], g: dict[str, int], h: None,
          i, j: "Unresolvable", *args, k: int = 1, **kwargs):  # noqa: F821
        pass

    def no_params():
        pass

    reg.add(f)
    reg.add(no_params)
    schema = list(reg)[0]["schema"]
    assert list(schema["properties"]) == ["a", "b", "c", "d", "e", "g", "h", "i", "j", "k"]
    assert schema["properties"] == {
        "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "number"},
        "d": {"type": "boolean"}, "e": {"type": "array"}, "g": {"type": "object"},
        "h": {"type": "null"}, "i": {}, "j": {}, "k": {"type": "integer"},
    }
    assert schema["required"] == ["a", "b", "c", "d", "e", "g", "h", "i", "j"]
    assert list(reg)[1]["schema"] == {"type": "object", "properties": {}}


# ---------------------------------------------------------------------------
# calling from the guest


def test_sync_and_async_callbacks():
    def add(a: int, b: int) -> int:
        return a + b

    async def greet(name: str) -> str:
        await asyncio.sleep(0.01)
        return f"hello {name}"

    with _sb({"name": "add", "fn": add}, {"name": "greet", "fn": greet}) as sb:
        r = run(sb, """
            x = await add(2, 3)
            y = await add(a=1, b=1)
            z = await greet("eryx")
            result = [x, y, z]
        """)
        assert r.result == [5, 2, "hello eryx"]
        assert r.callback_invocations == 3


def test_arguments_and_results_cross_as_json_dumps_would_encode_them():
    seen = []

    def echo(**kw):
        seen.append(kw)
        return kw

    with _sb({"name": "echo", "fn": echo}) as sb:
        r = run(sb, """
            out = []
            for bad in (float("nan"), {1j: 1}, object()):
                try:
                    await echo(x=bad)
                except TypeError as e:
                    out.append(str(e))
            loop = []
            loop.append(loop)
            try:
                await echo(x=loop)
            except TypeError as e:
                out.append(str(e))
            shared = {"k": "v"}  # twice, not circular: fine after the failures above
            out.append(await echo(a=[shared, shared], b="é\u2028", c=(1, 2.5, None, True), d={2: 3}))
            out.append(await echo())
            out.append(echo.sync(z=1))
            result = out
        """)
    assert r.result == [
        "callback 'echo' arguments are not JSON-serializable: Out of range float values are not JSON compliant: nan",
        "callback 'echo' arguments are not JSON-serializable: keys must be str, int, float, bool or None, not complex",
        "callback 'echo' arguments are not JSON-serializable: Object of type object is not JSON serializable",
        "callback 'echo' arguments are not JSON-serializable: Circular reference detected",
        {"a": [{"k": "v"}, {"k": "v"}], "b": "é\u2028", "c": [1, 2.5, None, True], "d": {"2": 3}},
        {},
        {"z": 1},
    ]
    assert seen[-3:] == [r.result[4], {}, {"z": 1}]


def test_positional_arguments_follow_declared_order():
    seen = []

    def cb(**kwargs):
        seen.append(list(kwargs.items()))
        return None

    schema = {"type": "object", "properties": {"zeta": {}, "alpha": {}}}
    with _sb({"name": "cb", "fn": cb, "schema": schema}) as sb:
        sb.execute("await cb(1, 2)")
        assert seen == [[("zeta", 1), ("alpha", 2)]]
        r = sb.execute(dedent("""
            errors = []
            for call in (lambda: cb(1, 2, 3), lambda: cb(1, zeta=2)):
                try:
                    await call()
                except TypeError:
                    errors.append('TypeError')
            try:
                await cb(object())
            except TypeError:
                errors.append('TypeError')
            print(errors)
        """))
        assert r.stdout == "['TypeError', 'TypeError', 'TypeError']"
        assert len(seen) == 1


def test_dotted_names_invoke_and_list_callbacks():
    with _sb({"name": "tools.math.add", "fn": lambda a, b: a + b,
              "schema": {"type": "object", "properties": {"a": {}, "b": {}}}},
             {"name": "print", "fn": lambda: "reserved", "description": "shadow"}) as sb:
        r = run(sb, """
            a = await tools.math.add(1, 2)
            b = await tools["math"]["add"](a=2, b=2)
            c = await tools.math["add"](3, 3)
            d = await invoke("tools.math.add", 4, 4)
            e = await invoke("print")
            print(repr(tools), repr(tools.math.add))
            import eryx_guest
            print(eryx_guest.invoke is invoke, issubclass(eryx_guest.CallbackLimitError,
                                                         eryx_guest.CallbackError))
            print(issubclass(eryx_guest.CallbackError, RuntimeError))
            try:
                tools._private
            except AttributeError:
                print('AttributeError')
            try:
                tools["nope"]
            except KeyError:
                print('KeyError')
            result = [a, b, c, d, e, [c["name"] for c in list_callbacks()]]
        """)
        assert r.stdout.split("\n") == [
            "<EryxNamespace 'tools'> <EryxCallback 'tools.math.add'>",
            "True True", "True", "AttributeError", "KeyError"]
        assert r.result == [3, 4, 6, 8, "reserved", ["tools.math.add", "print"]]


def test_list_callbacks_shape():
    def f(x: int):
        """Doc line."""

    # The dict form's description defaults to "" (API.md §7.1); the registry's to the doc line.
    with _sb({"name": "f", "fn": f}) as sb:
        r = sb.execute("result = list_callbacks()")
        assert r.result == [{"name": "f", "description": "",
                             "parameters_schema": {"type": "object",
                                                   "properties": {"x": {"type": "integer"}},
                                                   "required": ["x"]}}]


def test_builtin_helpers_present_without_callbacks(sandbox):
    r = sandbox.execute("import eryx_guest\nresult = [callable(invoke), list_callbacks()]")
    assert r.result == [True, []]


def test_callback_failures():
    def boom():
        raise ValueError("bad input")

    def not_json():
        return {1, 2}

    with _sb({"name": "boom", "fn": boom}, {"name": "not_json", "fn": not_json}) as sb:
        r = run(sb, """
            from eryx_guest import CallbackError
            out = []
            for coro in (lambda: boom(), lambda: invoke("missing"), lambda: not_json()):
                try:
                    await coro()
                except CallbackError as e:
                    out.append(str(e))
            result = out
        """)
        assert r.result == [
            "ValueError: bad input",
            "callback 'missing' not found",
            "callback 'not_json' returned a value that is not JSON-serializable: set",
        ]
        with pytest.raises(eryx.ExecutionError) as ei:
            sb.execute("await boom()")
        assert ei.value.exc_type == "eryx_guest.CallbackError"
        assert "Traceback" in str(ei.value)
        assert "raise ValueError" not in str(ei.value)  # host traceback never sent


def test_host_traceback_logged_at_debug(caplog):
    def boom():
        raise KeyError("logged")

    with caplog.at_level(logging.DEBUG, logger="eryx.callbacks"):
        with _sb({"name": "boom", "fn": boom}) as sb:
            sb.execute("try:\n    await boom()\nexcept Exception:\n    pass")
    records = [r for r in caplog.records if r.name == "eryx.callbacks"]
    assert records and records[0].levelno == logging.DEBUG
    assert records[0].exc_info is not None or "Traceback" in caplog.text


def test_invocation_limit():
    lim = eryx.ResourceLimits(max_callback_invocations=2)
    with _sb({"name": "ping", "fn": lambda: "pong"}, resource_limits=lim) as sb:
        r = run(sb, """
            from eryx_guest import CallbackLimitError
            out = []
            for _ in range(4):
                try:
                    out.append(await ping())
                except CallbackLimitError as e:
                    out.append(str(e))
            result = out
        """)
        assert r.result == ["pong", "pong",
                            "callback limit exceeded: at most 2 invocations per execution",
                            "callback limit exceeded: at most 2 invocations per execution"]
        assert r.callback_invocations == 4
        # counted per run
        assert sb.execute("result = await ping()").result == "pong"


def test_callback_timeout():
    def slow():
        time.sleep(1.0)
        return "late"

    lim = eryx.ResourceLimits(callback_timeout_ms=200)
    with _sb({"name": "slow", "fn": slow}, resource_limits=lim) as sb:
        r = run(sb, """
            try:
                await slow()
            except TimeoutError as e:
                result = [type(e).__name__, str(e)]
        """)
        assert r.result == ["TimeoutError", "callback 'slow' timed out after 200 ms"]


def test_gathered_callbacks_run_concurrently():
    def work(i: int):
        time.sleep(0.2)
        return i

    async def awork(i: int):
        await asyncio.sleep(0.2)
        return i

    with _sb({"name": "work", "fn": work}, {"name": "awork", "fn": awork}) as sb:
        r = run(sb, """
            import asyncio, time
            t = time.monotonic()
            a = await asyncio.gather(work(1), work(2), work(3))
            b = await asyncio.gather(awork(1), awork(2), awork(3))
            result = [a, b, time.monotonic() - t]
        """)
        a, b, elapsed = r.result
        assert a == [1, 2, 3] and b == [1, 2, 3]
        assert elapsed < 1.0


def test_session_counts_callbacks_and_reinstalls_names():
    with eryx.Session(callbacks=[{"name": "ping", "fn": lambda: "pong"}]) as s:
        assert s.execute("x = await ping()").callback_invocations == 1
        s.execute("ping = 5")
        assert s.execute("result = await ping()").result == "pong"


def test_session_reentrancy_is_refused():
    holder = {}

    def reenter():
        try:
            holder["s"].execute("pass")
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    s = eryx.Session(callbacks=[{"name": "reenter", "fn": reenter}])
    holder["s"] = s
    try:
        r = s.execute("result = await reenter()")
        assert r.result == "re-entrant call on a Session from its own callback"
    finally:
        s.close()


def test_callback_dict_validation():
    with pytest.raises(KeyError) as ei:
        eryx.Sandbox(callbacks=[{"fn": lambda: 1}])
    assert ei.value.args[0] == "Callback dict missing 'name' key"
    with pytest.raises(KeyError) as ei:
        eryx.Sandbox(callbacks=[{"name": "x"}])
    assert ei.value.args[0] == "Callback dict missing 'fn' key"
    with pytest.raises(TypeError):
        eryx.Sandbox(callbacks=[{"name": "x", "fn": 5}])
    with pytest.raises(TypeError) as ei:
        eryx.Sandbox(callbacks="nope")
    assert str(ei.value) == "callbacks must be a CallbackRegistry or a list of callback dicts"
    with pytest.raises(TypeError) as ei:
        eryx.Sandbox(callbacks=[5])
    assert str(ei.value) == "callback list items must be dicts or CallbackRegistry instances"
    with pytest.raises(ValueError) as ei:
        eryx.Sandbox(callbacks=[{"name": "x", "fn": lambda: 1, "schema": {"a": {1, 2}}}])
    assert str(ei.value).startswith("invalid schema for callback 'x': ")


@pytest.mark.parametrize("make", [
    lambda name: eryx.Sandbox(callbacks=[{"name": name, "fn": lambda: 1}]),
    lambda name: eryx.Session(callbacks=[{"name": name, "fn": lambda: 1}]),
    lambda name: eryx.CallbackRegistry().add(lambda: 1, name=name),
])
def test_callback_name_with_lone_surrogate(make):
    with pytest.raises(ValueError) as ei:
        make("f\ud800")
    assert str(ei.value) == (
        "invalid callback name 'f\\ud800': must be valid Unicode (no lone surrogates)")


def test_callback_description_with_lone_surrogate():
    with pytest.raises(ValueError) as ei:
        eryx.Sandbox(callbacks=[{"name": "f", "fn": lambda: 1, "description": "x\udc80"}])
    assert str(ei.value) == "callback 'f' description must be valid Unicode (no lone surrogates)"


def test_registry_and_mixed_list_and_repr():
    reg = eryx.CallbackRegistry()
    reg.add(lambda: 1, name="one")
    with eryx.Sandbox(callbacks=[reg, {"name": "two", "fn": lambda: 2}]) as sb:
        assert sb.execute("result = [await one(), await two()]").result == [1, 2]
        assert "callbacks=2" in repr(sb)
    with eryx.Sandbox(callbacks=reg) as sb:
        assert sb.execute("result = await one()").result == 1


def test_registry_cannot_be_pickled():
    import copy
    import pickle
    reg = eryx.CallbackRegistry()
    for op in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError):
            op(reg)

