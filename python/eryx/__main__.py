"""The ``eryx`` command line (API.md §11): run a script or ``-c CODE`` once, or start a REPL."""

from __future__ import annotations

import argparse
import ast
import codeop
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import (
    GUEST_PYTHON_VERSION,
    EryxError,
    ExecutionError,
    NetConfig,
    ResourceLimitError,
    ResourceLimits,
    Sandbox,
    Session,
    TimeoutError,
    __version__,
)
from ._validate import check_code

__all__ = ["main"]

Volume = tuple[str, str, bool]


def _volume(spec: str) -> Volume:
    """``SRC:DST[:ro|:rw]``; a one-letter first segment is a Windows drive (``C:\\x:/mnt``)."""
    parts = spec.split(":")
    drive = len(parts[0]) == 1 and parts[0].isalpha()
    # "a:/mnt:ro" is the directory "a"; "C:\x:/mnt" and "C:\x:/mnt:ro" are drive paths.
    if drive and (len(parts) == 4 or (len(parts) == 3 and parts[2] not in ("ro", "rw"))):
        parts = [parts[0] + ":" + parts[1], *parts[2:]]
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError(
            f"invalid volume format '{spec}', expected SRC:DST[:ro|:rw]"
        )
    return (parts[0], parts[1], mode == "ro")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _size(text: str) -> int:
    """A byte count: an integer, optionally with a K, M or G suffix (powers of 1024; ``KB``,
    ``KiB``... are accepted too)."""
    raw = text.strip()
    upper = raw.upper()
    for suffix in ("IB", "B"):
        if upper.endswith(suffix) and len(upper) > len(suffix) and upper[-len(suffix) - 1] in "KMG":
            upper = upper[: -len(suffix)]
            break
    unit = upper[-1:] if upper[-1:] in ("K", "M", "G") else ""
    number = upper[: len(upper) - len(unit)]
    try:
        value = int(number) * _SIZE_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size: '{text}' (an integer, optionally with K, M or G)"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eryx",
        description="Run Python code in the goeryx WebAssembly sandbox.",
        epilog="With no CODE or script, a terminal starts the REPL; otherwise the code is read "
        "from stdin.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"eryx {__version__} (guest Python {GUEST_PYTHON_VERSION})",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-c", dest="code", metavar="CODE", help="run CODE")
    source.add_argument("script", nargs="?", help="a UTF-8 Python file to run, or - for stdin")
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="arguments for the script (its sys.argv[1:])"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_int,
        metavar="MS",
        help="execution timeout in milliseconds (default: 30000 for a run, none in the REPL)",
    )
    parser.add_argument(
        "--stdin",
        metavar="PATH",
        help="a file the code reads as its stdin (input(), sys.stdin), or - for this "
        "process's stdin (default: an empty stdin)",
    )
    _guest_flags(parser)
    _mcp_flags(parser, discover=True)
    return parser


