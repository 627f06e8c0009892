package vfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// volumeTree makes <tmp>/vol (the volume) and <tmp>/outside, with symbolic links from the
// volume to both.
func volumeTree(t *testing.T) (vol, outside string) {
	t.Helper()
	base := t.TempDir()
	vol = filepath.Join(base, "vol")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{vol, outside, filepath.Join(vol, "sub"), filepath.Join(outside, "dir")} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	files := map[string]string{
		filepath.Join(vol, "file.txt"):         "inside",
		filepath.Join(vol, "sub", "inner.txt"): "inner",
		filepath.Join(outside, "secret"):       "secret",
		filepath.Join(outside, "dir", "s2"):    "s2",
	}
	for p, c := range files {
		require.NoError(t, os.WriteFile(p, []byte(c), 0o644))
	}
	links := map[string]string{
		"link-in-file":     "file.txt",
		"link-in-dir":      "sub",
		"sub/link-up-in":   "../file.txt",
		"link-abs-in":      filepath.Join(vol, "file.txt"),
		"link-abs-out":     filepath.Join(outside, "secret"),
		"link-abs-out-dir": outside,
		"link-rel-out":     "../outside/secret",
		"link-rel-out-dir": "../outside",
		"sub/link-up-out":  "../../outside/dir/s2",
		"link-chain":       "link-rel-out",
		"link-root":        "/",
		"link-dangling":    "nowhere",
	}
	for name, target := range links {
		require.NoError(t, os.Symlink(target, filepath.Join(vol, name)))
	}
	return vol, outside
}

