"""Third-party HTTP clients inside the sandbox (issue 11): requests and httpx (sync and async),
pure-Python wheels fetched with pip at test time (cached under $GOERYX_CACHE_DIR) and mounted
as a read-only volume until SandboxFactory installs packages. Skipped when pip cannot fetch them.
"""

import os
import subprocess
import sys
import zipfile

import pytest

import eryx
from test_network import _RichHandler, _Server, _stop, local  # noqa: F401 (servers, config)
import test_network

WHEELS = [
    "requests==2.32.3", "urllib3==2.2.3", "idna==3.10", "certifi==2024.8.30",
    "charset-normalizer==3.4.0", "httpx==0.27.2", "httpcore==1.0.6", "h11==0.14.0",
    "anyio==4.6.2.post1", "sniffio==1.3.1",
]


@pytest.fixture(scope="module")
def site_packages():
    cache = os.environ.get("GOERYX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "goeryx")
    root = os.path.join(cache, "test-net-clients")
    site = os.path.join(root, "site")
    stamp = os.path.join(root, "stamp")
    want = "\n".join(WHEELS)
    if not (os.path.exists(stamp) and open(stamp).read() == want):
        wheels = os.path.join(root, "wheels")
        os.makedirs(wheels, exist_ok=True)
        p = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary=:all:", "--python-version", "3.13", "--platform", "any",
                            "-d", wheels, *WHEELS], capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            pytest.skip("cannot fetch the client wheels: " + p.stderr.strip()[-300:])
        os.makedirs(site, exist_ok=True)
        for name in os.listdir(wheels):
            if name.endswith(".whl"):
                with zipfile.ZipFile(os.path.join(wheels, name)) as z:
                    z.extractall(site)
        with open(stamp, "w") as f:
            f.write(want)
    return site


@pytest.fixture
def rich_server():
    srv = test_network._rich_server()
    yield srv
    _stop(srv)


@pytest.fixture
def tls_server(ca):
    yield from test_network.tls_server.__wrapped__(ca)


ca = test_network.ca


def sandbox(site, cfg):
    return eryx.Sandbox(network=cfg, volumes=[(site, "/pkgs", True)])


def test_requests(site_packages, rich_server, tls_server, ca):
    port, tls_port = rich_server.server_address[1], tls_server.server_address[1]
    with sandbox(site_packages, local().with_root_cert(ca.cert_pem.bytes())) as sb:
        r = sb.execute(f"""
import sys, warnings
sys.path.insert(0, "/pkgs")
warnings.simplefilter("error")
import requests
with requests.Session() as s:
    for url in ("http://127.0.0.1:{port}/a", "http://127.0.0.1:{port}/chunked",
                "https://localhost:{tls_port}/tls"):
        r = s.get(url, timeout=10)
        print(r.status_code, r.text)
    big = s.get("http://127.0.0.1:{port}/big", timeout=30, stream=True)
    print(sum(len(c) for c in big.iter_content(1 << 20)))
try:
    requests.get("https://127.0.0.1:{port}/", timeout=5)
except requests.exceptions.SSLError:
    print("SSLError")
""")
    assert r.stdout.splitlines() == ['200 {"path": "/a"}', "200 hello chunked world",
                                     '200 {"path": "/tls"}', str(test_network.BIG), "SSLError"]
    # urllib3 checks a pooled connection with select.poll before reusing it: one connection.
    assert len({client_port for _, client_port, _ in rich_server.seen}) == 1


def test_httpx_sync_and_async(site_packages, rich_server, tls_server, ca):
    port, tls_port = rich_server.server_address[1], tls_server.server_address[1]
    with sandbox(site_packages, local().with_root_cert(ca.cert_pem.bytes())) as sb:
        r = sb.execute(f"""
import sys, asyncio
sys.path.insert(0, "/pkgs")
import httpx
urls = ("http://127.0.0.1:{port}/a", "http://127.0.0.1:{port}/chunked", "https://localhost:{tls_port}/tls")
with httpx.Client() as c:
    for url in urls:
        print(c.get(url).text)
async with httpx.AsyncClient() as c:
    rs = await asyncio.gather(*[c.get(u) for u in urls])
    print([r.text for r in rs])
""")
    lines = r.stdout.splitlines()
    assert lines[:3] == ['{"path": "/a"}', "hello chunked world", '{"path": "/tls"}']
    assert lines[3] == str(['{"path": "/a"}', "hello chunked world", '{"path": "/tls"}'])
