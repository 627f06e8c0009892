package goeryx

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
	"github.com/goeryx/goeryx/goeryx/internal/vfs"
)

// The end-to-end tests of the vfs package: the guest runtime's CPython (GOERYX_RUNTIME_DIR)
// runs against the file systems of goeryx/internal/vfs mounted exactly as given, not as a
// Config would mount them: read-only store views, write filters and mounts without a root
// listing are reachable only here.

type e2eMount struct {
	fs        experimentalsys.FS // nil: a marker meaning "do not mount a Root at /"
	guestPath string
	file      bool
}

var noRoot = e2eMount{}

// runPython runs code in a fresh interpreter with the given mounts plus a Root at "/" (listing
// the stdlib and the mounts), and returns stdout; it fails the test if the code fails.
func runPython(t *testing.T, code string, mounts ...e2eMount) string {
	t.Helper()
	out, err := runPythonIn(runtimeForTest(t), code, mounts...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runPythonIn is runPython for any goroutine: it returns the failure instead of reporting it.
func runPythonIn(rt *Runtime, code string, mounts ...e2eMount) (string, error) {
	b, err := newBox(rt, &Config{}, nil, nil)
	if err != nil {
		return "", err
	}
	dirs, files := []string{abi.GuestStdlibDir}, []string(nil)
	withRoot := true
	for _, m := range mounts {
		switch {
		case m.fs == nil:
			withRoot = false
		case m.file:
			files = append(files, m.guestPath)
		default:
			dirs = append(dirs, m.guestPath)
		}
	}
	ic := &instanceConfig{}
	if withRoot {
		root, err := vfs.RootWithFiles(dirs, files)
		if err != nil {
			return "", err
		}
		ic.mounts = append(ic.mounts, mount{view: fixedView(root), guestPath: "/"})
	}
	for _, m := range mounts {
		if m.fs != nil {
			ic.mounts = append(ic.mounts, mount{view: fixedView(m.fs), guestPath: m.guestPath})
		}
	}
	ctx := context.Background()
	inst, err := b.startInterpreter(ctx, ic)
	if err != nil {
		return "", err
	}
	defer inst.close()
	out := b.execute(ctx, inst, code, nil, nil, nil, "Sandbox", time.Now())
	if out.err != nil {
		return "", fmt.Errorf("guest failed: %s\nstdout:\n%s", out.err.Message, out.err.Stdout)
	}
	return out.result.Stdout, nil
}

const pyFileOps = `
import os, errno, io, pathlib, stat
D = "/data"

# open in every mode
with open(D + "/a.txt", "w") as f: f.write("hello\n")
with open(D + "/a.txt", "a") as f: f.write("world\n")
assert open(D + "/a.txt").read() == "hello\nworld\n"
with open(D + "/a.txt", "r+") as f:
    f.seek(6); f.write("WORLD"); f.seek(0); assert f.read() == "hello\nWORLD\n"
with open(D + "/a.txt", "w+") as f:
    assert f.read() == ""
    f.write("abc"); f.seek(0); assert f.read() == "abc"
with open(D + "/a.txt", "a+") as f:
    f.write("def"); f.seek(0); assert f.read() == "abcdef"
try:
    open(D + "/a.txt", "x")
    raise SystemExit("x on existing file did not fail")
except FileExistsError:
    pass
with open(D + "/new.bin", "xb") as f: f.write(bytes(range(256)))
with open(D + "/new.bin", "rb") as f:
    assert f.read() == bytes(range(256))
    f.seek(-6, os.SEEK_END); assert f.read() == bytes(range(250, 256))
    f.seek(10); assert f.tell() == 10 and f.read(2) == b"\x0a\x0b"
with open(D + "/new.bin", "r+b") as f:
    f.truncate(100); assert os.fstat(f.fileno()).st_size == 100
    f.truncate(1000); f.seek(999); assert f.read() == b"\0"
assert os.path.getsize(D + "/new.bin") == 1000
with open(D + "/sparse", "wb") as f:
    f.seek(1 << 20); f.write(b"end")
assert os.stat(D + "/sparse").st_size == (1 << 20) + 3
with open(D + "/sparse", "rb") as f:
    f.seek((1 << 20) - 2); assert f.read() == b"\0\0end"

# low-level os calls
fd = os.open(D + "/low", os.O_RDWR | os.O_CREAT | os.O_EXCL)
assert os.write(fd, b"0123456789") == 10
assert os.pread(fd, 3, 2) == b"234"
assert os.pwrite(fd, b"XY", 8) == 2
os.lseek(fd, 0, os.SEEK_SET); assert os.read(fd, 100) == b"01234567XY"
os.ftruncate(fd, 4); os.fsync(fd)
assert os.fstat(fd).st_size == 4
fd2 = os.open(D + "/low", os.O_RDONLY)
os.write(fd, b"++")        # offset 10: a hole from 4 to 10
assert os.read(fd2, 100) == b"0123" + b"\0" * 6 + b"++"
os.remove(D + "/low")      # unlinked but open
assert not os.path.exists(D + "/low")
os.pwrite(fd, b"still", 0)
assert os.pread(fd2, 5, 0) == b"still"
os.close(fd); os.close(fd2)

# directories
os.makedirs(D + "/x/y/z")
os.makedirs(D + "/x/y/z", exist_ok=True)
try:
    os.makedirs(D + "/x/y/z"); raise SystemExit("makedirs did not fail")
except FileExistsError:
    pass
for n in ("b", "a", "c"):
    open(D + "/x/" + n, "w").close()
assert os.listdir(D + "/x") == ["a", "b", "c", "y"], os.listdir(D + "/x")
ents = {e.name: e for e in os.scandir(D + "/x")}
assert ents["y"].is_dir() and not ents["y"].is_file()
assert ents["a"].is_file() and not ents["a"].is_symlink()
assert ents["a"].inode() == os.stat(D + "/x/a").st_ino != 0
try:
    os.rmdir(D + "/x"); raise SystemExit("rmdir of a non-empty dir did not fail")
except OSError as e:
    assert e.errno == errno.ENOTEMPTY, e
try:
    os.remove(D + "/x/y"); raise SystemExit("remove of a dir did not fail")
except (IsADirectoryError, PermissionError):
    pass
try:
    os.listdir(D + "/x/a"); raise SystemExit("listdir of a file did not fail")
except NotADirectoryError:
    pass
try:
    open(D + "/x/y", "w"); raise SystemExit("open dir for write did not fail")
except IsADirectoryError:
    pass
try:
    open(D + "/missing/f", "w"); raise SystemExit("open in missing dir did not fail")
except FileNotFoundError:
    pass
os.rmdir(D + "/x/y/z")
assert os.listdir(D + "/x/y") == []

# rename: files, dirs, replace
os.rename(D + "/x/a", D + "/x/a2")
with open(D + "/x/b", "w") as f: f.write("B")
os.replace(D + "/x/b", D + "/x/a2")
assert open(D + "/x/a2").read() == "B" and not os.path.exists(D + "/x/b")
os.rename(D + "/x/y", D + "/moved")
assert os.path.isdir(D + "/moved") and not os.path.exists(D + "/x/y")
os.mkdir(D + "/empty")
os.rename(D + "/moved", D + "/empty")     # a directory replaces an empty one
assert not os.path.exists(D + "/moved")
try:
    os.rename(D + "/x", D + "/x/inside"); raise SystemExit("rename into itself did not fail")
except OSError as e:
    assert e.errno == errno.EINVAL, e

# stat
st = os.stat(D + "/x/a2")
assert stat.S_ISREG(st.st_mode) and st.st_size == 1 and st.st_nlink == 1
assert stat.S_ISDIR(os.stat(D + "/x").st_mode)
assert stat.S_ISDIR(os.stat(D).st_mode)
os.utime(D + "/x/a2", (1000, 2000))
assert os.stat(D + "/x/a2").st_mtime == 2000
os.chmod(D + "/x/a2", 0o600)   # WASI preview 1 has no chmod: CPython accepts it, nothing is called

# pathlib
p = pathlib.Path(D) / "pl" / "deep"
p.mkdir(parents=True)
(p / "t.txt").write_text("pathlib")
assert (p / "t.txt").read_text() == "pathlib"
assert sorted(x.name for x in p.parent.iterdir()) == ["deep"]
assert [x.name for x in pathlib.Path(D).glob("pl/**/*.txt")] == ["t.txt"]
(p / "t.txt").rename(p / "u.txt")
(p / "u.txt").unlink()
p.rmdir()
assert pathlib.Path(D, "x", "a2").resolve() == pathlib.Path(D, "x", "a2")

# a directory larger than one fd_readdir buffer
os.mkdir(D + "/many")
names = ["file-with-a-rather-long-name-%04d.dat" % i for i in range(1500)]
for n in names:
    open(D + "/many/" + n, "wb").close()
assert sorted(os.listdir(D + "/many")) == names
assert len(list(os.scandir(D + "/many"))) == 1500
for n in names:
    os.remove(D + "/many/" + n)
os.rmdir(D + "/many")

# walk
found = sorted(os.path.join(r, f) for r, ds, fs in os.walk(D) for f in fs)
assert D + "/x/a2" in found, found

# links raise OSError
for fn in (lambda: os.symlink(D + "/x/a2", D + "/sl"), lambda: os.link(D + "/x/a2", D + "/hl")):
    try:
        fn(); raise SystemExit("link did not fail")
    except OSError:
        pass

# unclosed files are flushed when collected
f = open(D + "/gc.txt", "w"); f.write("collected"); del f
import gc; gc.collect()
assert open(D + "/gc.txt").read() == "collected"
print("FILEOPS-OK")
`

const pySqlite = `
import os, sqlite3
con = sqlite3.connect("/data/db.sqlite")
con.execute("create table t (k integer primary key, v text)")
assert con.execute("pragma journal_mode").fetchone()[0] == "delete"
with con:
    con.executemany("insert into t (v) values (?)", [("row %d" % i,) for i in range(2000)])
    assert os.path.exists("/data/db.sqlite-journal"), "a write transaction keeps a rollback journal"
try:
    with con:
        con.execute("insert into t (v) values ('doomed')")
        raise RuntimeError("roll back")
except RuntimeError:
    pass
assert con.execute("select count(*) from t").fetchone()[0] == 2000
con.execute("vacuum")
con.close()
con = sqlite3.connect("/data/db.sqlite")
assert con.execute("select v from t where k = 1234").fetchone()[0] == "row 1233"
con.close()
print("SQLITE-OK")
`

func TestE2EFileOps(t *testing.T) {
	s := vfs.NewStore(64 << 20)
	out := runPython(t, pyFileOps, e2eMount{fs: s.FS(vfs.Options{}), guestPath: "/data"})
	require.Contains(t, out, "FILEOPS-OK")
	// The host sees what the guest left.
	got, err := s.ReadFile("x/a2")
	require.NoError(t, err)
	require.Equal(t, "B", string(got))
	got, err = s.ReadFile("/gc.txt")
	require.NoError(t, err)
	require.Equal(t, "collected", string(got))
}

func TestE2ESqlite(t *testing.T) {
	s := vfs.NewStore(64 << 20)
	out := runPython(t, `
try:
    import sqlite3
except ImportError:
    print("NO-SQLITE")
    raise SystemExit(0)
`+pySqlite, e2eMount{fs: s.FS(vfs.Options{}), guestPath: "/data"})
	if strings.Contains(out, "NO-SQLITE") {
		t.Skip("this CPython build has no sqlite3")
	}
	require.Contains(t, out, "SQLITE-OK")
	names, err := s.List("/")
	require.NoError(t, err)
	require.Equal(t, []string{"db.sqlite"}, names, "the journal is gone after commit")
	db, err := s.ReadFile("db.sqlite")
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(db, []byte("SQLite format 3\x00")))
}

func TestE2ENoSpace(t *testing.T) {
	s := vfs.NewStore(1000)
	out := runPython(t, `
import errno, os
def nospace(fn):
    try:
        fn()
    except OSError as e:
        assert e.errno == errno.ENOSPC, (e, errno.ENOSPC)
        return
    raise SystemExit("no ENOSPC")
def big():
    with open("/data/big", "wb") as f: f.write(b"x" * 1001)
nospace(big)
def far():
    with open("/data/far", "wb") as f:
        f.seek(2**40); f.write(b"x")
nospace(far)
def grow():
    with open("/data/t", "wb") as f: f.truncate(5000)
nospace(grow)
with open("/data/fits", "wb") as f: f.write(b"y" * 1000)   # exactly at the cap
def one_more():
    fd = os.open("/data/fits", os.O_WRONLY | os.O_APPEND)
    try: os.write(fd, b"z")
    finally: os.close(fd)
nospace(one_more)
os.remove("/data/fits")
with open("/data/again", "wb") as f: f.write(b"w" * 1000)  # removal freed the bytes
print("ENOSPC-OK", errno.ENOSPC)
`, e2eMount{fs: s.FS(vfs.Options{}), guestPath: "/data"})
	require.Contains(t, out, "ENOSPC-OK")
	_, used, _ := s.Stats()
	require.LessOrEqual(t, used, int64(1000))
}

func TestE2EReadOnlyAndRoot(t *testing.T) {
	s := vfs.NewStore(1 << 20)
	require.NoError(t, s.WriteFile("seed/hello.txt", []byte("hi")))
	hostDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(hostDir, "ro.txt"), []byte("ro"), 0o644))
	rwDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(rwDir, "in.txt"), []byte("in"), 0o644))
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(rwDir, "abs-link")))
	require.NoError(t, os.Symlink("../"+filepath.Base(outside)+"/secret", filepath.Join(rwDir, "rel-link")))
	require.NoError(t, os.Symlink("in.txt", filepath.Join(rwDir, "ok-link")))
	hostFile := filepath.Join(t.TempDir(), "app.json")
	require.NoError(t, os.WriteFile(hostFile, []byte(`{"a": 1}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(hostFile), "sibling"), []byte("no"), 0o644))

	roVol, err := vfs.HostDir(hostDir, vfs.Options{ReadOnly: true})
	require.NoError(t, err)
	defer roVol.Close()
	scrub := vfs.Options{WriteFilter: func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte("PLACEHOLDER"), []byte("[REDACTED]"))
	}}
	rwVol, err := vfs.HostDir(rwDir, scrub)
	require.NoError(t, err)
	defer rwVol.Close()
	fileVol, err := vfs.HostFile(hostFile, scrub)
	require.NoError(t, err)
	defer fileVol.Close()

	out := runPython(t, `
import os, errno, json
# Why EACCES: CPython raises PermissionError for EACCES/EPERM, plain OSError for EROFS.
assert type(OSError(errno.EACCES, "")) is PermissionError and type(OSError(errno.EROFS, "")) is OSError
assert sorted(os.listdir("/")) == ["data", "etc", "mnt", "ro", "usr"], os.listdir("/")
assert os.listdir("/etc") == ["app.json"]
assert [e.is_file() for e in os.scandir("/etc")] == [True]
assert sorted(os.listdir("/mnt")) == ["rw"]
for bad in ("/tmp", "/etc/passwd", "/usr/bin"):
    try:
        open(bad); raise SystemExit("opened " + bad)
    except (FileNotFoundError, PermissionError):
        pass
try:
    open("/newfile", "w"); raise SystemExit("wrote to /")
except PermissionError:
    pass

# read-only store view and read-only host dir
assert open("/data/seed/hello.txt").read() == "hi"
assert open("/ro/ro.txt").read() == "ro" and os.listdir("/ro") == ["ro.txt"]
checks = [
    lambda d: open(d + "/new", "w"),
    lambda d: open(d + "/" + os.listdir(d)[0], "a"),
    lambda d: open(d + "/" + os.listdir(d)[0], "r+"),
    lambda d: os.mkdir(d + "/sub"),
    lambda d: os.remove(d + "/" + os.listdir(d)[0]),
    lambda d: os.rename(d + "/" + os.listdir(d)[0], d + "/other"),
    lambda d: os.utime(d + "/" + os.listdir(d)[0], (1, 1)),
    lambda d: os.truncate(d + "/" + os.listdir(d)[0], 0),
]
for d in ("/data", "/ro"):
    for i, fn in enumerate(checks):
        try:
            fn(d)
        except PermissionError:
            continue
        raise SystemExit("change %d in %s did not raise PermissionError" % (i, d))
try:
    os.rmdir("/data/seed"); raise SystemExit("rmdir in read-only")
except PermissionError:
    pass

# read-write host dir: writes reach the host, scrubbed; escapes refused
with open("/mnt/rw/out.txt", "w") as f: f.write("token=PLACEHOLDER")
assert open("/mnt/rw/in.txt").read() == "in"
assert open("/mnt/rw/ok-link").read() == "in"
assert os.readlink("/mnt/rw/ok-link") == "in.txt"
for link in ("/mnt/rw/abs-link", "/mnt/rw/rel-link"):
    try:
        open(link).read(); raise SystemExit("escaped via " + link)
    except PermissionError:
        pass
    assert os.path.islink(link)
try:
    open("/mnt/rw/../../" + "etc/passwd"); raise SystemExit("escaped via ..")
except (FileNotFoundError, PermissionError):
    pass
os.makedirs("/mnt/rw/d1/d2")
os.rename("/mnt/rw/d1", "/mnt/rw/d3")
os.rmdir("/mnt/rw/d3/d2"); os.rmdir("/mnt/rw/d3")
try:
    os.symlink("in.txt", "/mnt/rw/new-link"); raise SystemExit("symlink created")
except OSError:
    pass

# a single-file volume
assert json.load(open("/etc/app.json")) == {"a": 1}
st = os.stat("/etc/app.json")
assert st.st_size == 8 and not os.path.isdir("/etc/app.json")
with open("/etc/app.json", "r+") as f:
    f.seek(0, 2); f.write("\n")
with open("/etc/app.json", "a") as f: f.write("PLACEHOLDER")
for p in ("/etc/app.json/x", "/etc/sibling"):
    try:
        open(p); raise SystemExit("reached " + p)
    except (NotADirectoryError, FileNotFoundError):
        pass
try:
    os.listdir("/etc/app.json"); raise SystemExit("listed a file")
except NotADirectoryError:
    pass
try:
    os.remove("/etc/app.json"); raise SystemExit("removed the mount")
except PermissionError:
    pass
print("RO-OK")
`,
		e2eMount{fs: s.FS(vfs.Options{ReadOnly: true}), guestPath: "/data"},
		e2eMount{fs: roVol, guestPath: "/ro"},
		e2eMount{fs: rwVol, guestPath: "/mnt/rw"},
		e2eMount{fs: fileVol, guestPath: "/etc/app.json", file: true},
	)
	require.Contains(t, out, "RO-OK")

	got, err := os.ReadFile(filepath.Join(rwDir, "out.txt"))
	require.NoError(t, err)
	require.Equal(t, "token=[REDACTED]", string(got))
	got, err = os.ReadFile(hostFile)
	require.NoError(t, err)
	require.Equal(t, "{\"a\": 1}\n[REDACTED]", string(got))
	_, err = os.Lstat(filepath.Join(rwDir, "new-link"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, roVol.Check())
}

// TestE2ESharedStore runs guests concurrently on one store, as sandboxes sharing a VfsStorage
// do, while the host reads and writes it too.
func TestE2ESharedStore(t *testing.T) {
	rt := runtimeForTest(t)
	s := vfs.NewStore(1 << 20)
	require.NoError(t, s.WriteFile("from-host.txt", []byte("host data")))
	const guests, lines = 3, 200
	var wg sync.WaitGroup
	outs := make([]string, guests)
	errs := make([]error, guests)
	for g := 0; g < guests; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			outs[g], errs[g] = runPythonIn(rt, fmt.Sprintf(`
import os
assert open("/data/from-host.txt").read() == "host data"
for i in range(%d):
    with open("/data/shared.log", "a") as f:
        f.write("guest %d line %%04d\n" %% i)
with open("/data/own-%d.txt", "w") as f:
    f.write("mine")
print("SHARED-OK")
`, lines, g, g), e2eMount{fs: s.FS(vfs.Options{}), guestPath: "/data"})
		}(g)
	}
	wg.Wait()
	for g, out := range outs {
		require.NoError(t, errs[g])
		require.Contains(t, out, "SHARED-OK")
	}
	log, err := s.ReadFile("shared.log")
	require.NoError(t, err)
	got := strings.Split(strings.TrimSuffix(string(log), "\n"), "\n")
	require.Len(t, got, guests*lines, "appends from concurrent guests never overwrite each other")
	for _, line := range got {
		require.Regexp(t, `^guest \d line \d{4}$`, line)
	}
	names, err := s.List("/")
	require.NoError(t, err)
	require.Equal(t, []string{"from-host.txt", "own-0.txt", "own-1.txt", "own-2.txt", "shared.log"}, names)
}

// TestE2ESingleFileWithoutRoot mounts a single host file with no Root at "/": the file mount
// stands on its own.
func TestE2ESingleFileWithoutRoot(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "input.csv")
	require.NoError(t, os.WriteFile(p, []byte("a,b\n1,2\n"), 0o644))
	v, err := vfs.HostFile(p, vfs.Options{ReadOnly: true})
	require.NoError(t, err)
	defer v.Close()
	out := runPython(t, `
import csv, os
rows = list(csv.reader(open("/in/data.csv")))
assert rows == [["a", "b"], ["1", "2"]], rows
assert os.path.isfile("/in/data.csv") and os.path.getsize("/in/data.csv") == 8
try:
    open("/in/data.csv", "a"); raise SystemExit("wrote a read-only file volume")
except PermissionError:
    pass
for p in ("/in/input.csv", "/in"):
    try:
        os.listdir(p); raise SystemExit("listed " + p)
    except (FileNotFoundError, NotADirectoryError):
        pass
print("FILE-OK")
`, noRoot, e2eMount{fs: v, guestPath: "/in/data.csv", file: true})
	require.Contains(t, out, "FILE-OK")
}
