"""SandboxFactory (API.md §10): packages, pre-imports captured in an image, sessions, the
artifact, and every row of the error table. Real packages come from ``_packages`` (pip,
pinned and hashed); archives for the error cases are built here."""

import copy
import io
import json
import os
import pickle
import struct
import tarfile
import threading
import zipfile

import pytest

import _packages
import eryx


def _make_pkg_dir(root, name="mypkg", body="VALUE = 41\n"):
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    return pkg


def _make_wheel(root, name="wheelpkg", tag="py3-none-any"):
    path = root / f"{name}-1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "def hello():\n    return 'from wheel'\n")
        zf.writestr(f"{name}-1.0.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        zf.writestr(f"{name}-1.0.dist-info/WHEEL",
                    f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
        zf.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return path


@pytest.fixture(scope="module")
def plain_factory():
    f = eryx.SandboxFactory()
    yield f
    f.close()


def test_default_factory_creates_sandboxes(plain_factory):
    with plain_factory.create_sandbox() as sb:
        assert isinstance(sb, eryx.Sandbox)
        assert sb.execute("print(1 + 1)").stdout == "2"
    assert plain_factory.size_bytes == len(plain_factory.to_bytes())
    assert repr(plain_factory) == f"SandboxFactory(size_bytes={plain_factory.size_bytes}, imports=[])"


def test_packages_and_imports(tmp_path):
    pkg = _make_pkg_dir(tmp_path / "src")
    whl = _make_wheel(tmp_path)
    before = sorted(p.name for p in (tmp_path / "src").iterdir())
    with eryx.SandboxFactory(packages=[str(pkg), whl], imports=["mypkg"]) as f:
        assert repr(f).endswith("imports=['mypkg'])")
        with f.create_sandbox(resource_limits=eryx.ResourceLimits(execution_timeout_ms=5000)) as sb:
            r = sb.execute("import sys\nprint('mypkg' in sys.modules, 'mypkg' in globals())\n"
                           "import mypkg, wheelpkg\nprint(mypkg.VALUE + 1, wheelpkg.hello())\n"
                           "print('/site-packages' in sys.path)")
            assert r.stdout == "True False\n42 from wheel\nTrue"
            with pytest.raises(eryx.ExecutionError):
                sb.execute("open('/site-packages/evil.py', 'w')")
    # caller-owned directories are never written
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == before
    assert sorted(os.listdir(pkg)) == ["__init__.py"]


def test_sandboxes_from_one_factory_do_not_share_state(plain_factory):
    a, b = plain_factory.create_sandbox(), plain_factory.create_sandbox()
    try:
        a.execute("import builtins\nbuiltins.leak = 1")
        assert b.execute("import builtins\nprint(hasattr(builtins, 'leak'))").stdout == "False"
        code = "import random\nprint(random.getrandbits(64))"
        assert a.execute(code).stdout != b.execute(code).stdout
    finally:
        a.close()
        b.close()


def test_save_load_and_from_bytes(tmp_path, plain_factory):
    path = tmp_path / "f.eryx"
    plain_factory.save(path)
    assert path.read_bytes() == plain_factory.to_bytes()
    for f in (eryx.SandboxFactory.load(path), eryx.SandboxFactory.load(str(path)),
              eryx.SandboxFactory.from_bytes(path.read_bytes())):
        with f, f.create_sandbox() as sb:
            assert sb.execute("print('loaded')").stdout == "loaded"


def test_load_validates_header_immediately(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"definitely not a factory")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory.load(bad)
    assert str(ei.value) == f"{bad} is not a goeryx factory file"
    with pytest.raises(eryx.InitializationError):
        eryx.SandboxFactory.from_bytes(b"junk")
    with pytest.raises(TypeError):
        eryx.SandboxFactory.from_bytes("text")
    missing = tmp_path / "missing.bin"
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory.load(missing)
    assert str(ei.value).startswith(f"failed to load factory from {missing}: ")


def test_package_errors(tmp_path):
    missing = tmp_path / "nope.whl"
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(missing)])
    assert str(ei.value) == f"package not found: {missing}"
    odd = tmp_path / "pkg.rar"
    odd.write_bytes(b"x")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(odd)])
    assert str(ei.value) == (f"cannot detect package format for {odd}: "
                             "expected .whl, .tar.gz, .tgz or a directory")
    plat = _make_wheel(tmp_path, name="platpkg", tag="cp313-cp313-manylinux_2_17_x86_64")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(plat)])
    assert str(ei.value) == (f"{plat}: wheel is built for 'cp313-cp313-manylinux_2_17_x86_64', "
                             "not for pure Python or WASI")


def test_unsafe_archive_member(tmp_path):
    path = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../escape.py", "x = 1\n")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(path)])
    assert str(ei.value) == f"{path}: unsafe archive member '../escape.py'"


