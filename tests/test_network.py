"""LATER SLICE: networking policy and guest sockets (API.md §3.2-3.4).

Enable with ERYX_TEST_LATER=network (see conftest.py).  All traffic goes to
servers that the test starts on 127.0.0.1.
"""

import http.server
import json
import os
import ssl
import tempfile
import threading

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