func TestHostDirEscapesRefused(t *testing.T) {
	dir, outside := volumeTree(t)
	v, err := HostDir(dir, Options{})
	require.NoError(t, err)
	defer v.Close()

	escapes := []string{
		"link-abs-out", "link-abs-out-dir/secret", "link-rel-out", "link-rel-out-dir/secret",
		"link-rel-out-dir/dir/s2", "sub/link-up-out", "link-chain", "link-root/etc/passwd",
		"link-abs-in", // absolute links are refused even when they point inside
	}
	for _, p := range escapes {
		_, errno := v.OpenFile(p, oRdonly, 0o600)
		require.Equal(t, experimentalsys.EACCES, errno, "open %s", p)
		_, errno = v.Stat(p)
		require.Equal(t, experimentalsys.EACCES, errno, "stat %s", p)
		_, errno = v.OpenFile(p, oWronly|oTrunc, 0o600)
		require.NotZero(t, errno, "open for writing %s", p)
		require.NotZero(t, v.Utimens(p, 1, 1), "utimens %s", p)
	}
	for _, p := range []string{"..", "../outside/secret", "sub/../../outside/secret", "sub/../.."} {
		_, errno := v.OpenFile(p, oRdonly, 0o600)
		require.Equal(t, experimentalsys.EPERM, errno, "open %s", p)
		_, errno = v.Stat(p)
		require.NotZero(t, errno, "stat %s", p)
	}
	// Creating, renaming, removing through escaping links.
	_, errno := v.OpenFile("link-rel-out-dir/new", oWronly|oCreat, 0o600)
	require.NotZero(t, errno)
	_, errno = v.OpenFile("link-abs-out-dir/new", oWronly|oCreat, 0o600)
	require.NotZero(t, errno)
	require.NotZero(t, v.Mkdir("link-rel-out-dir/newdir", 0o700))
	require.NotZero(t, v.Rename("file.txt", "link-rel-out-dir/stolen"))
	require.NotZero(t, v.Rename("link-rel-out-dir/secret", "stolen"))
	require.NotZero(t, v.Unlink("link-rel-out-dir/secret"))
	require.NotZero(t, v.Rmdir("link-rel-out-dir/dir"))
	_, errno = v.Readlink("link-abs-out")
	require.Equal(t, experimentalsys.EACCES, errno)
	_, errno = v.Readlink("link-rel-out")
	require.Equal(t, experimentalsys.EACCES, errno)
	_, errno = v.Readlink("sub/link-up-out")
	require.Equal(t, experimentalsys.EACCES, errno)

	// Nothing outside changed.
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	secret, err := os.ReadFile(filepath.Join(outside, "secret"))
	require.NoError(t, err)
	require.Equal(t, "secret", string(secret))
	_, err = os.Stat(filepath.Join(dir, "file.txt"))
	require.NoError(t, err)

	// Links that stay inside work; they are visible as links.
	for p, want := range map[string]string{"link-in-file": "inside", "link-in-dir/inner.txt": "inner", "sub/link-up-in": "inside"} {
		f := mustOpen(t, v, p, oRdonly)
		require.Equal(t, want, readAll(t, f), p)
		require.Zero(t, f.Close())
	}
	st, errno := v.Lstat("link-in-file")
	require.Zero(t, errno)
	require.Equal(t, fs.ModeSymlink, st.Mode.Type())
	st, errno = v.Stat("link-in-dir")
	require.Zero(t, errno)
	require.True(t, st.Mode.IsDir())
	target, errno := v.Readlink("sub/link-up-in")
	require.Zero(t, errno)
	require.Equal(t, "../file.txt", target)
	_, errno = v.Readlink("file.txt")
	require.Equal(t, experimentalsys.EINVAL, errno)
	_, errno = v.OpenFile("link-in-file", oRdonly|experimentalsys.O_NOFOLLOW, 0o600)
	require.Equal(t, experimentalsys.ELOOP, errno)
	_, errno = v.Stat("link-dangling")
	require.Equal(t, experimentalsys.ENOENT, errno)

	// The guest cannot create links.
	require.Equal(t, experimentalsys.EPERM, v.Symlink("file.txt", "new-link"))
	require.Equal(t, experimentalsys.EPERM, v.Symlink(outside, "new-link"))
	require.Equal(t, experimentalsys.EPERM, v.Link("file.txt", "new-hard"))
	_, err = os.Lstat(filepath.Join(dir, "new-link"))
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestHostDirReadWrite(t *testing.T) {
	dir := t.TempDir()
	v, err := HostDir(dir, Options{})
	require.NoError(t, err)
	defer v.Close()

	f := mustOpen(t, v, "a.txt", oRdwr|oCreat|oExcl)
	write(t, f, "hello world")
	n, errno := f.Pwrite([]byte("W"), 6)
	require.Zero(t, errno)
	require.Equal(t, 1, n)
	_, _ = f.Seek(0, io.SeekStart)
	require.Equal(t, "hello World", readAll(t, f))
	buf := make([]byte, 5)
	n, _ = f.Pread(buf, 6)
	require.Equal(t, "World", string(buf[:n]))
	require.Zero(t, f.Truncate(5))
	require.Zero(t, f.Sync())
	st, _ := f.Stat()
	require.Equal(t, int64(5), st.Size)
	require.Zero(t, f.Close())
	_, errno = v.OpenFile("a.txt", oWronly|oCreat|oExcl, 0o600)
	require.Equal(t, experimentalsys.EEXIST, errno)

	a := mustOpen(t, v, "a.txt", oWronly|oAppend)
	_, _ = a.Seek(0, io.SeekStart)
	write(t, a, "!")
	require.Zero(t, a.Close())
	got, err := os.ReadFile(filepath.Join(dir, "a.txt"))
	require.NoError(t, err)
	require.Equal(t, "hello!", string(got))

	tr := mustOpen(t, v, "a.txt", oWronly|oTrunc)
	require.Zero(t, tr.Close())
	got, _ = os.ReadFile(filepath.Join(dir, "a.txt"))
	require.Empty(t, got)

	// Directories and listing.
	require.Zero(t, v.Mkdir("d", 0o700))
	require.Equal(t, experimentalsys.EEXIST, v.Mkdir("d", 0o700))
	require.Equal(t, experimentalsys.EEXIST, v.Mkdir(".", 0o700))
	require.Equal(t, experimentalsys.ENOENT, v.Mkdir("x/y", 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "d", "f"), []byte("f"), 0o644))
	require.Zero(t, v.Mkdir("d/sub", 0o700))
	d := mustOpen(t, v, "d", oRdonly|oDir)
	ents, errno := d.Readdir(-1)
	require.Zero(t, errno)
	require.Len(t, ents, 2)
	for _, e := range ents {
		st, _ := v.Stat("d/" + e.Name)
		require.Equal(t, st.Ino, e.Ino)
		require.Equal(t, st.Mode.Type(), e.Type)
	}
	_, errno = d.Seek(0, io.SeekStart)
	require.Zero(t, errno)
	ents2, _ := d.Readdir(1)
	require.Len(t, ents2, 1, "rewind restarts the listing")
	require.Zero(t, d.Close())
	_, errno = v.OpenFile("d", oWronly, 0o600)
	require.Equal(t, experimentalsys.EISDIR, errno)
	_, errno = v.OpenFile("a.txt", oRdonly|oDir, 0o600)
	require.Equal(t, experimentalsys.ENOTDIR, errno)
	_, errno = v.OpenFile("a.txt/", oRdonly, 0o600)
	require.Equal(t, experimentalsys.ENOTDIR, errno)

	// Remove and rename, POSIX style.
	require.Equal(t, experimentalsys.ENOTEMPTY, v.Rmdir("d"))
	require.Equal(t, experimentalsys.ENOTDIR, v.Rmdir("a.txt"))
	require.Equal(t, experimentalsys.EISDIR, v.Unlink("d"))
	require.Equal(t, experimentalsys.ENOENT, v.Unlink("nope"))
	require.Equal(t, experimentalsys.EPERM, v.Rmdir("."))
	require.Equal(t, experimentalsys.EPERM, v.Rename(".", "x"))
	require.Zero(t, v.Rename("a.txt", "d/f"))                          // replace a file
	require.Equal(t, experimentalsys.EISDIR, v.Rename("d/f", "d/sub")) // file onto dir
	require.Zero(t, v.Mkdir("empty", 0o700))
	require.Zero(t, v.Rename("d/sub", "empty")) // dir onto empty dir
	require.NotZero(t, v.Rename("d", "d/inside"))
	require.Zero(t, v.Unlink("d/f"))
	require.Zero(t, v.Rmdir("d"))
	require.Zero(t, v.Rmdir("empty"))
	entries, _ := os.ReadDir(dir)
	require.Empty(t, entries)

	// Times change on the host; chmod is accepted but does not reach the host.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "t"), nil, 0o644))
	require.Zero(t, v.Utimens("t", 1e9, 2e9))
	info, _ := os.Stat(filepath.Join(dir, "t"))
	require.Equal(t, int64(2e9), info.ModTime().UnixNano())
	h := mustOpen(t, v, "t", oRdonly)
	require.Zero(t, h.Utimens(experimentalsys.UTIME_OMIT, 3e9))
	require.Zero(t, h.Close())
	info, _ = os.Stat(filepath.Join(dir, "t"))
	require.Equal(t, int64(3e9), info.ModTime().UnixNano())
	require.Zero(t, v.Chmod("t", 0o777))
	info, _ = os.Stat(filepath.Join(dir, "t"))
	require.Equal(t, fs.FileMode(0o644), info.Mode().Perm())
	require.Equal(t, experimentalsys.ENOENT, v.Chmod("nope", 0o777))
}