def test_pre_import_failure(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="broken", body="raise ValueError('bad import')\n")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(pkg)], imports=["broken"])
    assert str(ei.value) == "pre-import of 'broken' failed: ValueError: bad import"


@pytest.mark.parametrize("imports", [["not a module"], ["a..b"], "json"])
def test_imports_validation(imports):
    with pytest.raises((ValueError, TypeError)):
        eryx.SandboxFactory(imports=imports)


def test_factory_close_and_copy(plain_factory):
    for op in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError):
            op(plain_factory)
    f = eryx.SandboxFactory()
    sb = f.create_sandbox()
    f.close()
    f.close()
    assert f.closed is True
    assert sb.execute("print('still works')").stdout == "still works"
    sb.close()


# ---------------------------------------------------------------------------------------------
# Real packages


@pytest.fixture(scope="module")
def jinja_factory(tmp_path_factory):
    tgz = _packages.markupsafe_tgz(str(tmp_path_factory.mktemp("ms")))
    f = eryx.SandboxFactory(packages=[*_packages.wheels("jinja2"), tgz], imports=["jinja2"])
    yield f
    f.close()


RENDER = ("import sys\npre = 'jinja2' in sys.modules\nimport jinja2\n"
          "t = jinja2.Environment(autoescape=True).from_string("
          "'{% for n in names %}<b>{{ n }}</b>{% endfor %}')\n"
          "print(pre, t.render(names=['a', '<x>']))")


def test_jinja2_renders_pre_imported(jinja_factory):
    with jinja_factory.create_sandbox() as sb:
        r = sb.execute(RENDER)
        assert r.stdout == "True <b>a</b><b>&lt;x&gt;</b>"
        r = sb.execute("import importlib.metadata as m\nprint(m.version('jinja2'))\n"
                       "import markupsafe\nprint(markupsafe.__file__)")
        assert r.stdout == "3.1.4\n/site-packages/markupsafe/__init__.py"
    assert repr(jinja_factory) == (
        f"SandboxFactory(size_bytes={jinja_factory.size_bytes}, imports=['jinja2'])")


def test_session_from_factory_resets_to_factory_state(jinja_factory):
    with jinja_factory.create_session(execution_timeout_ms=10_000) as s:
        s.execute("import jinja2\nx = jinja2.Template('{{ 6 * 7 }}').render()")
        assert s.execute("print(x)").stdout == "42"
        s.clear_state()
        r = s.execute("import sys\nprint('x' in globals(), 'jinja2' in sys.modules)")
        assert r.stdout == "False True"
        s.execute("y = 1\nimport sys\nsys.modules.pop('jinja2')")
        s.reset()
        r = s.execute("import sys\nprint('y' in globals(), 'jinja2' in sys.modules)")
        assert r.stdout == "False True"
        assert s.execution_count == 1


JINJA_SETUP = ("import jinja2\n"
               "env = jinja2.Environment(autoescape=True)\n"
               "page = env.from_string('{% for n in names %}<b>{{ n }}</b>{% endfor %}')\n")


def test_setup_code_objects_are_captured_and_isolated(tmp_path):
    tgz = _packages.markupsafe_tgz(str(tmp_path))
    limits = eryx.ResourceLimits(max_fuel=10**11)
    with eryx.SandboxFactory(packages=[*_packages.wheels("jinja2"), tgz], imports=["jinja2"],
                             setup_code=JINJA_SETUP) as f:
        render = "print(page.render(names=['a', '<x>']))"
        with f.create_sandbox(resource_limits=limits) as sb:
            r = sb.execute(render)
            assert r.stdout == "<b>a</b><b>&lt;x&gt;</b>"
            # The lexer that setup_code's Environment built is in the image: a template
            # compiled in the sandbox costs far less than in a factory without setup_code.
            code = "print(env.from_string('{{ 1 + 1 }}').render())"
            warm = sb.execute(code)
            assert warm.stdout == "2"
            # Mutations stay in the sandbox's run: the next one starts from the image.
            sb.execute("env.globals['leak'] = 1\npage = None\nnew = 1")
            r = sb.execute("print('leak' in env.globals, page is None, 'new' in globals())")
            assert r.stdout == "False False False"
        with eryx.SandboxFactory(packages=[*_packages.wheels("jinja2"), tgz], imports=["jinja2"]) as g:
            with g.create_sandbox(resource_limits=limits) as sb:
                cold = sb.execute("import jinja2\nenv = jinja2.Environment(autoescape=True)\n" + code)
            assert cold.stdout == "2"
            assert warm.fuel_consumed * 3 < cold.fuel_consumed
        with f.create_session() as s:
            s.execute("page = 'rebound'\ndel env\nmine = 1")
            assert s.execute("print(page, 'env' in globals())").stdout == "rebound False"
            s.clear_state()
            r = s.execute("print(type(page).__name__, type(env).__name__, 'mine' in globals())")
            assert r.stdout == "Template Environment False"
            s.execute("env.globals['x'] = 1")
            s.reset()
            assert s.execute("print('x' in env.globals)").stdout == "False"
        # saved and loaded, the objects come along (they are in the image)
        path = tmp_path / "setup.eryx"
        f.save(path)
        with eryx.SandboxFactory.load(path) as h, h.create_sandbox() as sb:
            assert sb.execute(render).stdout == "<b>a</b><b>&lt;x&gt;</b>"