def _guest_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that shape the guest, shared by runs, the REPL and ``serve``."""
    parser.add_argument(
        "--max-memory",
        type=_size,
        metavar="BYTES",
        help="guest memory cap, e.g. 268435456 or 256M (default: 128M)",
    )
    parser.add_argument(
        "--net", action="store_true", help="enable networking, any host (default: off)"
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="PATTERN",
        help="enable networking for matching hosts only (repeatable)",
    )
    parser.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        type=_volume,
        metavar="SRC:DST[:ro|:rw]",
        help="mount a host file or directory (repeatable)",
    )


def _mcp_flags(parser: argparse.ArgumentParser, discover: bool) -> None:
    if discover:
        parser.add_argument(
            "--mcp",
            action="store_true",
            help="connect the MCP servers configured for your IDEs and agents (Claude, Cursor, "
            "VS Code, Windsurf): their tools are await mcp.<server>.<tool>(...) in the code",
        )
    parser.add_argument(
        "--mcp-config",
        action="append",
        default=[],
        metavar="PATH",
        help="connect the stdio MCP servers of this JSON file ({\"mcpServers\": {...}}), "
        "repeatable; needs goeryx[mcp]",
    )


def _mcp_manager(args: argparse.Namespace) -> tuple[bool, Any]:
    """``(ok, manager)``: the MCPManager of --mcp/--mcp-config (``None`` without them), or
    ``(False, None)`` after reporting why it cannot be made. A server that fails to start is
    reported and left out."""
    if not getattr(args, "mcp", False) and not args.mcp_config:
        return True, None
    try:
        from . import mcp as eryx_mcp
    except ImportError as exc:
        _error(str(exc))
        return False, None
    servers = eryx_mcp.discover() if getattr(args, "mcp", False) else {}
    for path in args.mcp_config:
        try:
            servers.update(eryx_mcp.load_config(path))
        except OSError as exc:
            _error(f"{path}: {exc.strerror or exc}")
            return False, None
        except ValueError as exc:
            _error(str(exc))
            return False, None
    manager = eryx_mcp.MCPManager()
    for name, spec in servers.items():
        try:
            manager.connect(name, spec["command"], spec["args"], spec["env"])
        except (EryxError, ValueError, TypeError) as exc:
            _error(str(exc))
    return True, manager


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eryx serve",
        description="An MCP stdio server with a persistent sandboxed Python: the tools "
        "run_python(code, timeout_ms=None) and reset().",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_int,
        metavar="MS",
        help="default execution timeout of run_python in milliseconds (default: 30000)",
    )
    _guest_flags(parser)
    _mcp_flags(parser, discover=False)
    return parser


def _serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    from ._mcp_manager import require_sdk

    try:
        require_sdk()
    except ImportError as exc:
        _error(str(exc))
        return 1
    from ._mcp_serve import serve

    limits = _limits(args)
    ok, manager = _mcp_manager(args)
    if not ok:
        return 1
    kwargs = {"resource_limits": limits, "network": _network(args),
              "volumes": args.volume or None, "mcp": manager}
    try:
        return serve(kwargs)
    except (EryxError, ValueError, TypeError) as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if manager is not None:
            manager.close()


def _network(args: argparse.Namespace) -> NetConfig | None:
    if not args.net and not args.allow_host:
        return None
    config = NetConfig.permissive()
    for pattern in args.allow_host:
        config.allow_host(pattern)
    return config


def _writer(stream: TextIO) -> Callable[[str], None]:
    def write(chunk: str) -> None:
        try:
            stream.write(chunk)
        except UnicodeEncodeError:
            encoding = stream.encoding or "utf-8"
            stream.write(chunk.encode(encoding, "backslashreplace").decode(encoding))
        stream.flush()

    return write


def _error(message: str) -> None:
    print(f"eryx: {message}", file=sys.stderr, flush=True)


def _read_source(path: str) -> str | None:
    """The script's text, or ``None`` after reporting why it cannot be read."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        _error(f"{path}: No such file or directory")
    except OSError as exc:
        _error(f"{path}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        _error(f"{path}: {exc}")
    return None


def _guest_stdin(args: argparse.Namespace) -> bytes | None:
    """The bytes of --stdin, or None when not given; raises OSError when unreadable."""
    if args.stdin is None:
        return None
    if args.stdin == "-":
        return sys.stdin.buffer.read() if sys.stdin is not None else b""
    with open(args.stdin, "rb") as f:
        return f.read()


def _limits(args: argparse.Namespace) -> ResourceLimits:
    """The ResourceLimits of --timeout and --max-memory (the defaults where not given)."""
    limits = ResourceLimits()
    if args.timeout is not None:
        limits.execution_timeout_ms = args.timeout
    if args.max_memory is not None:
        limits.max_memory_bytes = args.max_memory
    return limits


def _run_once(args: argparse.Namespace, code: str, script: str | None = None) -> int:
    """One run in a Sandbox. A script (a path, or - for stdin) names the code in tracebacks
    and, with its arguments, makes the guest's sys.argv, as python does."""
    limits = _limits(args)
    ok, manager = _mcp_manager(args)
    if not ok:
        return 1
    try:
        return _run_in_sandbox(args, code, script, limits, manager)
    finally:
        if manager is not None:
            manager.close()


def _run_in_sandbox(args: argparse.Namespace, code: str, script: str | None,
                    limits: ResourceLimits, manager: Any) -> int:
    try:
        sandbox = Sandbox(
            resource_limits=limits,
            network=_network(args),
            volumes=args.volume or None,
            on_stdout=_writer(sys.stdout),
            on_stderr=_writer(sys.stderr),
            mcp=manager,
        )
    except (EryxError, ValueError, TypeError) as exc:
        _error(str(exc))
        return 1
    try:
        stdin = _guest_stdin(args)
    except OSError as exc:
        _error(f"{args.stdin}: {exc.strerror or exc}")
        sandbox.close()
        return 1
    options = None
    if script is not None:
        filename = "<stdin>" if script == "-" else script
        options = json.dumps({"filename": filename, "argv": [script, *args.args]}).encode()
    with sandbox:
        try:
            sandbox._execute(check_code(code), 0, stdin, options)
        except TimeoutError as exc:
            _error(f"timeout: {exc}")
        except ResourceLimitError as exc:
            _error(f"resource limit: {exc}")
        except ExecutionError:
            pass  # the traceback was streamed to stderr
        except EryxError as exc:
            _error(str(exc))
        except KeyboardInterrupt:
            # Ctrl-C interrupted the run; exit as an interrupted Python program does.
            print("KeyboardInterrupt", file=sys.stderr)
            return 130
        else:
            return 0
    return 1


_INTERACTIVE = json.dumps({"interactive": True, "filename": "<stdin>"}).encode()


def _repl(args: argparse.Namespace) -> int:
    try:
        import readline  # noqa: F401 - line editing for input()
    except ImportError:
        pass
    ok, manager = _mcp_manager(args)
    if not ok:
        return 1
    try:
        return _repl_session(args, manager)
    finally:
        if manager is not None:
            manager.close()


def _repl_session(args: argparse.Namespace, manager: Any) -> int:
    limits = ResourceLimits(execution_timeout_ms=args.timeout)
    if args.max_memory is not None:
        limits.max_memory_bytes = args.max_memory
    try:
        session = Session(
            resource_limits=limits,
            network=_network(args),
            volumes=args.volume or None,
            on_stdout=_writer(sys.stdout),
            on_stderr=_writer(sys.stderr),
            mcp=manager,
        )
    except (EryxError, ValueError, TypeError) as exc:
        _error(str(exc))
        return 1
    compiler = codeop.CommandCompiler()
    compiler.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    print(f"Eryx {__version__} (sandbox REPL)")
    print('Type "exit()" or Ctrl-D to quit.')
    if manager is not None and manager.server_names:
        print("MCP servers: " + ", ".join(manager.server_names) + " (await mcp.<server>.<tool>())")
    lines: list[str] = []
    with session:
        while True:
            try:
                line = input("... " if lines else ">>> ")
            except EOFError:
                print()
                if not lines:
                    return 0
                lines = []
                continue
            except KeyboardInterrupt:
                print("\nKeyboardInterrupt")
                lines = []
                continue
            if not lines and line.strip() in ("exit()", "quit()"):
                return 0
            lines.append(line)
            source = "\n".join(lines)
            try:
                if compiler(source, "<user>", "single") is None:
                    continue  # incomplete input
            except (SyntaxError, ValueError, OverflowError):
                pass  # let the guest report it, in its own format
            lines = []
            try:
                # Compiled as Python's REPL does: expression values are echoed.
                session._execute(check_code(source), 0, None, _INTERACTIVE)
            except ValueError as exc:  # code with NUL characters or lone surrogates
                print(f"ValueError: {exc}", file=sys.stderr)
            except TimeoutError as exc:
                print(f"TimeoutError: {exc}", file=sys.stderr)
            except ResourceLimitError as exc:
                print(f"ResourceLimitError: {exc}", file=sys.stderr)
            except ExecutionError:
                pass  # its text was streamed to stderr
            except EryxError as exc:
                print(f"EryxError: {exc}", file=sys.stderr)
            except KeyboardInterrupt:
                print("\nKeyboardInterrupt", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    ``--version``, ``--help`` and usage errors raise ``SystemExit`` as argparse does.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _serve(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)

    if args.code is not None:
        return _run_once(args, args.code)
    if args.script is not None:
        code = _read_source(args.script)
        if code is None:
            return 1
        return _run_once(args, code, args.script)
    if sys.stdin is not None and sys.stdin.isatty():
        return _repl(args)
    code = sys.stdin.read() if sys.stdin is not None else ""
    if not code.strip():
        parser.print_help()
        return 0
    return _run_once(args, code)


if __name__ == "__main__":
    sys.exit(main())