func TestHostDirWriteFilter(t *testing.T) {
	dir := t.TempDir()
	v, err := HostDir(dir, Options{WriteFilter: func(b []byte) []byte { return []byte("<" + string(b) + ">") }})
	require.NoError(t, err)
	defer v.Close()
	f := mustOpen(t, v, "f", oWronly|oCreat)
	n, errno := f.Write([]byte("ab"))
	require.Zero(t, errno)
	require.Equal(t, 2, n)
	_, errno = f.Pwrite([]byte("c"), 10)
	require.Zero(t, errno)
	require.Zero(t, f.Close())
	got, _ := os.ReadFile(filepath.Join(dir, "f"))
	require.Equal(t, "<ab>\x00\x00\x00\x00\x00\x00<c>", string(got))
}

func TestHostDirReadOnly(t *testing.T) {
	dir, _ := volumeTree(t)
	before := snapshot(t, dir)
	v, err := HostDir(dir, Options{ReadOnly: true})
	require.NoError(t, err)
	defer v.Close()
	requireReadOnly(t, v, "sub", "file.txt")
	require.Equal(t, experimentalsys.EACCES, v.Rmdir("sub"))
	require.Equal(t, experimentalsys.EACCES, v.Unlink("link-in-file"))
	f := mustOpen(t, v, "link-in-file", oRdonly)
	require.Equal(t, "inside", readAll(t, f))
	require.Zero(t, f.Close())
	require.Equal(t, before, snapshot(t, dir))
}

// snapshot records names, sizes, modes and times of everything under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := os.Lstat(p)
		require.NoError(t, err)
		out[p] = info.Mode().String() + "|" + info.ModTime().String() + "|" + itoa(int(info.Size()))
		return nil
	}))
	return out
}