def test_setup_code_names_are_not_session_state(tmp_path):
    with eryx.SandboxFactory(setup_code="import json\nTABLE = {'a': 1}\nprint('setup')") as f:
        with f.create_session() as s:
            s.execute("mine = TABLE['a'] + 1")
            snap = s.snapshot_state()
        with f.create_session() as s:
            s.restore_state(snap)
            assert s.execute("print(mine, TABLE, json.dumps(1))").stdout == "2 {'a': 1} 1"
        with f.create_sandbox() as sb:
            assert sb.execute("print(TABLE)").stdout == "{'a': 1}"


def test_setup_code_failure_and_validation():
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(setup_code="x = 1\nraise ValueError('no good')")
    assert str(ei.value) == "setup_code failed: ValueError: no good"
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(setup_code="def (")
    assert str(ei.value).startswith("setup_code failed: SyntaxError: ")
    with pytest.raises(TypeError, match="^setup_code must be str or None, not bytes$"):
        eryx.SandboxFactory(setup_code=b"x = 1")
    with pytest.raises(ValueError, match="^setup_code contains NUL characters$"):
        eryx.SandboxFactory(setup_code="x = 1\0")
    with pytest.raises(ValueError, match="^setup_code is not valid Unicode"):
        eryx.SandboxFactory(setup_code="x = '\ud800'")
    # The same packages and imports with other setup code are another factory, cache or not.
    with eryx.SandboxFactory(setup_code="V = 1", cache=True) as a, \
            eryx.SandboxFactory(setup_code="V = 2", cache=True) as b:
        with a.create_sandbox() as sa, b.create_sandbox() as sb:
            assert (sa.execute("print(V)").stdout, sb.execute("print(V)").stdout) == ("1", "2")


def test_saved_factory_with_packages_round_trips(jinja_factory, tmp_path):
    path = tmp_path / "jinja.eryx"
    jinja_factory.save(path)
    assert path.stat().st_size == jinja_factory.size_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["jinja.eryx"]  # no temporary left
    with eryx.SandboxFactory.load(path) as f, f.create_sandbox() as sb:
        assert repr(f).endswith("imports=['jinja2'])")
        assert sb.execute(RENDER).stdout == "True <b>a</b><b>&lt;x&gt;</b>"
        # packages that were not pre-imported come from the file's package files
        assert sb.execute("import markupsafe._native as n\nprint(n.__name__)").stdout == (
            "markupsafe._native")


def test_attrs_and_tabulate(tmp_path):
    with eryx.SandboxFactory(packages=_packages.wheels("attrs", "tabulate"),
                             imports=["attrs", "tabulate"]) as f, f.create_sandbox() as sb:
        r = sb.execute(
            "import attrs\n"
            "@attrs.define\nclass P:\n    x: int = attrs.field(validator=attrs.validators.gt(0))\n"
            "print(P(3))\n"
            "try:\n    P(-1)\nexcept ValueError as e:\n    print('refused', type(e).__name__)\n"
            "from tabulate import tabulate\n"
            "print(tabulate([['a', 1], ['b', 22]], headers=['k', 'v'], tablefmt='github'))")
        assert r.stdout == ("P(x=3)\nrefused ValueError\n"
                            "| k   |   v |\n|-----|-----|\n| a   |   1 |\n| b   |  22 |")


def test_pydantic_v1(tmp_path):
    with eryx.SandboxFactory(packages=_packages.wheels("pydantic", "typing_extensions"),
                             imports=["pydantic"]) as f, f.create_sandbox() as sb:
        r = sb.execute(
            "import pydantic\nprint(pydantic.VERSION)\n"
            "class U(pydantic.BaseModel):\n    name: str\n    age: int\n"
            "print(U(name='a', age='7').age + 1)\n"
            "try:\n    U(name='a', age='x')\nexcept pydantic.ValidationError as e:\n"
            "    print(e.errors()[0]['loc'])")
        assert r.stdout == "1.10.18\n8\n('age',)"


def test_requests_stack(tmp_path):
    names = ("requests", "urllib3", "idna", "certifi", "charset_normalizer")
    with eryx.SandboxFactory(packages=_packages.wheels(*names),
                             imports=["requests"]) as f, f.create_sandbox() as sb:
        r = sb.execute(
            "import requests, charset_normalizer, idna\n"
            "p = requests.Request('GET', 'http://example.test/a', params={'q': 'x y'}).prepare()\n"
            "print(p.url)\n"
            "print(idna.encode('bücher.example').decode())\n"
            "print(charset_normalizer.from_bytes('héllo wörld'.encode('utf-8')).best().encoding)\n"
            "import importlib.metadata as m\nprint(m.version('requests'))")
        assert r.stdout == ("http://example.test/a?q=x+y\nxn--bcher-kva.example\nutf_8\n2.32.3")


