"""Hostile package inputs and factory files (API.md §10): bombs, lying archives, forged
artifacts and guest code that ends the interpreter during a pre-import. Each case runs in its own
process under a wall-clock and a memory bound (``run_case``): a bomb that is expanded instead of
refused is killed by the harness and fails here."""

import os
import textwrap

from _harness import run_case

# Cases build their hostile input in the child, then try to build or load a factory from it.
ATTEMPT = """
import time, eryx
def attempt(fn):
    start = time.monotonic()
    try:
        fn()
        outcome = 'no error'
    except Exception as e:
        outcome = f'{type(e).__name__}: {e}'
    return outcome, time.monotonic() - start
"""
ATTEMPT = textwrap.indent(ATTEMPT, " " * 8)  # the cases' scripts are indented so


def _leftovers(cache):
    root = os.path.join(cache, "factory-packages")
    return sorted(n for n in os.listdir(root) if n.startswith("tmp-")) if os.path.isdir(root) else []


def test_zip_bomb_with_overlapping_entries(tmp_path):
    """A zip whose many entries all point at one deflated block of zeros (a non-recursive
    bomb): each entry is within the per-file limit, and they add up to 20 GiB from a file of a
    few hundred kilobytes. Refused before anything is expanded."""
    out = run_case(ATTEMPT + f"""
        import struct, zlib, binascii
        path = {str(tmp_path / "bomb-1.0-py3-none-any.whl")!r}
        size = 200 << 20
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunk = b"\\0" * (1 << 20)
        crc, data = 0, b""
        for _ in range(size >> 20):
            data += comp.compress(chunk)
            crc = binascii.crc32(chunk, crc)
        data += comp.flush()
        body = struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 8, 0, 0, crc, len(data), size, 5, 0) + b"zeros" + data
        central = b""
        n = 100
        for i in range(n):
            name = f"z{{i:04d}}".encode()
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, 8, 0, 0, crc, len(data), size,
                                   len(name), 0, 0, 0, 0, 0, 0) + name
        end = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, n, n, len(central), len(body), 0)
        open(path, "wb").write(body + central + end)
        outcome, elapsed = attempt(lambda: eryx.SandboxFactory(packages=[path]))
        report(outcome=outcome, elapsed=elapsed, size=len(body + central + end))
    """, wall_s=120, max_rss_mib=1024)
    found = out.check()
    assert found["outcome"].startswith("InitializationError: "), found
    assert "unsafe archive: it expands to more than" in found["outcome"], found
    assert found["elapsed"] < 10, found


def test_gzip_bomb_stops_while_streaming(tmp_path):
    """A .tar.gz of 40 members of 200 MiB of zeros each (each within the per-file limit; one
    compressed block repeated as concatenated gzip members): refused once the stream passes the
    expansion ratio, after at most tens of MiB were written."""
    cache = tmp_path / "cache"
    out = run_case(ATTEMPT + f"""
        import gzip, io, tarfile, zlib
        path = {str(tmp_path / "bomb.tar.gz")!r}
        block = gzip.compress(b"\\0" * (200 << 20), compresslevel=9)
        with open(path, "wb") as f:
            for i in range(40):
                header = tarfile.TarInfo(f"zeros{{i}}")
                header.size = 200 << 20
                f.write(gzip.compress(header.tobuf(format=tarfile.PAX_FORMAT)))
                f.write(block)
        outcome, elapsed = attempt(lambda: eryx.SandboxFactory(packages=[path]))
        report(outcome=outcome, elapsed=elapsed)
    """, wall_s=180, max_rss_mib=1536, env={"GOERYX_CACHE_DIR": str(cache)})
    found = out.check()
    assert "unsafe archive: it expands to more than" in found["outcome"], found
    assert _leftovers(str(cache)) == []


def test_zip_member_longer_than_declared(tmp_path):
    """A member that declares 10 bytes and holds a megabyte: refused, and what was declared is
    all that is ever written."""
    out = run_case(ATTEMPT + f"""
        import zipfile
        path = {str(tmp_path / "liar-1.0-py3-none-any.whl")!r}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("liar/__init__.py", b"x = 1  # " + b"a" * (1 << 20))
        raw = bytearray(open(path, "rb").read())
        real = (1 << 20) + 9
        raw = raw.replace(real.to_bytes(4, "little"), (10).to_bytes(4, "little"))
        open(path, "wb").write(bytes(raw))
        outcome, elapsed = attempt(lambda: eryx.SandboxFactory(packages=[path]))
        report(outcome=outcome)
    """, wall_s=60, max_rss_mib=1024)
    found = out.check()
    assert found["outcome"].startswith("InitializationError: "), found
    assert "liar-1.0-py3-none-any.whl" in found["outcome"], found


def test_forged_factory_file_with_a_symlink_member(tmp_path):
    """A factory file whose checksums are right but whose package files hold a symlink to the
    host's /etc: its files go through the same checks as any archive."""
    out = run_case(ATTEMPT + """
        import hashlib, io, json, struct, tarfile
        MAGIC = b"GOERYX-FACTORY\\r\\n"
        def crc32c(data):
            crc = 0xFFFFFFFF
            for b in data:
                crc ^= b
                for _ in range(8):
                    crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
            return crc ^ 0xFFFFFFFF
        data = eryx.SandboxFactory().to_bytes()
        (n,) = struct.unpack_from("<I", data, len(MAGIC))
        header = json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + n])
        body = data[len(MAGIC) + 8 + n:]
        image = body[:header["sections"][0]["size"]]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            link = tarfile.TarInfo("etc")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc"
            tf.addfile(link)
        files = buf.getvalue()
        header["sections"][1] = {"name": "files", "size": len(files),
                                 "sha256": hashlib.sha256(files).hexdigest()}
        raw = json.dumps(header, separators=(",", ":")).encode()
        forged = MAGIC + struct.pack("<I", len(raw)) + raw + struct.pack("<I", crc32c(raw)) + image + files
        outcome, _ = attempt(lambda: eryx.SandboxFactory.from_bytes(forged))
        report(outcome=outcome)
    """, wall_s=60, max_rss_mib=1024)
    found = out.check()
    assert found["outcome"] == ("InitializationError: failed to load factory from <bytes>: "
                                "<bytes>: unsafe archive member 'etc'"), found


def test_pre_import_that_exits_the_interpreter(tmp_path):
    """A package whose import calls os._exit (WASI proc_exit): the build fails with the
    pre-import error, the host process lives on and can build other factories."""
    pkg = tmp_path / "exiter"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import os\nos._exit(3)\n")
    out = run_case(ATTEMPT + f"""
        outcome, _ = attempt(lambda: eryx.SandboxFactory(packages=[{str(pkg)!r}], imports=["exiter"]))
        with eryx.SandboxFactory() as f, f.create_sandbox() as sb:
            after = sb.execute("print('alive')").stdout
        report(outcome=outcome, after=after)
    """, wall_s=60, max_rss_mib=1024)
    found = out.check()
    assert found["outcome"].startswith(
        "InitializationError: pre-import of 'exiter' failed: "), found
    assert found["after"] == "alive", found
