"""LATER SLICE: secrets and scrubbing (API.md §6.5, §12 secrets).

Enable with ERYX_TEST_LATER=secrets (see conftest.py).
"""

import re

import pytest

import eryx
from _eryxtest import run

PLACEHOLDER = re.compile(r"^ERYX_SECRET_PLACEHOLDER_[0-9a-f]{32}$")
SECRETS = {"API_KEY": {"value": "real-secret-value-123"},
           "OTHER": {"value": "other-value", "allowed_hosts": ["api.example.com"],
                     "ignored": 1}}


def test_placeholders_in_environment():
    with eryx.Sandbox(secrets=SECRETS) as sb:
        r1 = sb.execute("import os\nresult = [os.environ['API_KEY'], os.environ['OTHER']]")
        r2 = sb.execute("import os\nresult = os.environ['API_KEY']")
        assert "API_KEY" not in sb.execute("print(sorted(k for k in globals() "
                                           "if not k.startswith('__')))").stdout
    with eryx.Sandbox(secrets=SECRETS) as other:
        r3 = other.execute("import os\nresult = os.environ['API_KEY']")
    a, b = r1.result
    assert PLACEHOLDER.match(a) and PLACEHOLDER.match(b)
    assert a != b
    assert r2.result == a          # stable across runs
    assert r3.result != a          # distinct per sandbox
    assert "real-secret-value-123" not in r1.result_json


def test_line_numbers_do_not_shift():
    with eryx.Sandbox(secrets=SECRETS) as sb:
        with pytest.raises(eryx.ExecutionError) as ei:
            sb.execute("x = 1\nraise ValueError('line two')")
    assert 'File "<user>", line 2, in <module>' in str(ei.value)


def test_scrubbing_defaults_and_channels():
    store = eryx.VfsStorage()
    with eryx.Sandbox(secrets=SECRETS, vfs=store) as sb:
        r = run(sb, """
            import os, sys
            p = os.environ['API_KEY']
            print('out', p)
            print('err', p, file=sys.stderr)
            open('/data/f.txt', 'w').write(p)
            result = p
        """)
        assert r.stdout == "out [REDACTED]"
        assert r.stderr == "err [REDACTED]"
        assert store.read_file("f.txt") == b"[REDACTED]"
        assert PLACEHOLDER.match(r.result)  # scrub_result defaults to False
        with pytest.raises(eryx.ExecutionError) as ei:
            sb.execute("import os\nprint(os.environ['API_KEY'])\n"
                       "raise ValueError(os.environ['API_KEY'])")
        assert str(ei.value).endswith("ValueError: [REDACTED]")
        assert ei.value.stdout == "[REDACTED]"


def test_scrub_flags_honoured():
    with eryx.Sandbox(secrets=SECRETS, scrub_stdout=False, scrub_result=True) as sb:
        r = sb.execute("import os\nprint(os.environ['API_KEY'])\nresult = os.environ['API_KEY']")
    assert PLACEHOLDER.match(r.stdout)
    assert r.result == "[REDACTED]"


def test_repr_lists_sorted_secret_names():
    with eryx.Sandbox(secrets={"ZED": {"value": "z"}, "ALPHA": {"value": "a"}}) as sb:
        assert "secrets=['ALPHA', 'ZED']" in repr(sb)
        assert "'z'" not in repr(sb) and "'a'" not in repr(sb)


@pytest.mark.parametrize("secrets,exc,msg", [
    ([], TypeError, "secrets must be a dict"),
    ({1: {"value": "v"}}, TypeError, "secret names must be strings"),
    ({"": {"value": "v"}}, ValueError, "invalid secret name ''"),
    ({"A=B": {"value": "v"}}, ValueError, "invalid secret name 'A=B'"),
    ({"N": "v"}, TypeError, "secret 'N' value must be a dict with a 'value' key"),
    ({"N": {}}, ValueError, "secret 'N' dict must contain a 'value' key"),
    ({"N": {"value": 5}}, TypeError, "secret 'N' value must be a string"),
    ({"N": {"value": ""}}, ValueError,
     "secret 'N' value must be non-empty and must not contain CR, LF or NUL"),
    ({"N": {"value": "a\nb"}}, ValueError,
     "secret 'N' value must be non-empty and must not contain CR, LF or NUL"),
    ({"N": {"value": "a\rb"}}, ValueError,
     "secret 'N' value must be non-empty and must not contain CR, LF or NUL"),
    ({"N": {"value": "v", "allowed_hosts": "host"}}, TypeError,
     "secret 'N' allowed_hosts must be a list of strings"),
    ({"N": {"value": "v", "allowed_hosts": ["bad host"]}}, ValueError,
     "invalid host pattern 'bad host'"),
    # A lone surrogate cannot be encoded (UTF-8, JSON to the engine): the name is shown as repr.
    ({"A\ud800": {"value": "v"}}, ValueError,
     "invalid secret name 'A\\ud800': must be valid Unicode (no lone surrogates)"),
    ({"N": {"value": "x\udfffy"}}, ValueError,
     "secret 'N' value must be valid Unicode (no lone surrogates)"),
])
def test_secret_validation(secrets, exc, msg):
    with pytest.raises(exc) as ei:
        eryx.Sandbox(secrets=secrets)
    assert str(ei.value) == msg


def test_secret_outside_the_bmp_is_echo_protected():
    value = "\U0001F600-\u00e9"
    with eryx.Sandbox(secrets={"EMOJI": {"value": value}},
                      callbacks=[{"name": "give", "fn": lambda: value}]) as sb:
        r = sb.execute("import os\nresult = [await give(), os.environ['EMOJI']]")
    assert r.result[0] == r.result[1]
    assert PLACEHOLDER.match(r.result[0])


@pytest.mark.parametrize("kwargs", [{"scrub_stdout": "yes"}, {"scrub_files": 1},
                                    {"scrub_result": "no"}])
def test_scrub_flags_must_be_bool(kwargs):
    with pytest.raises(TypeError):
        eryx.Sandbox(**kwargs)


def test_placeholder_split_across_streamed_writes_is_scrubbed():
    out, err = [], []
    with eryx.Sandbox(secrets=SECRETS, on_stdout=out.append, on_stderr=err.append) as sb:
        r = run(sb, """
            import os
            p = os.environ['API_KEY'].encode()
            for cut in (1, 10, 30, len(p) - 1):
                os.write(1, b'k=' + p[:cut])
                os.write(1, p[cut:] + b';')
                os.write(2, p[:cut])
                os.write(2, p[cut:])
            os.write(1, b'ERYX_SEC')  # a prefix that stays one: emitted at the end of the run
        """)
    assert "".join(out) == "k=[REDACTED];" * 4 + "ERYX_SEC"
    assert "".join(err) == "[REDACTED]" * 4
    assert r.stdout == "".join(out)