def test_httpx_with_a_mock_transport():
    """httpx's whole client stack (httpcore, h11, anyio, sniffio), sync and async, against
    httpx.MockTransport: no network needed."""
    names = ("httpx", "httpcore", "h11", "anyio", "sniffio", "idna", "certifi")
    with eryx.SandboxFactory(packages=_packages.wheels(*names),
                             imports=["httpx"]) as f, f.create_sandbox() as sb:
        r = sb.execute(
            "import httpx, json\n"
            "def handler(request):\n"
            "    return httpx.Response(200, json={'path': request.url.path,\n"
            "                                     'q': request.url.params['q']})\n"
            "with httpx.Client(transport=httpx.MockTransport(handler)) as c:\n"
            "    print(c.get('http://api.test/items', params={'q': 'x'}).json())\n"
            "async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:\n"
            "    r = await c.post('http://api.test/async?q=1')\n"
            "    print(r.status_code, r.json()['path'])")
        assert r.stdout == "{'path': '/items', 'q': 'x'}\n200 /async"


def test_beautifulsoup():
    with eryx.SandboxFactory(packages=_packages.wheels("beautifulsoup4", "soupsieve"),
                             imports=["bs4"]) as f, f.create_sandbox() as sb:
        r = sb.execute(
            "from bs4 import BeautifulSoup\n"
            "s = BeautifulSoup('<ul><li class=a>1</li><li>2</li></ul>', 'html.parser')\n"
            "print([li.text for li in s.select('li')], s.select_one('li.a').text)")
        assert r.stdout == "['1', '2'] 1"


def test_fuel_and_memory_limits_on_factory_interpreters(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="fuelpkg")
    with eryx.SandboxFactory(packages=[pkg], imports=["fuelpkg"]) as f:
        with f.create_sandbox(resource_limits=eryx.ResourceLimits(max_fuel=10**9)) as sb:
            r = sb.execute("import fuelpkg\nprint(fuelpkg.VALUE)")
            assert r.stdout == "41" and r.fuel_consumed > 0
        with f.create_session() as s:
            s.execute("import fuelpkg\nfuelpkg.VALUE = 1")
            s.max_fuel = 10**9  # moves the interpreter to the fuel module, state kept
            assert s.execute("print(fuelpkg.VALUE)").stdout == "1"
            s.reset()
            assert s.execute("import fuelpkg\nprint(fuelpkg.VALUE)").stdout == "41"
        with f.create_sandbox(resource_limits=eryx.ResourceLimits(
                max_memory_bytes=256 << 20)) as sb:
            with pytest.raises(eryx.ResourceLimitError):
                sb.execute("x = bytearray(512 << 20)")


@pytest.mark.timeout(600, method="thread")
def test_sympy_pre_imported():
    with eryx.SandboxFactory(packages=_packages.wheels("sympy", "mpmath"),
                             imports=["sympy"]) as f:
        with f.create_sandbox(resource_limits=eryx.ResourceLimits(
                execution_timeout_ms=60_000)) as sb:
            r = sb.execute("import sympy as s\nx = s.Symbol('x')\n"
                           "print(s.integrate(x**2, x), s.solve(x**2 - 4, x))")
            assert r.stdout == "x**3/3 [-2, 2]"


# ---------------------------------------------------------------------------------------------
# Inputs: site_packages trees, .pth files, directories, archives


def test_site_packages_tree_with_pth(tmp_path):
    site = tmp_path / "site"
    (site / "extra" / "hidden").mkdir(parents=True)
    (site / "extra" / "hidden" / "deep.py").write_text("WHERE = 'deep'\n")
    (site / "plain.py").write_text("X = 5\n")
    (site / "my.pth").write_text("extra/hidden\nimport sys; sys.pth_ran = 'yes'\n")
    with eryx.SandboxFactory(site_packages=site) as f, f.create_sandbox() as sb:
        r = sb.execute("import plain, deep, sys\nprint(plain.X, deep.WHERE)\n"
                       "print('/site-packages/extra/hidden' in sys.path, sys.pth_ran)")
        assert r.stdout == "5 deep\nTrue yes"
    assert sorted(p.name for p in site.iterdir()) == ["extra", "my.pth", "plain.py"]


def test_tgz_package_extracted_as_is(tmp_path):
    path = tmp_path / "tarpkg.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        data = b"def f():\n    return 'from tar'\n"
        info = tarfile.TarInfo("tarpkg/__init__.py")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with eryx.SandboxFactory(packages=[path]) as f, f.create_sandbox() as sb:
        assert sb.execute("import tarpkg\nprint(tarpkg.f())").stdout == "from tar"


