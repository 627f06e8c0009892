"""MCP (API.md §13): `eryx serve` driven by the SDK's real client, and MCP tools in the guest.

The MCP SDK is the extra goeryx[mcp]; requirements-dev.txt installs it for the tests.
"""

import asyncio
import subprocess
import sys
from contextlib import asynccontextmanager

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

pytestmark = pytest.mark.timeout(120)


def run(coro):
    return asyncio.run(coro)


@asynccontextmanager
async def eryx_serve(*flags):
    params = StdioServerParameters(command=sys.executable, args=["-m", "eryx", "serve", *flags])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as client:
            await client.initialize()
            yield client


def text_of(result):
    assert len(result.content) == 1
    return result.content[0].text


# --- eryx serve ------------------------------------------------------------------------------


def test_serve_lists_run_python_and_reset_with_their_schemas():
    async def main():
        async with eryx_serve() as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in run(main())}
    assert sorted(tools) == ["reset", "run_python"]
    schema = tools["run_python"].input_schema
    assert schema["type"] == "object"
    assert schema["required"] == ["code"]
    assert schema["properties"]["code"]["type"] == "string"
    assert schema["properties"]["timeout_ms"]["type"] == "integer"
    assert tools["reset"].input_schema.get("required", []) == []


def test_serve_run_python_outputs_state_errors_timeouts_and_reset():
    async def main():
        out = {}
        async with eryx_serve() as client:
            call = client.call_tool
            out["print"] = await call("run_python", {"code": "x = 20\nprint(x + 1)"})
            out["persist"] = await call("run_python", {"code": "print(x * 2)"})
            out["silent"] = await call("run_python", {"code": "y = 1"})
            out["stderr"] = await call(
                "run_python", {"code": "import sys\nprint('o')\nprint('e', file=sys.stderr)"})
            out["error"] = await call("run_python", {"code": "print('before')\n1/0"})
            out["after_error"] = await call("run_python", {"code": "print(x)"})
            out["timeout"] = await call(
                "run_python", {"code": "z = 7\nwhile True: pass", "timeout_ms": 300})
            out["after_timeout"] = await call("run_python", {"code": "print(x, z)"})
            out["bad_arg"] = await call("run_python", {"code": 5})
            out["reset"] = await call("reset", {})
            out["after_reset"] = await call("run_python", {"code": "print(x)"})
        return out

    out = run(main())
    assert (text_of(out["print"]), out["print"].is_error) == ("21", False)
    assert text_of(out["persist"]) == "40"
    assert text_of(out["silent"]) == "(no output)"
    assert text_of(out["stderr"]) == "o\n[stderr]\ne"
    assert out["error"].is_error is True
    text = text_of(out["error"])
    assert text.startswith("before\n[stderr]\nTraceback (most recent call last):")
    assert text.endswith("ZeroDivisionError: division by zero")
    assert (text_of(out["after_error"]), out["after_error"].is_error) == ("20", False)
    assert out["timeout"].is_error is True
    assert text_of(out["timeout"]).endswith("TimeoutError: execution timed out after 300 ms")
    assert text_of(out["after_timeout"]) == "20 7"
    assert out["bad_arg"].is_error is True
    assert "'code' must be a string" in text_of(out["bad_arg"])
    assert out["reset"].is_error is False
    assert out["after_reset"].is_error is True
    assert text_of(out["after_reset"]).endswith("NameError: name 'x' is not defined")


def test_serve_flags_apply_to_the_session(tmp_path):
    (tmp_path / "data.txt").write_text("mounted")

    async def main():
        async with eryx_serve("--timeout", "250", "--max-memory", "64M",
                              "-v", f"{tmp_path}:/mnt/in:ro") as client:
            return (
                await client.call_tool("run_python", {"code": "print(open('/mnt/in/data.txt').read())"}),
                await client.call_tool("run_python", {"code": "while True: pass"}),
                await client.call_tool("run_python", {"code": "b = bytearray(200 * 2**20)"}),
            )

    read, spin, memory = run(main())
    assert text_of(read) == "mounted"
    assert spin.is_error and text_of(spin).endswith("execution timed out after 250 ms")
    assert memory.is_error and "max_memory_bytes=67108864" in text_of(memory)


