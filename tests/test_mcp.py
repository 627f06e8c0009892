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