def test_create_sandbox_site_packages_replaces_packages(tmp_path):
    pkg = _make_pkg_dir(tmp_path / "a", name="alpha")
    other = tmp_path / "other"
    other.mkdir()
    (other / "beta.py").write_text("B = 'beta'\n")
    with eryx.SandboxFactory(packages=[pkg]) as f:
        with f.create_sandbox(site_packages=other) as sb:
            r = sb.execute("import beta\nprint(beta.B)\n"
                           "try:\n    import alpha\nexcept ImportError:\n    print('no alpha')")
            assert r.stdout == "beta\nno alpha"
        with pytest.raises(eryx.InitializationError) as ei:
            f.create_sandbox(site_packages=tmp_path / "missing")
        assert str(ei.value) == f"package not found: {tmp_path / 'missing'}"


def test_load_with_site_packages(tmp_path, plain_factory):
    other = tmp_path / "other"
    other.mkdir()
    (other / "gamma.py").write_text("G = 3\n")
    data = plain_factory.to_bytes()
    with eryx.SandboxFactory.from_bytes(data, site_packages=other) as f, f.create_sandbox() as sb:
        assert sb.execute("import gamma\nprint(gamma.G)").stdout == "3"


def test_sandbox_arguments_pass_through(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="argpkg")
    vfs = eryx.VfsStorage()
    seen = []
    with eryx.SandboxFactory(packages=[pkg], imports=["argpkg"]) as f:
        with f.create_sandbox(vfs=vfs, on_stdout=seen.append,
                              resource_limits=eryx.ResourceLimits(execution_timeout_ms=300)) as sb:
            sb.execute("open('/data/x.txt', 'w').write('hi')\nprint('streamed')")
            assert vfs.read_file("/x.txt") == b"hi"
            assert "".join(seen).strip() == "streamed"
            with pytest.raises(eryx.TimeoutError):
                sb.execute("while True: pass")
        with pytest.raises(ValueError, match="overlaps"):
            f.create_sandbox(volumes=[(str(tmp_path), "/site-packages", True)])
        with pytest.raises(ValueError, match="overlaps"):
            f.create_sandbox(volumes=[(str(tmp_path), "/site-packages/x", True)])
        with pytest.raises(ValueError, match="overlaps"):
            f.create_session(vfs=vfs, vfs_mount_path="/site-packages")
        with pytest.raises(TypeError):
            f.create_sandbox(no_such_argument=1)
        with pytest.raises(eryx.InitializationError, match="max_memory_bytes"):
            f.create_sandbox(resource_limits=eryx.ResourceLimits(max_memory_bytes=1 << 20))


def test_create_sandbox_from_many_threads(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="threaded", body="import random\nSEED = 7\n")
    outputs, errors = [], []
    with eryx.SandboxFactory(packages=[pkg], imports=["threaded"]) as f:
        def work(i):
            try:
                with f.create_sandbox() as sb:
                    outputs.append(sb.execute(f"import threaded\nprint(threaded.SEED + {i})").stdout)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert sorted(int(o) for o in outputs) == list(range(7, 23))


def test_closed_factory_refuses_and_sessions_survive(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="survivor")
    f = eryx.SandboxFactory(packages=[pkg], imports=["survivor"])
    s = f.create_session()
    f.close()
    assert repr(f).endswith("closed=True)")
    for op in (f.create_sandbox, f.create_session, f.to_bytes, lambda: f.size_bytes,
               lambda: f.save(tmp_path / "x")):
        with pytest.raises(ValueError, match="SandboxFactory is closed"):
            op()
    s.execute("v = 1")
    s.reset()
    assert s.execute("import sys\nprint('survivor' in sys.modules)").stdout == "True"
    s.close()


def test_cache_shares_captured_state(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="stamp", body="import os\nTOKEN = os.urandom(8).hex()\n")
    code = "import stamp\nprint(stamp.TOKEN)"
    with eryx.SandboxFactory(packages=[pkg], imports=["stamp"], cache=True) as a:
        with eryx.SandboxFactory(packages=[pkg], imports=["stamp"], cache=True) as b:
            with a.create_sandbox() as sa, b.create_sandbox() as sb:
                assert sa.execute(code).stdout == sb.execute(code).stdout
        with eryx.SandboxFactory(packages=[pkg], imports=["stamp"]) as c, c.create_sandbox() as sc:
            with a.create_sandbox() as sa:
                assert sa.execute(code).stdout != sc.execute(code).stdout
        data = a.to_bytes()
    with eryx.SandboxFactory.from_bytes(data, cache=True) as x:
        with eryx.SandboxFactory.from_bytes(data, cache=True) as y:
            assert x.to_bytes() == y.to_bytes() == data