def test_serve_stdout_carries_only_the_protocol():
    """Guest output, even a flood of it, comes back in results; stdout has JSON-RPC only."""
    import json

    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "run_python",
            "arguments": {"code": "import sys\nprint('GUEST-OUT')\nprint('GUEST-ERR', file=sys.stderr)"}}},
    ]
    proc = subprocess.Popen([sys.executable, "-m", "eryx", "serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
        proc.stdin.flush()
        stdout = ""
        while '"id":2' not in stdout.replace(" ", ""):
            line = proc.stdout.readline()
            assert line, "the server closed stdout before answering"
            stdout += line
        proc.stdin.close()
        stdout += proc.stdout.read()
        stderr = proc.stderr.read()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    lines = [line for line in stdout.splitlines() if line.strip()]
    messages = [json.loads(line) for line in lines]  # every line is a JSON-RPC message
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    result = next(m for m in messages if m.get("id") == 2)["result"]
    assert result["content"][0]["text"] == "GUEST-OUT\n[stderr]\nGUEST-ERR"
    assert stdout.count("GUEST-OUT") == 1  # only inside the result
    assert "GUEST" not in stderr


def test_serve_usage_errors_exit_2():
    p = subprocess.run([sys.executable, "-m", "eryx", "serve", "--timeout", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "usage: eryx serve" in p.stderr


# --- MCPManager and mcp= ---------------------------------------------------------------------

import os  # noqa: E402

import eryx  # noqa: E402

SERVER = os.path.join(os.path.dirname(__file__), "mcp_test_server.py")


@pytest.fixture
def manager():
    with eryx.MCPManager() as m:
        assert m.connect("srv", sys.executable, [SERVER]) == 8
        yield m


def test_manager_connects_and_lists_tools(manager):
    assert manager.server_names == ["srv"]
    tools = {t["tool"]: t for t in manager.list_tools()}
    assert sorted(tools) == ["add", "die", "echo", "fail", "greeting", "rendezvous", "sleep",
                           "stats"]
    add = tools["add"]
    assert add["name"] == 'mcp["srv"].add'
    assert add["description"].startswith("Add two integers")
    assert list(add["schema"]["properties"]) == ["a", "b"]
    assert add["schema"]["required"] == ["a"]


def test_guest_calls_tools_with_results_mapped(manager):
    with eryx.Sandbox(mcp=manager) as sandbox:
        r = sandbox.execute(
            "text = await mcp.srv.echo('hi')\n"
            "total = await mcp.srv.add(2, b=5)\n"
            "structured = await mcp['srv']['stats'](values=[1, 2, 3])\n"
            "via_invoke = await invoke('mcp.srv.add', a=1)\n"
            "names = sorted(c['name'] for c in list_callbacks())\n"
            "result = [text, total, structured, via_invoke, names]\n"
        )
    text, total, structured, via_invoke, names = r.result
    assert text == {"text": "hi"}  # plain text
    assert total == {"sum": 7}  # a single JSON text part
    assert structured == {"count": 3, "total": 6}  # structured content
    assert via_invoke == {"sum": 2}
    assert names == ["mcp.srv.add", "mcp.srv.die", "mcp.srv.echo", "mcp.srv.fail",
                     "mcp.srv.greeting", "mcp.srv.rendezvous", "mcp.srv.sleep", "mcp.srv.stats"]


def test_tool_errors_raise_runtime_error_in_the_guest(manager):
    with eryx.Session(mcp=manager) as session:
        r = session.execute(
            "try:\n"
            "    await mcp.srv.fail('boom')\n"
            "except RuntimeError as e:\n"
            "    result = str(e)\n"
        )
        assert "MCP tool error:" in r.result and "boom" in r.result
        with pytest.raises(eryx.ExecutionError, match="MCP tool error"):
            session.execute("await mcp.srv.fail('again')")
        with pytest.raises(eryx.ExecutionError, match="(?s)MCP tool error: .*valid integer"):
            session.execute("await mcp.srv.add('not a number')")
        assert session.execute("result = await mcp.srv.echo('still fine')").result == {
            "text": "still fine"}


def test_concurrent_tool_calls_under_gather(manager):
    """Ten gathered calls are in progress at the same time on the server: each waits for all
    ten to arrive (a serial run would answer "alone")."""
    with eryx.Sandbox(mcp=manager) as sandbox:
        r = sandbox.execute(
            "import asyncio\n"
            "result = await asyncio.gather(*(mcp.srv.rendezvous(10) for _ in range(10)),\n"
            "                              mcp.srv.sleep(10))\n"
        )
    assert r.result == [{"result": "met"}] * 10 + [{"result": "slept 10"}]


def test_slow_tool_hits_the_callback_timeout_and_the_server_carries_on(manager):
    limits = eryx.ResourceLimits(callback_timeout_ms=300)
    with eryx.Session(mcp=manager, resource_limits=limits) as session:
        r = session.execute(
            "try:\n"
            "    await mcp.srv.sleep(20000)\n"
            "except TimeoutError as e:\n"
            "    result = str(e)\n"
        )
        assert r.result == "callback 'mcp.srv.sleep' timed out after 300 ms"
        assert session.execute("result = await mcp.srv.echo('next')").result == {"text": "next"}


def test_execute_async_runs_tool_calls(manager):
    async def main():
        with eryx.Session(mcp=manager) as session:
            return (await session.execute_async("result = await mcp.srv.add(40, 2)")).result

    assert run(main()) == {"sum": 42}


def test_dead_server_makes_its_tools_fail(manager):
    with eryx.Session(mcp=manager) as session:
        r = session.execute(
            "out = []\n"
            "for call in (mcp.srv.die, mcp.srv.echo):\n"
            "    try:\n"
            "        await call() if call is mcp.srv.die else await call('x')\n"
            "    except RuntimeError as e:\n"
            "        out.append(str(e))\n"
            "result = out\n"
        )
    assert len(r.result) == 2
    assert all("MCP server 'srv' is not running" in m for m in r.result), r.result


def test_connect_failures_raise_initialization_error_with_stderr(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import sys\nprint('config missing: BROKEN-42', file=sys.stderr)\n"
                      "sys.exit(1)\n")
    with eryx.MCPManager() as m:
        with pytest.raises(eryx.InitializationError) as info:
            m.connect("broken", sys.executable, [str(script)], timeout_secs=20)
        assert "MCP server 'broken' failed to start" in str(info.value)
        assert "BROKEN-42" in str(info.value)
        with pytest.raises(eryx.InitializationError, match="no_such_command_xyz|No such file"):
            m.connect("missing", "no_such_command_xyz")
        silent = tmp_path / "silent.py"
        silent.write_text("import sys, time\nprint('waiting forever', file=sys.stderr, "
                          "flush=True)\ntime.sleep(600)\n")
        with pytest.raises(eryx.InitializationError) as info:
            m.connect("silent", sys.executable, [str(silent)], timeout_secs=1)
        assert "no answer within 1 s" in str(info.value)
        assert "waiting forever" in str(info.value)
        assert m.server_names == []
        with pytest.raises(ValueError, match="invalid MCP server name"):
            m.connect("a.b", sys.executable, [SERVER])


def test_manager_env_close_and_validation():
    m = eryx.MCPManager()
    m.connect("a", sys.executable, [SERVER], env={"MCP_TEST_GREETING": "hello"})
    with eryx.Sandbox(mcp=m) as sandbox:
        assert sandbox.execute("result = await mcp.a.greeting()").result == {"result": "hello"}
    with pytest.raises(ValueError, match="already connected"):
        m.connect("a", sys.executable, [SERVER])
    m.close()
    m.close()  # idempotent
    assert m.closed
    with pytest.raises(ValueError, match="closed"):
        eryx.Sandbox(mcp=m)
    with pytest.raises(TypeError, match="mcp must be an MCPManager"):
        eryx.Session(mcp=object())


def test_import_eryx_does_not_import_the_sdk():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, eryx\neryx.MCPManager\nfrom eryx import *\n"
         "print('mcp' in sys.modules, 'eryx.mcp' in sys.modules)"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False False"


def test_cli_without_the_sdk_names_the_extra():
    code = ("import sys\nsys.modules['mcp'] = None\nfrom eryx.__main__ import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    for args in (["serve"], ["--mcp-config", "x.json", "-c", "pass"]):
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 1, args
        assert p.stdout == ""
        assert "pip install 'goeryx[mcp]'" in p.stderr, p.stderr


def test_eryx_mcp_without_the_sdk_names_the_extra():
    code = ("import sys\nsys.modules['mcp'] = None\n"
            "try:\n    import eryx.mcp\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "goeryx[mcp]" in out


# --- discovery and the CLI flags ------------------------------------------------------------

import json  # noqa: E402


def server_entry(**env):
    return {"command": sys.executable, "args": [SERVER], "env": env}


def test_expand_env():
    from eryx.mcp import expand_env

    env = {"A": "1", "EMPTY": ""}
    assert expand_env("$A-${A}-${B:-dflt}-${EMPTY:-e}-$B-x", env) == "1-1-dflt-e--x"
    assert expand_env("no vars", env) == "no vars"


def test_discovery_reads_config_files_later_files_win(tmp_path, monkeypatch):
    import eryx.mcp

    home, project = tmp_path / "home", tmp_path / "project"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("TOKEN", "s3cret")
    (home / ".cursor").mkdir(parents=True)
    (home / ".cursor/mcp.json").write_text(json.dumps({"mcpServers": {
        "shared": {"command": "user-cmd"},
        "cursor_only": {"command": "c", "args": ["--token", "$TOKEN"],
                        "env": {"T": "${TOKEN}", "D": "${UNSET_VAR_XYZ:-fallback}"}},
        "remote": {"url": "https://example.com/mcp"},
    }}))
    project.mkdir()
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"shared": {"command": "proj"}}}))
    (project / ".vscode").mkdir()
    (project / ".vscode/mcp.json").write_text(json.dumps({"servers": {"vs": {"command": "v"}}}))
    (home / ".claude.json").write_text("{ not json")  # skipped with a warning

    paths = eryx.mcp.config_paths(project)
    assert home / ".cursor/mcp.json" in paths and paths[-1] == project / ".mcp.json"
    servers = eryx.mcp.discover(paths)
    assert sorted(servers) == ["cursor_only", "shared", "vs"]
    assert servers["shared"]["command"] == "proj"  # the project file comes later
    assert servers["cursor_only"] == {"command": "c", "args": ["--token", "s3cret"],
                                      "env": {"T": "s3cret", "D": "fallback"}}


def test_connect_configured_servers(tmp_path):
    import eryx.mcp

    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "one": server_entry(MCP_TEST_GREETING="${GREETING_XYZ:-hi from config}")}}))
    with eryx.mcp.connect_configured([config]) as manager:
        assert manager.server_names == ["one"]
        with eryx.Sandbox(mcp=manager) as sandbox:
            assert sandbox.execute("result = await mcp.one.greeting()").result == {
                "result": "hi from config"}