func TestHostDirCheck(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "v")
	require.NoError(t, os.Mkdir(dir, 0o755))
	v, err := HostDir(dir, Options{})
	require.NoError(t, err)
	defer v.Close()
	require.NoError(t, v.Check())

	// Replaced by another directory at the same path.
	require.NoError(t, os.Rename(dir, filepath.Join(base, "moved")))
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.ErrorIs(t, v.Check(), fs.ErrNotExist)
	require.NoError(t, os.Remove(dir))
	require.ErrorIs(t, v.Check(), fs.ErrNotExist)

	// Deleted outright: operations fail cleanly, and the preopen probe never makes wazero panic.
	w, err := HostDir(filepath.Join(base, "moved"), Options{})
	require.NoError(t, err)
	defer w.Close()
	require.NoError(t, os.RemoveAll(filepath.Join(base, "moved")))
	require.ErrorIs(t, w.Check(), fs.ErrNotExist)
	_, errno := w.OpenFile("f", oWronly|oCreat, 0o600)
	require.NotZero(t, errno)
	f, errno := w.OpenFile(".", oRdonly, 0)
	if errno == 0 {
		require.Zero(t, f.Close())
	} else {
		require.Equal(t, experimentalsys.ENOENT, errno)
	}

	_, err = HostDir(filepath.Join(base, "missing"), Options{})
	require.ErrorIs(t, err, fs.ErrNotExist)
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err = HostDir(file, Options{})
	require.Error(t, err)
}

func TestOsErrno(t *testing.T) {
	require.Equal(t, ErrnoNoSpace, osErrno(&fs.PathError{Op: "write", Err: syscall.ENOSPC}))
	require.Equal(t, ErrnoNoSpace, osErrno(syscall.EDQUOT))
	require.Equal(t, ErrnoNoSpace, osErrno(syscall.EFBIG))
	require.Equal(t, experimentalsys.ENOENT, osErrno(fs.ErrNotExist))
	require.Equal(t, experimentalsys.EACCES, osErrno(&fs.PathError{Err: syscall.EACCES}))
	require.Equal(t, experimentalsys.EACCES, osErrno(&fs.PathError{Err: errors.New("path escapes from parent")}))
	require.Equal(t, experimentalsys.EIO, osErrno(errors.New("something else")))
	require.Zero(t, osErrno(io.EOF))
	require.Zero(t, osErrno(nil))
}

func TestHostFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.json")
	require.NoError(t, os.WriteFile(p, []byte("0123456789"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sibling"), []byte("no"), 0o644))
	v, err := HostFile(p, Options{})
	require.NoError(t, err)
	defer v.Close()

	// wazero's preopen probe gets a directory; every other open of "." is the file.
	probe, errno := v.OpenFile(".", oRdonly, 0)
	require.Zero(t, errno)
	isDir, _ := probe.IsDir()
	require.True(t, isDir)
	ents, errno := probe.Readdir(-1)
	require.Zero(t, errno)
	require.Empty(t, ents)
	require.Zero(t, probe.Close())

	st, errno := v.Stat(".")
	require.Zero(t, errno)
	require.True(t, st.Mode.IsRegular())
	require.Equal(t, int64(10), st.Size)

	r1 := mustOpen(t, v, ".", oRdonly)
	r2 := mustOpen(t, v, "", oRdonly)
	buf := make([]byte, 4)
	n, _ := r1.Read(buf)
	require.Equal(t, "0123", string(buf[:n]))
	n, _ = r2.Read(buf[:2])
	require.Equal(t, "01", string(buf[:n]), "each handle has its own offset")
	n, _ = r1.Read(buf)
	require.Equal(t, "4567", string(buf[:n]))
	pos, errno := r1.Seek(-1, io.SeekEnd)
	require.Zero(t, errno)
	require.Equal(t, int64(9), pos)
	isDir, _ = r1.IsDir()
	require.False(t, isDir)
	require.Zero(t, r1.Close())
	require.Zero(t, r2.Close())

	w := mustOpen(t, v, ".", oWronly|oAppend)
	write(t, w, "AB")
	require.Zero(t, w.Close())
	w = mustOpen(t, v, "/", oRdwr)
	_, _ = w.Seek(2, io.SeekStart)
	write(t, w, "xy")
	require.Zero(t, w.Truncate(6))
	require.Zero(t, w.Close())
	got, _ := os.ReadFile(p)
	require.Equal(t, "01xy45", string(got))
	w = mustOpen(t, v, ".", oWronly|oTrunc)
	require.Zero(t, w.Close())
	got, _ = os.ReadFile(p)
	require.Empty(t, got)

	for _, bad := range []string{"sibling", "../sibling", "x", "./x/"} {
		_, errno := v.OpenFile(bad, oRdonly, 0o600)
		require.NotZero(t, errno, bad)
		_, errno = v.Stat(bad)
		require.NotZero(t, errno, bad)
	}
	_, errno = v.OpenFile(".", oRdonly|oDir, 0o600)
	require.Equal(t, experimentalsys.ENOTDIR, errno)
	_, errno = v.OpenFile(".", oWronly|oCreat|oExcl, 0o600)
	require.Equal(t, experimentalsys.EEXIST, errno)
	require.Equal(t, experimentalsys.EPERM, v.Unlink("."))
	require.Equal(t, experimentalsys.EPERM, v.Rename(".", "."))
	require.Equal(t, experimentalsys.ENOTDIR, v.Rename(".", "x"))
	require.Equal(t, experimentalsys.ENOTDIR, v.Rmdir("."))
	require.Equal(t, experimentalsys.EEXIST, v.Mkdir(".", 0o700))
	require.Equal(t, experimentalsys.ENOTDIR, v.Mkdir("x", 0o700))
	require.Equal(t, experimentalsys.EPERM, v.Link(".", "x"))
	require.Equal(t, experimentalsys.EPERM, v.Symlink(".", "x"))
	_, errno = v.Readlink(".")
	require.Equal(t, experimentalsys.EINVAL, errno)
	require.Zero(t, v.Utimens(".", 1e9, 2e9))
	info, _ := os.Stat(p)
	require.Equal(t, int64(2e9), info.ModTime().UnixNano())
	require.Zero(t, v.Chmod(".", 0o777))
	info, _ = os.Stat(p)
	require.Equal(t, fs.FileMode(0o644), info.Mode().Perm())
	sib, _ := os.ReadFile(filepath.Join(dir, "sibling"))
	require.Equal(t, "no", string(sib))

	// Check: deleted, or replaced by another file.
	require.NoError(t, v.Check())
	require.NoError(t, os.WriteFile(p+".new", []byte("new"), 0o644))
	require.NoError(t, os.Rename(p+".new", p))
	require.ErrorIs(t, v.Check(), fs.ErrNotExist)
	require.NoError(t, os.Remove(p))
	require.ErrorIs(t, v.Check(), fs.ErrNotExist)
	require.NotZero(t, v.Utimens(".", 1, 1), "no times are set on a replaced path")

	_, err = HostFile(filepath.Join(dir, "missing"), Options{})
	require.ErrorIs(t, err, fs.ErrNotExist)
	_, err = HostFile(dir, Options{})
	require.ErrorIs(t, err, syscall.EISDIR)
}

func TestHostFileReadOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, []byte("data"), 0o644))
	v, err := HostFile(p, Options{ReadOnly: true})
	require.NoError(t, err)
	defer v.Close()
	for _, flag := range []experimentalsys.Oflag{oWronly, oRdwr, oWronly | oAppend, oRdonly | oTrunc, oRdwr | oCreat} {
		_, errno := v.OpenFile(".", flag, 0o600)
		require.Equal(t, experimentalsys.EACCES, errno, "flag %v", flag)
	}
	require.Equal(t, experimentalsys.EACCES, v.Unlink("."))
	require.Equal(t, experimentalsys.EACCES, v.Rename(".", "."))
	require.Equal(t, experimentalsys.EACCES, v.Utimens(".", 1, 1))
	require.Equal(t, experimentalsys.EACCES, v.Chmod(".", 0o777))
	require.Equal(t, experimentalsys.EACCES, v.Mkdir(".", 0o777))
	f := mustOpen(t, v, ".", oRdonly)
	_, errno := f.Write([]byte("x"))
	require.Equal(t, experimentalsys.EBADF, errno)
	require.Equal(t, experimentalsys.EBADF, f.Truncate(0))
	require.Equal(t, experimentalsys.EACCES, f.Utimens(1, 1))
	require.Equal(t, "data", readAll(t, f))
	require.Zero(t, f.Close())
	got, _ := os.ReadFile(p)
	require.Equal(t, "data", string(got))
}

func TestOpenVolume(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
	v, err := OpenVolume(dir, Options{})
	require.NoError(t, err)
	require.IsType(t, &hostDir{}, v)
	require.NoError(t, v.Close())
	v, err = OpenVolume(p, Options{})
	require.NoError(t, err)
	require.IsType(t, &hostFileVol{}, v)
	require.NoError(t, v.Close())
	_, err = OpenVolume(filepath.Join(dir, "missing"), Options{})
	require.ErrorIs(t, err, fs.ErrNotExist)
}