_CROSS_PROCESS = """
import sys, eryx
pkg, cache = sys.argv[1], sys.argv[2] == "1"
with eryx.SandboxFactory(packages=[pkg], imports=["stamp"], cache=cache) as f, f.create_sandbox() as sb:
    print(sb.execute("import stamp\\nprint(stamp.TOKEN)").stdout)
"""


def test_cache_shares_captured_state_across_processes(tmp_path):
    """cache=True keeps the captured image in the cache directory: a later process building
    the same factory starts from it (the module's import-time token is the same) instead of
    importing again; without cache=True each build imports."""
    import subprocess
    import sys

    pkg = _make_pkg_dir(tmp_path, name="stamp", body="import os\nTOKEN = os.urandom(8).hex()\n")
    env = dict(os.environ, GOERYX_CACHE_DIR=str(tmp_path / "cache"))

    def build(cache):
        out = subprocess.run([sys.executable, "-c", _CROSS_PROCESS, str(pkg), "1" if cache else "0"],
                             env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    first = build(True)
    assert len(first) == 16
    assert build(True) == first
    assert build(False) != first
    images = list((tmp_path / "cache" / "factory-packages").glob("i-*.img"))
    assert len(images) == 1
    # A damaged cached image is not used (nor kept): the next build imports again.
    images[0].write_bytes(images[0].read_bytes()[:-1] + b"x")
    assert build(True) not in ("", first)


def test_pre_import_of_missing_module():
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(imports=["no_such_module_xyz"])
    assert str(ei.value) == ("pre-import of 'no_such_module_xyz' failed: "
                             "ModuleNotFoundError: No module named 'no_such_module_xyz'")


def test_pre_imports_are_not_globals():
    with eryx.SandboxFactory(imports=["decimal"]) as f, f.create_sandbox() as sb:
        r = sb.execute("import sys\nprint('decimal' in sys.modules, 'decimal' in globals())")
        assert r.stdout == "True False"


# ---------------------------------------------------------------------------------------------
# The error table: native modules, foreign wheels, unsafe members


def _wheel_with(root, members, tag="py3-none-any", name="natpkg"):
    path = root / f"{name}-1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


@pytest.mark.parametrize("member,data,reason", [
    ("natpkg/_x.cpython-313-x86_64-linux-gnu.so", b"\x7fELF" + b"\0" * 60,
     "built for the platform 'x86_64-linux-gnu', not wasm32-wasi"),
    ("natpkg/_x.cpython-314-wasm32-wasi.so", b"\0asm\x01\0\0\0",
     "built for cp314, the guest is CPython 3.13"),
    ("natpkg/_x.so", b"\x7fELF" + b"\0" * 60, "not a WebAssembly module"),
    ("natpkg/_x.cpython-313-wasm32-wasi.so", b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0",
     "a WebAssembly module but not a side module (no dylink.0 section)"),
])
def test_native_extension_refused(tmp_path, member, data, reason):
    path = _wheel_with(tmp_path, {"natpkg/__init__.py": "", member: data},
                       tag="cp313-cp313-wasi_0_0_0_wasm32")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[path])
    assert str(ei.value) == (f"{path}: native extension module '{member}' cannot be loaded by "
                             f"this guest runtime: {reason}")


def test_native_extension_in_directory_refused(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="dirnat")
    (pkg / "fast.abi3.so").write_bytes(b"\x7fELF")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[pkg])
    assert str(ei.value) == (f"{pkg}: native extension module 'fast.abi3.so' cannot be loaded "
                             "by this guest runtime: not a WebAssembly module")


@pytest.mark.parametrize("tag", ["cp313-cp313-macosx_11_0_arm64", "py3-none-win_amd64",
                                 "cp313-cp313-emscripten_3_1_58_wasm32"])
def test_foreign_wheels_refused(tmp_path, tag):
    path = _make_wheel(tmp_path, name="foreign", tag=tag)
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[path])
    assert str(ei.value) == f"{path}: wheel is built for '{tag}', not for pure Python or WASI"


def test_wasi_wheel_accepted(tmp_path):
    path = _make_wheel(tmp_path, name="wasipkg", tag="cp313-cp313-wasi_0_0_0_wasm32")
    with eryx.SandboxFactory(packages=[path]) as f, f.create_sandbox() as sb:
        assert sb.execute("import wasipkg\nprint(wasipkg.hello())").stdout == "from wheel"


def _tar_with(path, *infos):
    with tarfile.open(path, "w:gz") as tf:
        for info, data in infos:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _ti(name, kind=tarfile.REGTYPE, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, linkname
    return info


@pytest.mark.parametrize("info", [
    _ti("../up.py"), _ti("/abs.py"), _ti("ok/../../x.py"),
    _ti("link", tarfile.SYMTYPE, linkname="/etc/passwd"),
    _ti("hard", tarfile.LNKTYPE, linkname="ok.py"),
    _ti("dev", tarfile.CHRTYPE), _ti("blk", tarfile.BLKTYPE), _ti("fifo", tarfile.FIFOTYPE),
], ids=lambda i: i.name)
def test_unsafe_tar_members(tmp_path, info):
    path = _tar_with(tmp_path / "bad.tgz", (info, None))
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[path])
    assert str(ei.value) == f"{path}: unsafe archive member '{info.name}'"