def test_cli_mcp_config_for_a_run(tmp_path):
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"tools": server_entry()}}))
    p = subprocess.run([sys.executable, "-m", "eryx", "--mcp-config", str(config), "-c",
                        "print(await mcp.tools.add(1, 2))"],
                       capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "{'sum': 3}\n"), p.stderr
    p = subprocess.run([sys.executable, "-m", "eryx", "--mcp-config", str(tmp_path / "nope.json"),
                        "-c", "pass"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "nope.json: No such file or directory" in p.stderr


def test_cli_mcp_discovers_servers_in_home(tmp_path):
    home = tmp_path / "home"
    (home / ".cursor").mkdir(parents=True)
    (home / ".cursor/mcp.json").write_text(json.dumps({"mcpServers": {
        "found": server_entry(MCP_TEST_GREETING="$MY_GREETING")}}))
    env = {**os.environ, "HOME": str(home), "MY_GREETING": "expanded"}
    env.pop("XDG_CONFIG_HOME", None)
    p = subprocess.run([sys.executable, "-m", "eryx", "--mcp", "-c",
                        "print((await mcp.found.greeting())['result'])"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert (p.returncode, p.stdout) == (0, "expanded\n"), p.stderr


def test_serve_with_mcp_config_gives_run_python_the_tools(tmp_path):
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"srv": server_entry()}}))

    async def main():
        async with eryx_serve("--mcp-config", str(config)) as client:
            return await client.call_tool(
                "run_python", {"code": "print(await mcp.srv.echo('through serve'))"})

    result = run(main())
    assert (text_of(result), result.is_error) == ("{'text': 'through serve'}", False)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_repl_with_mcp_config(tmp_path):
    """The REPL (a terminal on stdin) connects --mcp-config's servers and names them."""
    import pty
    import select

    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"srv": server_entry()}}))
    pid, fd = pty.fork()
    if pid == 0:  # the child: the REPL on the pseudo-terminal
        os.execv(sys.executable, [sys.executable, "-m", "eryx", "--mcp-config", str(config)])
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen:
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, f"no {marker!r} in {seen!r}"
            seen += os.read(fd, 4096)

    try:
        read_until(b">>> ")
        assert b"MCP servers: srv" in seen
        os.write(fd, b"print('sum is', (await mcp.srv.add(3, 4))['sum'])\n")
        read_until(b"sum is 7")
        os.write(fd, b"exit()\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
