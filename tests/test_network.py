"""Networking policy and guest sockets (API.md §3.2-3.4).

All traffic goes to servers that the tests start on 127.0.0.1: a threaded HTTP/1.1 server
(keep-alive, chunked, slow and hanging endpoints, a 64 MiB body), an HTTPS server with a CA
and certificates made at test time (trustme), and raw TCP servers that reset or stall.
"""

import hashlib
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import eryx
from _eryxtest import run

# A self-signed certificate for CN=localhost, SAN DNS:localhost, IP:127.0.0.1
# (test-only key; it protects nothing).
SERVER_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVgrLMGn5vugpu8Jj
xDCCcUYG6dPWqGqfBjx7ejVuaNahRANCAATREo3pbJkNLd0hoWCtVvIYbTBO/NjZ
+agd4QyZqPd+wPBMdR4QAIpRFQa2zE4SvQNr0B+0O1iAchmf9hM+DQY6
-----END PRIVATE KEY-----
"""
SERVER_CERT = """-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUbcuB7Q3e0P5reSTaAThmBGLWja0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyOTIyNDc0MVoYDzIxMjYxMTA1
MjI0NzQxWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATREo3pbJkNLd0hoWCtVvIYbTBO/NjZ+agd4QyZqPd+wPBMdR4QAIpR
FQa2zE4SvQNr0B+0O1iAchmf9hM+DQY6o28wbTAdBgNVHQ4EFgQUkSK1CoGTtrwh
oRi/peM3Gk4rNggwHwYDVR0jBBgwFoAUkSK1CoGTtrwhoRi/peM3Gk4rNggwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSAAwRQIhAKGJ+D4SGVxovrC+RX/TRopXvOeT+VIWPL8nQkCRuT3aAiB2
lOSzEF5E43fLbw9/kzKrUg07cdlpbj7Vat0ZCyJUNA==
-----END CERTIFICATE-----
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.seen.append({k: v for k, v in self.headers.items()})
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(tls=False):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.seen = []
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as d:
            cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            open(cert, "w").write(SERVER_CERT)
            open(key, "w").write(SERVER_KEY)
            ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv


@pytest.fixture
def http_server():
    srv = _serve()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def https_server():
    srv = _serve(tls=True)
    yield srv
    srv.shutdown()
    srv.server_close()


FETCH = """
import urllib.request, json
try:
    with urllib.request.urlopen({url!r}, timeout=10) as resp:
        print(resp.status, json.loads(resp.read())["path"])
except OSError as e:
    inner = getattr(e, "reason", e)
    if not isinstance(inner, BaseException):
        inner = e
    print(type(inner).__name__ + ": " + str(inner))
"""


def fetch(sb, url):
    return sb.execute(FETCH.format(url=url)).stdout


def test_networking_off_by_default(sandbox, http_server):
    port = http_server.server_address[1]
    r = run(sandbox, f"""
        import errno, socket
        try:
            socket.create_connection(("127.0.0.1", {port}))
        except PermissionError as e:
            print(e.errno == errno.EACCES, str(e))
    """)
    # errno values are the guest's (WASI numbers them differently from Linux).
    assert r.stdout.startswith("True ")
    assert r.stdout.endswith("not permitted: networking is not enabled for this sandbox")


def test_default_config_blocks_loopback_by_name(http_server):
    port = http_server.server_address[1]
    with eryx.Sandbox(network=eryx.NetConfig()) as sb:
        out = fetch(sb, f"http://127.0.0.1:{port}/x")
    assert "PermissionError" in out
    assert "not permitted: host '127.0.0.1' is blocked" in out


def test_allow_localhost_reaches_local_server(http_server):
    port = http_server.server_address[1]
    with eryx.Sandbox(network=eryx.NetConfig().allow_localhost()) as sb:
        assert fetch(sb, f"http://127.0.0.1:{port}/hello") == "200 /hello"
        assert fetch(sb, f"http://localhost:{port}/named") == "200 /named"
    assert len(http_server.seen) == 2


def test_permissive_and_custom_lists_turn_guards_off(http_server):
    port = http_server.server_address[1]
    for cfg in (eryx.NetConfig.permissive(), eryx.NetConfig(blocked_hosts=["evil.example"]),
                eryx.NetConfig(blocked_hosts=["10.*"])):
        with eryx.Sandbox(network=cfg) as sb:
            assert fetch(sb, f"http://127.0.0.1:{port}/ok") == "200 /ok", repr(cfg)


def test_resolved_address_is_checked(http_server):
    port = http_server.server_address[1]
    cfg = eryx.NetConfig(blocked_hosts=["127.*"])
    with eryx.Sandbox(network=cfg) as sb:
        out = fetch(sb, f"http://localhost:{port}/x")
    assert "not permitted: host 'localhost' resolves to blocked address 127.0.0.1" in out


def test_loopback_guard_applies_to_names(http_server):
    port = http_server.server_address[1]
    cfg = eryx.NetConfig(blocked_hosts=["localhost"])  # loopback guard on
    with eryx.Sandbox(network=cfg) as sb:
        out = fetch(sb, f"http://127.0.0.1:{port}/x")
    assert "PermissionError" in out
    assert len(http_server.seen) == 0