def test_unsafe_zip_members(tmp_path):
    for member in ("/abs.py", "a/../../b.py", "c:\\win.py"):
        path = tmp_path / "evil-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(member, "x = 1\n")
        with pytest.raises(eryx.InitializationError) as ei:
            eryx.SandboxFactory(packages=[path])
        assert str(ei.value) == f"{path}: unsafe archive member '{member}'"
    path = tmp_path / "link-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("link.py")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[path])
    assert str(ei.value) == f"{path}: unsafe archive member 'link.py'"


def test_symlink_in_package_directory_refused(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="linky")
    os.symlink("/etc/passwd", pkg / "passwd")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[pkg])
    assert str(ei.value) == f"{pkg}: unsafe archive member 'passwd'"


def test_bad_archives_and_paths(tmp_path):
    junk = tmp_path / "junk-1.0-py3-none-any.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(eryx.InitializationError, match="not a valid wheel"):
        eryx.SandboxFactory(packages=[junk])
    badgz = tmp_path / "x.tgz"
    badgz.write_bytes(b"not gzip")
    with pytest.raises(eryx.InitializationError, match="not a valid"):
        eryx.SandboxFactory(packages=[badgz])
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(site_packages=tmp_path / "nosite")
    assert str(ei.value) == f"package not found: {tmp_path / 'nosite'}"
    with pytest.raises(TypeError):
        eryx.SandboxFactory(packages="x.whl")


# ---------------------------------------------------------------------------------------------
# The artifact: header validation, corruption, I/O errors

MAGIC = b"GOERYX-FACTORY\r\n"


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _split(data):
    (n,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    return json.loads(data[start:start + n]), data[start + n + 4:]


def _join(header, body):
    raw = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(raw)) + raw + struct.pack("<I", _crc32c(raw)) + body


def test_artifact_header_fields(plain_factory):
    header, body = _split(plain_factory.to_bytes())
    assert header["format"] == 1
    assert isinstance(header["goeryx"], str) and header["goeryx"]
    assert header["guest_python"] == eryx.GUEST_PYTHON_VERSION
    assert len(header["runtime"]) == 32
    assert [s["name"] for s in header["sections"]] == ["image", "files"]
    assert sum(s["size"] for s in header["sections"]) == len(body)
    assert header["imports"] == [] and header["image_bytes"] % 4096 == 0
    # the helpers above rebuild a file byte for byte (so the forged files below differ from a
    # real one only where a test changes them)
    assert _join(header, body) == plain_factory.to_bytes()


@pytest.mark.parametrize("field,value", [("goeryx", "9.9.9"), ("format", 99),
                                         ("guest_python", "3.99.0"), ("runtime", "0" * 32)])
def test_incompatible_factory_file(tmp_path, plain_factory, field, value):
    header, body = _split(plain_factory.to_bytes())
    mine = dict(header)
    header[field] = value
    path = tmp_path / "old.eryx"
    path.write_bytes(_join(header, body))
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory.load(path)
    expected = (f"factory file {path} was made by goeryx {header['goeryx']} (format "
                f"{header['format']}, guest Python {header['guest_python']}); this is goeryx "
                f"{mine['goeryx']} (format {mine['format']}, guest Python {mine['guest_python']})")
    assert str(ei.value).startswith(expected)


def test_corrupt_and_truncated_files(tmp_path, plain_factory):
    data = plain_factory.to_bytes()
    header, body = _split(data)
    hdr_end = len(data) - len(body)
    cases = {
        "truncated in the header": data[:len(MAGIC) + 10],
        "truncated in the image": data[:hdr_end + 100],
        "truncated at the end": data[:-1],
        "extra byte": data + b"\0",
        "flipped header byte": data[:len(MAGIC) + 6] + bytes([data[len(MAGIC) + 6] ^ 1])
        + data[len(MAGIC) + 7:],
        "flipped image byte": data[:hdr_end + 5000] + bytes([data[hdr_end + 5000] ^ 0xFF])
        + data[hdr_end + 5001:],
        "flipped last byte": data[:-1] + bytes([data[-1] ^ 0xFF]),
        "huge header length": MAGIC + struct.pack("<I", 0xFFFFFFF0) + b"{}",
    }
    for what, blob in cases.items():
        path = tmp_path / "bad.eryx"
        path.write_bytes(blob)
        with pytest.raises(eryx.InitializationError) as ei:
            eryx.SandboxFactory.load(path)
        assert str(ei.value).startswith(f"failed to load factory from {path}: "), what
        with pytest.raises(eryx.InitializationError):
            eryx.SandboxFactory.from_bytes(blob)


