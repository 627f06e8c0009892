"""A hostile or careless guest against the host's promises: secrets never reach the guest
through callbacks (API.md §6.5 "Echo protection"), and what one run does to the interpreter's
modules cannot break the driver in the next run of a Session. Each case runs in a child process
(_harness.run_case)."""

from __future__ import annotations

import pytest

from _harness import run_case

# The value has a quote, a backslash and a non-ASCII character: the callback's JSON (json.dumps,
# ensure_ascii) carries it escaped, never as the raw text.
_SECRET_CASE = r'''
import eryx

VALUE = 'sek"ret\\\u00e9'

def give(how: str):
    if how == "nested":
        return {"a": [1, {"b": "token=" + VALUE + ";"}], "c": VALUE}
    if how == "key":
        return {VALUE: "as a key", "k" + VALUE: 2}
    if how == "raise":
        raise Exception(VALUE)
    if how == "list":
        return [VALUE, (VALUE, VALUE)]
    return VALUE

CODE = """
import os, json
ph = os.environ['K']
out = {}
for how in ('nested', 'key', 'plain', 'list', 'raise'):
    try:
        got = await give(how)
        out[how] = got
    except Exception as e:
        out[how] = type(e).__name__ + ': ' + str(e)
text = json.dumps(out, ensure_ascii=False)
print(text)
print(ascii(text))
print(json.dumps(out))
print('placeholder:', ph)
result = out
"""

sb = eryx.Sandbox(secrets={'K': {'value': VALUE}}, callbacks=[{'name': 'give', 'fn': give}],
                  scrub_stdout=False)
r = sb.execute(CODE)
ph = r.stdout.rsplit('placeholder: ', 1)[1].strip()
report(stdout=r.stdout, result=r.result, ph=ph, value=VALUE)
'''


def test_callback_results_and_errors_never_carry_a_secret_value():
    rep = run_case(_SECRET_CASE, wall_s=60).check()
    value, ph, stdout = rep["value"], rep["ph"], rep["stdout"]
    assert ph.startswith("ERYX_SECRET_PLACEHOLDER_")
    # Nothing the guest printed holds the value, in any of its spellings.
    for spelling in (value, value.encode("unicode_escape").decode(), ascii(value)[1:-1],
                     'sek\\"ret', 'sek"ret'):
        assert spelling not in stdout, spelling
    result = rep["result"]
    assert result["nested"] == {"a": [1, {"b": "token=" + ph + ";"}], "c": ph}
    assert result["key"] == {ph: "as a key", "k" + ph: 2}
    assert result["plain"] == ph
    assert result["list"] == [ph, [ph, ph]]
    assert result["raise"] == "CallbackError: Exception: " + ph


_LONGEST_FIRST_CASE = r'''
import eryx

def give():
    return ["abc-123", "abc-123456", "xabc-123456y"]

sb = eryx.Sandbox(secrets={'SHORT': {'value': 'abc-123'}, 'LONG': {'value': 'abc-123456'}},
                  callbacks=[{'name': 'give', 'fn': give}], scrub_stdout=False)
r = sb.execute("import os\nresult = [await give(), os.environ['SHORT'], os.environ['LONG']]")
report(result=r.result)
'''


def test_overlapping_secret_values_are_replaced_longest_first():
    got, short, long = run_case(_LONGEST_FIRST_CASE, wall_s=60).check()["result"]
    assert got == [short, long, "x" + long + "y"]


# Each case: code that breaks a module the driver used to share with user code. The session's
# next runs must still work: results captured, tracebacks printed, callbacks answered.
_BREAKERS = {
    "json.dumps": "import json; json.dumps = lambda *a, **k: 'garbage'",
    "json.loads": "import json; json.loads = lambda *a, **k: {'op': 'nonsense'}",
    "JSONEncoder.default": ("import json\n"
                            "json.JSONEncoder.default = lambda self, o: 'patched'\n"
                            "json.JSONEncoder.encode = lambda self, o: '[1, 2'"),
    "json.encoder": ("import json, json.encoder\n"
                     "json.encoder.c_make_encoder = None\n"
                     "json.encoder.encode_basestring_ascii = lambda s: 'x'\n"
                     "json.encoder = None\njson._default_encoder = None\n"
                     "json._default_decoder = None"),
    "json.decoder": ("import json.decoder, json.scanner\n"
                     "json.decoder.JSONDecoder.decode = lambda self, s: 1\n"
                     "json.scanner.make_scanner = None"),
    "struct": ("import struct\nstruct.pack = lambda *a: b'xx'\n"
               "struct.Struct = None\nstruct.unpack_from = None"),
    "linecache": "import linecache; linecache.cache = None; linecache.getline = None",
    "traceback": ("import traceback\n"
                  "traceback.format_exception = lambda *a, **k: 'garbage'\n"
                  "traceback.TracebackException = None"),
    "types": ("import types\n"
              "types.TracebackType = types.ModuleType = types.GeneratorType = None"),
    "sys.modules": ("import sys\n"
                    "for m in ('json', 'json.encoder', 'json.decoder', 'traceback', 'linecache',\n"
                    "          'struct', 'types'):\n"
                    "    sys.modules[m] = None"),
    # Builtins the driver uses to run code and format tracebacks, which the test's later runs
    # need nowhere else (imports would: importlib shares builtins with user code).
    "builtins": "import builtins\nbuiltins.exec = builtins.eval = builtins.id = None",
    "stderr closed": "import sys; sys.__stderr__.close()",
}

_BREAKER_CASE = r'''
import json, eryx

def echo(x):
    return {"x": x}

s = eryx.Session(callbacks=[{"name": "echo", "fn": echo}])
first = s.execute("import datetime\n" + BREAK + "\nresult = 1")
out = {"first": first.result}
r = s.execute("result = {'a': [1, 2.5, None, 'caf\u00e9']}")
out["result"] = r.result
out["result_json"] = r.result_json
r = s.execute("result = await echo('y\u00e9')")
out["callback"] = r.result
try:
    s.execute("x = 1\nraise ValueError('boom')")
except eryx.ExecutionError as e:
    out["traceback"] = str(e)
r = s.execute("result = datetime.date(2020, 1, 2)")
out["not_json"] = r.result_error
s.execute("state = 41")
out["state"] = s.execute("result = state + 1").result
report(**out)
'''


@pytest.mark.parametrize("name", list(_BREAKERS))
def test_user_code_cannot_break_the_driver_for_later_runs(name):
    rep = run_case(f"BREAK = {_BREAKERS[name]!r}\n" + _BREAKER_CASE, wall_s=90).check()
    assert rep["first"] == 1
    assert rep["result"] == {"a": [1, 2.5, None, "caf\u00e9"]}
    assert rep["result_json"] == '{"a": [1, 2.5, null, "caf\\u00e9"]}'
    assert rep["callback"] == {"x": "y\u00e9"}
    assert rep["traceback"] == (
        'Traceback (most recent call last):\n'
        '  File "<user>", line 2, in <module>\n'
        "    raise ValueError('boom')\n"
        "ValueError: boom")
    # The driver's capture ignores a patched JSONEncoder.default: the contract's rule applies.
    assert rep["not_json"] == "result is not JSON-serializable: date (TypeError)"
    assert rep["state"] == 42