def test_allow_list(http_server):
    port = http_server.server_address[1]
    cfg = eryx.NetConfig.permissive().allow_host("*.example.com")
    with eryx.Sandbox(network=cfg) as sb:
        out = fetch(sb, f"http://127.0.0.1:{port}/x")
    assert "not permitted: host '127.0.0.1' is not in the allowed hosts list" in out
    cfg = eryx.NetConfig.permissive().allow_host("127.0.0.*")
    with eryx.Sandbox(network=cfg) as sb:
        assert fetch(sb, f"http://127.0.0.1:{port}/y") == "200 /y"


@pytest.mark.parametrize("pattern,allowed", [
    ("LOCALHOST", True), ("local*", True), ("*host", True), ("l*l*t", True),
    ("*.localhost", False), ("localhos", False), ("localhost.", False), ("[l]ocalhost", False),
])
def test_pattern_matching(http_server, pattern, allowed):
    port = http_server.server_address[1]
    cfg = eryx.NetConfig.permissive().allow_host(pattern)
    with eryx.Sandbox(network=cfg) as sb:
        out = fetch(sb, f"http://localhost:{port}/p")
    assert (out == "200 /p") is allowed, out


def test_connection_limit(http_server):
    port = http_server.server_address[1]
    cfg = eryx.NetConfig.permissive()
    cfg.max_connections = 1
    with eryx.Sandbox(network=cfg) as sb:
        r = run(sb, f"""
            import socket
            a = socket.create_connection(("127.0.0.1", {port}))
            try:
                socket.create_connection(("127.0.0.1", {port}))
            except PermissionError as e:
                print(str(e))
        """)
    assert r.stdout == "not permitted: connection limit reached (max_connections=1)"


def test_guest_socket_module_shape():
    with eryx.Sandbox(network=eryx.NetConfig.permissive()) as sb:
        r = run(sb, """
            import socket, ssl
            print(socket.__doc__.startswith('Eryx'), ssl.__doc__.startswith('Eryx'))
            print(socket.gethostname())
            out = []
            for make in (lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                         lambda: socket.socket().bind(('0.0.0.0', 0))):
                try:
                    make()
                    out.append('ok')
                except OSError:
                    out.append('OSError')
            print(out)
        """)
    assert r.stdout == "True True\nsandbox\n['OSError', 'OSError']"


def test_tls_verification_uses_extra_roots(https_server):
    port = https_server.server_address[1]
    url = f"https://localhost:{port}/tls"
    with eryx.Sandbox(network=eryx.NetConfig.permissive()) as sb:
        out = fetch(sb, url)
    assert out.startswith("SSLCertVerificationError: "), out
    cfg = eryx.NetConfig.permissive().with_root_cert(SERVER_CERT.encode())
    with eryx.Sandbox(network=cfg) as sb:
        assert fetch(sb, url) == "200 /tls"


# ---------------------------------------------------------------------------------------------
# A richer HTTP/1.1 server: keep-alive, chunked, slow, hanging and large responses.

BIG = 64 << 20


def _big_chunk():
    return bytes(range(256)) * 256  # 64 KiB, a known pattern