def test_forged_image_size_is_bounded(tmp_path, plain_factory):
    header, body = _split(plain_factory.to_bytes())
    header["image_bytes"] = 1 << 40
    with pytest.raises(eryx.InitializationError, match="invalid image size"):
        eryx.SandboxFactory.from_bytes(_join(header, body))


def test_not_factory_files(tmp_path):
    for blob in (b"", b"GOERYX", b"PK\x03\x04" + b"\0" * 100, b"\x80\x04\x95pyeryx pickle"):
        path = tmp_path / "other.bin"
        path.write_bytes(blob)
        with pytest.raises(eryx.InitializationError) as ei:
            eryx.SandboxFactory.load(path)
        assert str(ei.value) == f"{path} is not a goeryx factory file"
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory.load(tmp_path)
    assert str(ei.value).startswith(f"failed to load factory from {tmp_path}: ")


def test_save_failure(tmp_path, plain_factory):
    target = tmp_path / "no" / "such" / "dir" / "f.eryx"
    with pytest.raises(eryx.InitializationError) as ei:
        plain_factory.save(target)
    assert str(ei.value).startswith(f"failed to save factory to {target}: ")
    path = tmp_path / "f.eryx"
    path.write_bytes(b"old")
    plain_factory.save(path)
    assert path.read_bytes() == plain_factory.to_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.eryx"]


def test_lifecycle_rules(tmp_path):
    f = eryx.SandboxFactory()
    with pytest.raises(AttributeError):
        f.closed = True
    with pytest.raises(RuntimeError, match="boom"):
        with f:
            raise RuntimeError("boom")
    assert f.closed is True
    assert f.__exit__(None, None, None) is None
    with pytest.raises(ValueError, match="SandboxFactory is closed"):
        f.create_sandbox()


def test_guest_cannot_change_packages(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="ro")
    with eryx.SandboxFactory(packages=[pkg]) as f, f.create_session() as s:
        for code in ("open('/site-packages/ro/__init__.py', 'a').write('x')",
                     "import os\nos.remove('/site-packages/ro/__init__.py')",
                     "import os\nos.mkdir('/site-packages/new')"):
            with pytest.raises(eryx.ExecutionError):
                s.execute(code)
        assert s.execute("import ro\nprint(ro.VALUE)").stdout == "41"


def test_argument_validation(plain_factory, tmp_path):
    for kwargs in ({"packages": ["a\0b"]}, {"site_packages": "x\0"}):
        with pytest.raises(ValueError, match="NUL"):
            eryx.SandboxFactory(**kwargs)
    for kwargs in ({"packages": [1]}, {"site_packages": 3}, {"cache": "yes"}, {"imports": [b"x"]}):
        with pytest.raises(TypeError):
            eryx.SandboxFactory(**kwargs)
    with pytest.raises(TypeError):
        eryx.SandboxFactory(None)  # keyword arguments only
    with pytest.raises(ValueError, match="NUL"):
        plain_factory.save("f\0")
    with pytest.raises(ValueError, match="NUL"):
        eryx.SandboxFactory.load("f\0")
    with pytest.raises(TypeError):
        eryx.SandboxFactory.load(b"/tmp/f")
    with pytest.raises(TypeError):
        eryx.SandboxFactory.from_bytes(plain_factory.to_bytes(), cache=1)
    with pytest.raises(ValueError, match="NUL"):
        plain_factory.create_sandbox(site_packages="a\0")
    # any bytes-like object
    with eryx.SandboxFactory.from_bytes(bytearray(plain_factory.to_bytes())) as f:
        assert f.size_bytes == plain_factory.size_bytes


@pytest.fixture
def local_http_server():
    """A real HTTP server on 127.0.0.1 that answers every GET with JSON naming the path."""
    import http.server
    import json
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = json.dumps({"path": self.path, "agent": self.headers.get("User-Agent", "")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_and_httpx_fetch_from_a_local_server(local_http_server):
    """Packages and networking together: the factory's pre-imported clients talk to a real
    server through the host's network layer."""
    names = ("requests", "urllib3", "idna", "certifi", "charset_normalizer",
             "httpx", "httpcore", "h11", "anyio", "sniffio")
    with eryx.SandboxFactory(packages=_packages.wheels(*names),
                             imports=["requests", "httpx"]) as f, \
            f.create_sandbox(network=eryx.NetConfig().allow_localhost()) as sb:
        r = sb.execute(
            "import requests, httpx\n"
            f"base = {local_http_server!r}\n"
            "print(requests.get(base + '/requests', timeout=10).json()['path'])\n"
            "print(httpx.get(base + '/httpx-sync', timeout=10).json()['path'])\n"
            "async with httpx.AsyncClient(timeout=10) as c:\n"
            "    print((await c.get(base + '/httpx-async')).json()['path'])\n")
        assert r.stdout == "/requests\n/httpx-sync\n/httpx-async"