class _RichHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def _reply(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self.server.seen.append((self.path, self.client_address[1], dict(self.headers.items())))
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            chunk = _big_chunk()
            for _ in range(BIG // len(chunk)):
                self.wfile.write(chunk)
        elif self.path == "/slow":
            time.sleep(0.3)
            self._reply(b"slow")
        elif self.path == "/hang":
            self.server.release.wait(30)
            self.close_connection = True
        else:
            self._reply(json.dumps({"path": self.path}).encode(), "application/json")

    def do_POST(self):  # noqa: N802
        n = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        while n:
            part = self.rfile.read(min(n, 1 << 16))
            digest.update(part)
            n -= len(part)
        self._reply(digest.hexdigest().encode())

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # 50 concurrent clients connect at once


def _rich_server(ssl_context=None):
    srv = _Server(("127.0.0.1", 0), _RichHandler)
    srv.seen = []
    srv.release = threading.Event()
    if ssl_context is not None:
        srv.socket = ssl_context.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _stop(srv):
    srv.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def rich_server():
    srv = _rich_server()
    yield srv
    _stop(srv)


@pytest.fixture(scope="module")
def ca():
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def tls_server(ca):
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    names = []
    ctx.sni_callback = lambda sock, name, c: names.append(name)
    srv = _rich_server(ctx)
    srv.sni = names
    yield srv
    _stop(srv)


class _RawServer:
    """A TCP server on 127.0.0.1 whose handler is given each accepted socket."""

    def __init__(self, handler):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.events = []
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.handler(self, conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.fixture
def raw_server():
    servers = []

    def make(handler):
        srv = _RawServer(handler)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.close()


def local():
    return eryx.NetConfig().allow_localhost()


def test_keep_alive_chunked_and_post(rich_server):
    port = rich_server.server_address[1]
    with eryx.Sandbox(network=local()) as sb:
        r = run(sb, f"""
            import hashlib, http.client, json
            c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=10)
            for path in ("/a", "/b", "/chunked"):
                c.request("GET", path)
                resp = c.getresponse()
                print(resp.status, resp.read().decode())
            body = bytes(range(256)) * 32768  # 8 MiB
            c.request("POST", "/upload", body=body)
            print(c.getresponse().read().decode() == hashlib.sha256(body).hexdigest())
            c.close()
        """)
    assert r.stdout.splitlines() == ['200 {"path": "/a"}', '200 {"path": "/b"}',
                                     "200 hello chunked world", "True"]
    ports = {client_port for _, client_port, _ in rich_server.seen}
    assert len(ports) == 1, "the three requests share one keep-alive connection"


def test_large_download_through_a_plain_socket(rich_server):
    port = rich_server.server_address[1]
    with eryx.Sandbox(network=local()) as sb:
        r = run(sb, f"""
            import hashlib, http.client
            c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=30)
            c.request("GET", "/big")
            resp = c.getresponse()
            digest, n = hashlib.sha256(), 0
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                n += len(chunk)
            print(n, digest.hexdigest())
        """)
    expected = hashlib.sha256(_big_chunk() * (BIG // len(_big_chunk()))).hexdigest()
    assert r.stdout == f"{BIG} {expected}"


def test_guest_timeout_and_io_timeout(rich_server):
    port = rich_server.server_address[1]
    code = f"""
        import socket, time
        s = socket.create_connection(("127.0.0.1", {port}))
        s.sendall(b"GET /hang HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        {{setup}}
        t = time.monotonic()
        try:
            s.recv(10)
        except TimeoutError as e:
            print(type(e).__name__, str(e), round(time.monotonic() - t, 1) < 5)
    """
    with eryx.Sandbox(network=local()) as sb:
        # The guest's own timeout.
        assert run(sb, code.format(setup="s.settimeout(0.2)")).stdout == "TimeoutError timed out True"
    cfg = local()
    cfg.io_timeout_ms = 200
    with eryx.Sandbox(network=cfg) as sb:
        # NetConfig.io_timeout_ms when the guest has none; a longer guest timeout cannot
        # extend it.
        assert run(sb, code.format(setup="pass")).stdout == "TimeoutError timed out True"
        assert run(sb, code.format(setup="s.settimeout(30)")).stdout == "TimeoutError timed out True"


def test_execution_timeout_cuts_a_blocked_read(rich_server):
    port = rich_server.server_address[1]
    limits = eryx.ResourceLimits(execution_timeout_ms=400)
    with eryx.Sandbox(network=local(), resource_limits=limits) as sb:
        start = time.monotonic()
        with pytest.raises(eryx.TimeoutError):
            sb.execute(f"""
import socket
s = socket.create_connection(("127.0.0.1", {port}))
s.sendall(b"GET /hang HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
s.recv(10)
""")
        assert time.monotonic() - start < 10


def test_close_cuts_a_blocked_read(rich_server):
    port = rich_server.server_address[1]
    sb = eryx.Sandbox(network=local())
    threading.Timer(0.5, sb.close).start()
    start = time.monotonic()
    with pytest.raises(eryx.EryxError):
        sb.execute(f"""
import socket
s = socket.create_connection(("127.0.0.1", {port}))
s.sendall(b"GET /hang HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
s.recv(10)
""")
    assert time.monotonic() - start < 10


def _wait_for(pred, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def _eof_recorder(srv, conn):
    srv.events.append("open")
    while conn.recv(1024):
        pass
    srv.events.append("eof")


def test_recv_into_writes_the_callers_buffer(raw_server):
    # recv_into has the host write straight into the guest's buffer (OP_NET_READ); the
    # buffer must look exactly as with a real socket: bytes past the count untouched, also
    # when nothing is read (timeout, end of stream), bad buffers refused before anything is
    # read, and the stream in order whichever path serves it (direct reads, the read-ahead
    # that select starts, recv and recv_into mixed).
    def serve(srv, conn):
        conn.sendall(b"0123456789" * 10)
        for reply in (b"abcdefghij" * 10, b""):
            msg = b""
            while len(msg) < 4:
                msg += conn.recv(4 - len(msg))
            if not reply:
                return
            conn.sendall(reply)

    srv = raw_server(serve)
    with eryx.Sandbox(network=local()) as sb:
        r = run(sb, f"""
            import select, socket
            digits, letters = b"0123456789" * 10, b"abcdefghij" * 10
            s = socket.create_connection(("127.0.0.1", {srv.port}), timeout=5)
            buf = bytearray(b"#" * 200)
            n = 0
            while n < 30:
                n += s.recv_into(memoryview(buf)[n:30])
            print(bytes(buf[:40]) == digits[:30] + b"#" * 10)
            print(s.recv_into(buf, 5), bytes(buf[:8]))
            small = bytearray(3)
            print(s.recv_into(small), bytes(small))
            for bad in (lambda: s.recv_into(b"immutable bytes, long enough to hold a header"),
                        lambda: s.recv_into(b"tiny"),
                        lambda: s.recv_into(bytearray(40), 41),
                        lambda: s.recv_into(bytearray(40), -1)):
                try:
                    bad()
                except (TypeError, ValueError) as e:
                    print(type(e).__name__)
            rest = b""
            while len(rest) < 62:
                rest += s.recv(62 - len(rest))
            print(rest == digits[38:])
            s.settimeout(0.2)
            mark = bytearray(b"M" * 64)
            try:
                s.recv_into(mark)
            except TimeoutError:
                print("timeout", mark == b"M" * 64)
            s.settimeout(5)
            s.sendall(b"more")
            print(select.select([s], [], [], 5)[0] == [s])
            got = b""
            while len(got) < 100:
                if len(got) % 2:
                    got += s.recv(7)
                else:
                    k = s.recv_into(buf, 30)
                    got += bytes(buf[:k])
            print(got == letters)
            s.sendall(b"end!")
            print(s.recv_into(mark), mark == b"M" * 64)
        """)
    assert r.stdout.splitlines() == [
        "True", "5 b'01234567'", "3 b'567'", "TypeError", "TypeError", "ValueError", "ValueError",
        "True", "timeout True", "True", "True", "0 True"]


def test_connections_close_when_the_run_ends(raw_server):
    srv = raw_server(_eof_recorder)
    with eryx.Sandbox(network=local()) as sb:
        run(sb, f"""
            import socket
            kept = socket.create_connection(("127.0.0.1", {srv.port}))
        """)
        assert _wait_for(lambda: srv.events == ["open", "eof"]), srv.events


def test_session_connections_close_at_the_end_of_each_run(raw_server):
    srv = raw_server(_eof_recorder)
    with eryx.Session(network=local()) as s:
        s.execute(f"import socket\nkept = socket.create_connection(('127.0.0.1', {srv.port}))")
        assert _wait_for(lambda: srv.events == ["open", "eof"]), srv.events
        r = s.execute("""
try:
    kept.sendall(b'x'); kept.recv(1)
except OSError as e:
    print(type(e).__name__)
""")
        assert r.stdout == "OSError"


def test_refused_reset_and_lookup_errors(raw_server):
    closed = socket.create_server(("127.0.0.1", 0))
    free_port = closed.getsockname()[1]
    closed.close()

    def reset(srv, conn):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.recv(10)

    srv = raw_server(reset)
    cfg = local()
    cfg.connect_timeout_ms = 5000
    with eryx.Sandbox(network=cfg) as sb:
        r = run(sb, f"""
            import socket
            def attempt(f):
                try:
                    f()
                except OSError as e:
                    print(type(e).__name__ + ": " + str(e))
            attempt(lambda: socket.create_connection(("127.0.0.1", {free_port})))
            s = socket.create_connection(("127.0.0.1", {srv.port}))
            s.sendall(b"x")
            attempt(lambda: s.recv(10))
            attempt(lambda: socket.create_connection(("no such host", 80)))
            attempt(lambda: socket.create_connection(("nonexistent.invalid", 80)))
            print(isinstance(socket.gaierror(), OSError))
        """)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ConnectionRefusedError: [Errno ") and lines[0].endswith("] Connection refused")
    assert lines[1].startswith("ConnectionResetError: [Errno ") and lines[1].endswith("] Connection reset by peer")
    # errno values are the guest's (socket.EAI_NONAME there).
    assert lines[2].startswith("gaierror: [Errno ") and lines[2].endswith("] Name or service not known")
    assert lines[3].startswith("gaierror: [Errno ")
    assert lines[4] == "True"


def test_policy_messages_by_name_and_address():
    with eryx.Sandbox(network=eryx.NetConfig()) as sb:
        r = run(sb, """
            import socket
            for host in ("::1", "LocalHost.", "192.168.1.1", "[::ffff:127.0.0.1]", "sub.localhost"):
                try:
                    socket.create_connection((host, 80))
                except PermissionError as e:
                    print(e)
        """)
    assert r.stdout.splitlines() == [
        "not permitted: host '[::1]' is blocked",
        "not permitted: host 'localhost' is blocked",
        "not permitted: host '192.168.1.1' is blocked",
        "not permitted: host '[::ffff:127.0.0.1]' resolves to blocked address 127.0.0.1",
        "not permitted: host 'sub.localhost' is blocked",
    ]


def test_socket_api_surface(rich_server):
    port = rich_server.server_address[1]
    with eryx.Sandbox(network=local()) as sb:
        r = run(sb, f"""
            import socket
            print(socket.getaddrinfo("example.com", 443)[0][4], socket.getfqdn())
            a = socket.socket()
            b = socket.socket()
            print(a.fileno() != b.fileno(), a.gettimeout())
            try:
                a.recv(1)
            except OSError as e:
                print("unconnected:", type(e).__name__)
            with socket.create_connection(("127.0.0.1", {port}), timeout=5) as s:
                print(s.getpeername() == ("127.0.0.1", {port}), s.gettimeout())
                s.sendall(b"GET /x HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                f = s.makefile("rb")
                print(f.readline().strip().decode())
                buf = bytearray(4)
                print(s.recv_into(buf) >= 0)
                f.close()
            try:
                s.recv(1)
            except OSError as e:
                print("closed:", type(e).__name__)
            for f in (lambda: socket.socket().listen(), lambda: socket.socket().accept(),
                      lambda: socket.socketpair()):
                try:
                    f()
                except OSError as e:
                    print("refused:", str(e).endswith("only TCP client connections are available in the sandbox"))
        """)
    assert r.stdout.splitlines() == [
        "('example.com', 443) sandbox", "True None", "unconnected: OSError",
        "True 5.0", "HTTP/1.1 200 OK", "True", "closed: OSError",
        "refused: True", "refused: True", "refused: True"]


def test_network_none_refuses_tls_too(https_server):
    port = https_server.server_address[1]
    with eryx.Sandbox() as sb:
        out = fetch(sb, f"https://localhost:{port}/x")
    assert out == "PermissionError: not permitted: networking is not enabled for this sandbox"


def test_tls_with_a_test_ca(tls_server, ca):
    port = tls_server.server_address[1]
    pem = ca.cert_pem.bytes()
    with eryx.Sandbox(network=local()) as sb:
        out = fetch(sb, f"https://localhost:{port}/untrusted")
    assert out.startswith("SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), out
    with eryx.Sandbox(network=local().with_root_cert(pem)) as sb:
        assert fetch(sb, f"https://localhost:{port}/named") == "200 /named"
        assert fetch(sb, f"https://127.0.0.1:{port}/by-ip") == "200 /by-ip"
        r = run(sb, f"""
            import socket, ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False          # ignored: the host always verifies
            ctx.verify_mode = ssl.CERT_NONE
            raw = socket.create_connection(("127.0.0.1", {port}))
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            print(s.version() in ("TLSv1.2", "TLSv1.3"), s.selected_alpn_protocol(), raw.fileno())
            s.sendall(b"GET /wrapped HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
            print(s.makefile("rb").readline().strip().decode())
            s.close()
            try:
                ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port})),
                                server_hostname="other.example")
            except ssl.SSLCertVerificationError as e:
                print("mismatch:", "other.example" in str(e), isinstance(e, ssl.SSLError), isinstance(e, OSError))
            s = ctx.wrap_socket(socket.socket(), server_hostname="localhost")
            s.connect(("127.0.0.1", {port}))   # connect after wrap: TLS at connect time
            print(s.version() is not None)
            s.close()
        """)
    assert r.stdout.splitlines() == ["True http/1.1 -1", "HTTP/1.1 200 OK",
                                     "mismatch: True True True", "True"]
    assert "localhost" in tls_server.sni
    assert "other.example" in tls_server.sni


def test_tls_to_a_plain_server_is_an_ssl_error(rich_server):
    port = rich_server.server_address[1]
    with eryx.Sandbox(network=local()) as sb:
        r = run(sb, f"""
            import socket, ssl
            try:
                ssl.create_default_context().wrap_socket(
                    socket.create_connection(("127.0.0.1", {port}), timeout=5), server_hostname="localhost")
            except ssl.SSLError as e:
                print(type(e).__name__)
        """)
    assert r.stdout in ("SSLError", "SSLEOFError")


def test_cli_allow_host(rich_server):
    port = rich_server.server_address[1]
    code = ("import urllib.request\n"
            "try:\n"
            f"    print(urllib.request.urlopen('http://127.0.0.1:{port}/cli').status)\n"
            "except OSError as e:\n"
            "    print(getattr(e, 'reason', e))\n")
    p = subprocess.run([sys.executable, "-m", "eryx", "--allow-host", "127.0.0.1", "-c", code],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "200", p.stderr
    p = subprocess.run([sys.executable, "-m", "eryx", "--allow-host", "example.com", "-c", code],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "not permitted: host '127.0.0.1' is not in the allowed hosts list"


# ---------------------------------------------------------------------------------------------
# asyncio client streams (API.md §3.4)

ASYNC_GET = """
import asyncio, hashlib, time

async def get(port, path, **kw):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, **kw)
    writer.write(f"GET {path} HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n".encode())
    await writer.drain()
    status = (await reader.readline()).strip().decode()
    await reader.readuntil(b"\\r\\n\\r\\n")  # the headers
    digest, n = hashlib.sha256(), 0
    while chunk := await reader.read(1 << 20):
        digest.update(chunk)
        n += len(chunk)
    writer.close()
    await writer.wait_closed()
    return status, n, digest.hexdigest()
"""


def test_asyncio_open_connection_concurrently(rich_server):
    port = rich_server.server_address[1]
    cfg = local()
    cfg.max_connections = 60
    with eryx.Sandbox(network=cfg) as sb:
        r = run(sb, ASYNC_GET + f"""
t = time.monotonic()
one = await get({port}, "/slow")
one_s = time.monotonic() - t
t = time.monotonic()
many = await asyncio.gather(*[get({port}, "/slow") for _ in range(50)])
many_s = time.monotonic() - t
print(one[0], len(many), all(m[0] == one[0] for m in many))
# Sequentially, 50 requests of 0.3 s take 15 s; concurrently about one's time.
print(many_s < max(5 * one_s, 3.0))
""")
    assert r.stdout == "HTTP/1.1 200 OK 50 True\nTrue"


def test_asyncio_large_download_and_slow_peer(rich_server):
    port = rich_server.server_address[1]
    with eryx.Sandbox(network=local()) as sb:
        r = run(sb, ASYNC_GET + f"""
async def hang():
    reader, writer = await asyncio.open_connection("127.0.0.1", {port})
    writer.write(b"GET /hang HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    try:
        await asyncio.wait_for(reader.read(10), 3)
        return "read"
    except TimeoutError:
        return "timeout"
big, hung = await asyncio.gather(get({port}, "/big"), hang())
print(big[0], big[1], big[2], hung)
""")
    expected = hashlib.sha256(_big_chunk() * (BIG // len(_big_chunk()))).hexdigest()
    # The 64 MiB body arrives whole and in order while another connection hangs.
    assert r.stdout == f"HTTP/1.1 200 OK {BIG} {expected} timeout"


def test_asyncio_tls_and_errors(tls_server, ca):
    port = tls_server.server_address[1]
    cfg = local().with_root_cert(ca.cert_pem.bytes())
    with eryx.Sandbox(network=cfg) as sb:
        r = run(sb, ASYNC_GET + f"""
import ssl
status, n, _ = await get({port}, "/tls", ssl=True, server_hostname="localhost")
print(status, n > 0)
ctx = ssl.create_default_context()
reader, writer = await asyncio.open_connection("127.0.0.1", {port}, ssl=ctx, server_hostname="localhost")
obj = writer.get_extra_info("ssl_object")
print(obj.version() in ("TLSv1.2", "TLSv1.3"), obj.selected_alpn_protocol())
writer.close()
reader, writer = await asyncio.open_connection("127.0.0.1", {port})
await writer.start_tls(ctx, server_hostname="localhost")   # STARTTLS on a plain stream
writer.write(b"GET /upgraded HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
print((await reader.readline()).decode().strip(), writer.get_extra_info("ssl_object").version() is not None)
writer.close()
for kw in ({{"ssl": True, "server_hostname": "other.example"}}, {{}}):
    try:
        await asyncio.open_connection("10.1.2.3" if not kw else "127.0.0.1", {port}, **kw)
    except OSError as e:
        print(type(e).__name__, str(e)[:60])
""")
    lines = r.stdout.splitlines()
    assert lines[0] == "HTTP/1.1 200 OK True"
    assert lines[1] == "True http/1.1"
    assert lines[2] == "HTTP/1.1 200 OK True"
    assert lines[3].startswith("SSLCertVerificationError [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert lines[4] == "PermissionError not permitted: host '10.1.2.3' is blocked"


def test_asyncio_start_tls_does_not_block_the_loop(raw_server, ca):
    # loop.start_tls runs the handshake on the host while the event loop goes on: a server
    # that waits 0.6 s before its handshake leaves the other tasks running meanwhile; a
    # handshake that fails raises and closes the transport.
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)

    def slow_tls(srv, conn):
        time.sleep(0.6)
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(100)
            tls.sendall(b"secure hello")

    srv = raw_server(slow_tls)
    cfg = local().with_root_cert(ca.cert_pem.bytes())
    with eryx.Sandbox(network=cfg) as sb:
        r = run(sb, f"""
            import asyncio, socket, ssl, time
            ticks = 0
            async def ticker():
                global ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1
            t = asyncio.ensure_future(ticker())
            reader, writer = await asyncio.open_connection("127.0.0.1", {srv.port})
            start = time.monotonic()
            tls = asyncio.ensure_future(
                writer.start_tls(ssl.create_default_context(), server_hostname="localhost"))
            await asyncio.sleep(0.1)
            for op, payload in ((socket.OP_NET_SEND, b"x"), (socket.OP_NET_RECV, b"")):
                try:  # the connection is the handshake's meanwhile
                    socket._call(op, {{"id": writer.transport._id, "max": 10}}, payload)
                except BlockingIOError:
                    print("busy")
            await tls
            elapsed = time.monotonic() - start
            # a blocking handshake would leave the ticker no turn at all
            print(elapsed >= 0.5, ticks >= 1, writer.get_extra_info("ssl_object").version() is not None)
            writer.write(b"hi")
            print((await reader.read(100)).decode())
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", {srv.port})
            try:
                await writer.start_tls(ssl.create_default_context(), server_hostname="wrong.example")
            except ssl.SSLCertVerificationError as e:
                print("refused", writer.transport.is_closing())
            t.cancel()
        """)
    assert r.stdout.splitlines() == ["busy", "busy", "True True True", "secure hello", "refused True"]


def test_asyncio_sock_methods_and_create_connection_with_sock(rich_server, tls_server, ca,
                                                             raw_server):
    # loop.sock_* on the sandbox's sockets run concurrently on the event loop (the pair
    # server answers only once both connections have sent their request: one waiting read
    # must not hold up the other's send); create_connection(sock=) adopts a connected
    # socket, TLS included; local_addr is "any address, any port" or refused.
    port, tls_port = rich_server.server_address[1], tls_server.server_address[1]
    both = threading.Barrier(2, timeout=10)

    def pair(srv, conn):
        conn.recv(1000)
        both.wait()
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npaired")

    pair_port = raw_server(pair).port
    cfg = local().with_root_cert(ca.cert_pem.bytes())
    with eryx.Sandbox(network=cfg) as sb:
        r = run(sb, f"""
            import asyncio, errno, socket, ssl, time
            loop = asyncio.get_running_loop()
            async def fetch(path, size, port={port}):
                s = socket.socket()
                s.setblocking(False)
                await loop.sock_connect(s, ("127.0.0.1", port))
                await loop.sock_sendall(s, b"GET %s HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n" % path)
                data, total, buf = bytearray(), 0, bytearray(size)
                while True:
                    chunk = await loop.sock_recv(s, size // 3)
                    if not chunk:
                        break
                    n = await loop.sock_recv_into(s, buf)
                    total += len(chunk) + n
                    if size < 1000:
                        data += chunk + buf[:n]
                    if not n:
                        break
                s.close()
                return bytes(data) if size < 1000 else total
            a, b = await asyncio.gather(fetch(b"/", 21, {pair_port}), fetch(b"/", 100, {pair_port}))
            c = await fetch(b"/slow", 30)
            print(a.endswith(b"paired"), a == b, c.endswith(b"slow"))
            big = await fetch(b"/big", 1 << 20)
            print(big > {BIG})
            s = socket.create_connection(("127.0.0.1", {tls_port}))
            tr, pr = await loop.create_connection(asyncio.Protocol, sock=s,
                                                  ssl=ssl.create_default_context(),
                                                  server_hostname="localhost")
            print(s.fileno(), tr.get_extra_info("ssl_object").version() is not None)
            tr.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", {port}, local_addr=("0.0.0.0", 0))
            writer.write(b"GET /ok HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
            print((await reader.readline()).strip().decode())
            writer.close()
            for bad in (dict(local_addr=("127.0.0.1", 5555)), dict(sock=socket.socket())):
                try:
                    await asyncio.open_connection("127.0.0.1" if "sock" not in bad else None,
                                                  {port} if "sock" not in bad else None, **bad)
                except OSError as e:
                    print(type(e).__name__, errno.errorcode[e.errno])
            try:
                await loop.sock_accept(socket.socket())
            except OSError as e:
                print("accept", e.errno == errno.EOPNOTSUPP)
        """)
    assert r.stdout.splitlines() == [
        "True True True", "True", "-1 True", "HTTP/1.1 200 OK", "OSError EADDRNOTAVAIL",
        "OSError ENOTCONN", "accept True"]


def test_asyncio_protocol_api(rich_server):
    port = rich_server.server_address[1]
    with eryx.Sandbox(network=local()) as sb:
        r = run(sb, f"""
import asyncio

class P(asyncio.Protocol):
    def __init__(self):
        self.data, self.done = b"", asyncio.get_running_loop().create_future()
    def connection_made(self, transport):
        transport.write(b"GET /p HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    def data_received(self, data):
        self.data += data
    def connection_lost(self, exc):
        self.done.set_result(exc)

loop = asyncio.get_running_loop()
transport, proto = await loop.create_connection(P, "127.0.0.1", {port})
print(transport.get_extra_info("peername") == ("127.0.0.1", {port}))
print(await proto.done, proto.data.split(b"\\r\\n")[0].decode(), transport.is_closing())
print(await loop.getaddrinfo("example.com", 80))
""")
    lines = r.stdout.splitlines()
    assert lines[:2] == ["True", "None HTTP/1.1 200 OK True"]
    assert "'example.com', 80" in lines[2]


# ---------------------------------------------------------------------------------------------
# Secrets on the wire (API.md §6.5)

SECRET = "sk-live-9f8e7d6c5b4a"


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Records every request's headers and echoes them back (the secret included)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        self.server.seen.append(dict(self.headers.items()))
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Echo", self.headers.get("Authorization", ""))
            self.end_headers()
            value = self.headers.get("Authorization", "").encode()
            for part in (b"<<" + value[:5], value[5:] + b">>"):  # split across chunks
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/large":  # a Content-Length body too large for the host to hold
            value = self.headers.get("Authorization", "").encode()
            body = (b"x" * 4000 + value) * 400
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = json.dumps({"auth": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Echo", self.headers.get("Authorization", ""))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_server():
    srv = _Server(("127.0.0.1", 0), _EchoHandler)
    srv.seen = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


SECRET_FETCH = """
import http.client, json, os
key = os.environ["API_KEY"]
c = http.client.HTTPConnection("{host}", {port}, timeout=10)
out = []
for path in ("/a", "/chunked", "/b"):
    try:
        c.request("GET", path, headers={{"Authorization": "Bearer " + key}})
        resp = c.getresponse()
        body = resp.read().decode()
        out.append([resp.getheader("X-Echo") == "Bearer " + key, body.count(key), "{secret}" in body])
    except OSError as e:
        out.append(type(e).__name__ + ": " + str(e))
        break
print(json.dumps(out))
print(key.startswith("ERYX_SECRET_PLACEHOLDER_"))
"""


def test_secret_substituted_for_permitted_host_and_echo_protected(echo_server):
    port = echo_server.server_address[1]
    secrets = {"API_KEY": {"value": SECRET, "allowed_hosts": ["127.0.0.1"]}}
    with eryx.Sandbox(network=local(), secrets=secrets) as sb:
        r = sb.execute(SECRET_FETCH.format(host="127.0.0.1", port=port, secret=SECRET))
    out, placeholder = r.stdout.splitlines()
    # The guest sees its placeholder echoed (headers, a Content-Length body and a chunked body
    # whose value was split across chunks), never the real value; http.client parsed
    # the corrected lengths and reused the connection.
    assert json.loads(out) == [[True, 1, False], [True, 1, False], [True, 1, False]]
    assert placeholder == "True"
    assert [h["Authorization"] for h in echo_server.seen] == ["Bearer " + SECRET] * 3


def test_echo_protection_of_a_large_content_length_body(echo_server):
    # Over 1 MiB the host cannot hold the body to correct its Content-Length: the guest gets
    # it chunked instead, with every real value replaced, and the connection stays usable.
    port = echo_server.server_address[1]
    secrets = {"API_KEY": {"value": SECRET, "allowed_hosts": ["127.0.0.1"]}}
    with eryx.Sandbox(network=local(), secrets=secrets) as sb:
        r = run(sb, f"""
            import http.client, os
            key = os.environ["API_KEY"]
            c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=10)
            c.request("GET", "/large", headers={{"Authorization": "Bearer " + key}})
            resp = c.getresponse()
            body = resp.read()
            print(len(body) > 1 << 20, body.count(key.encode()), {SECRET!r}.encode() in body,
                  body == (b"x" * 4000 + b"Bearer " + key.encode()) * 400)
            c.request("GET", "/a", headers={{"Authorization": "Bearer " + key}})
            print(c.getresponse().read().count(key.encode()))
        """)
    assert r.stdout.splitlines() == ["True 400 False True", "1"]
    assert len(echo_server.seen) == 2


def test_secret_refused_for_other_hosts(echo_server):
    port = echo_server.server_address[1]
    for allowed in (["api.example.com"], ["localhost"]):  # the connect host is 127.0.0.1
        secrets = {"API_KEY": {"value": SECRET, "allowed_hosts": allowed}}
        with eryx.Sandbox(network=local(), secrets=secrets) as sb:
            r = sb.execute(SECRET_FETCH.format(host="127.0.0.1", port=port, secret=SECRET))
        out = json.loads(r.stdout.splitlines()[0])
        assert out == ["PermissionError: not permitted: secret 'API_KEY' may not be sent to host '127.0.0.1'"], out
    assert echo_server.seen == [], "a refused request never arrives"


def test_secret_without_hosts_follows_the_allowed_hosts(echo_server):
    port = echo_server.server_address[1]
    cfg = eryx.NetConfig.permissive().allow_host("127.0.0.1")
    with eryx.Sandbox(network=cfg, secrets={"API_KEY": {"value": SECRET}}) as sb:
        r = sb.execute(SECRET_FETCH.format(host="127.0.0.1", port=port, secret=SECRET))
    assert json.loads(r.stdout.splitlines()[0]) == [[True, 1, False]] * 3
    assert [h["Authorization"] for h in echo_server.seen] == ["Bearer " + SECRET] * 3


def test_http2_preface_refused_with_secrets(echo_server):
    port = echo_server.server_address[1]
    with eryx.Sandbox(network=local(), secrets={"K": {"value": "v" * 20}}) as sb:
        r = run(sb, f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {port}))
            try:
                s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n")
            except PermissionError as e:
                print(e)
        """)
    assert r.stdout == "not permitted: HTTP/2 is not supported when secrets are configured"


def test_select_and_poll_on_sandbox_sockets(rich_server):
    port = rich_server.server_address[1]
    with eryx.Sandbox(network=local()) as sb:
        r = run(sb, f"""
            import select, selectors, socket
            s = socket.create_connection(("127.0.0.1", {port}))
            print(select.select([s], [], [], 0.05)[0] == [])       # nothing to read yet
            print(select.select([], [s], [], 0)[1] == [s])         # room to send
            s.sendall(b"GET /x HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            print(select.select([s], [], [], 5)[0] == [s])
            p = select.poll()
            p.register(s, select.POLLIN)
            print(p.poll(5000) == [(s.fileno(), select.POLLIN)])
            with selectors.DefaultSelector() as sel:
                sel.register(s, selectors.EVENT_READ)
                print([key.fileobj is s for key, _ in sel.select(5)])
            data = b""
            while select.select([s], [], [], 0.3)[0]:   # drain: readiness ends with the data
                data += s.recv(65536)
            print(data.endswith(b'{{"path": "/x"}}'))
        """)
    assert r.stdout.splitlines() == ["True", "True", "True", "True", "[True]", "True"]


def test_callback_results_are_echo_protected():
    def leak(what: str) -> str:
        if what == "error":
            raise RuntimeError("upstream said: bad key " + SECRET)
        return {"token": SECRET, "nested": [SECRET + "-suffix"]}

    with eryx.Sandbox(callbacks=[{"name": "leak", "fn": leak}],
                      secrets={"API_KEY": {"value": SECRET}}, scrub_stdout=False) as sb:
        r = sb.execute("""
import os
ph = os.environ["API_KEY"]
r = await leak(what="value")
print(r["token"] == ph, r["nested"][0] == ph + "-suffix")
try:
    await leak(what="error")
except Exception as e:
    print(str(e).endswith("bad key " + ph))
""")
    assert r.stdout == "True True\nTrue"
    assert SECRET not in r.stdout
