package vfs

import (
	"bytes"
	"io"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/require"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

const (
	oRdonly = experimentalsys.O_RDONLY
	oWronly = experimentalsys.O_WRONLY
	oRdwr   = experimentalsys.O_RDWR
	oCreat  = experimentalsys.O_CREAT
	oExcl   = experimentalsys.O_EXCL
	oTrunc  = experimentalsys.O_TRUNC
	oAppend = experimentalsys.O_APPEND
	oDir    = experimentalsys.O_DIRECTORY
)

func mustOpen(t *testing.T, fsys experimentalsys.FS, p string, flag experimentalsys.Oflag) experimentalsys.File {
	t.Helper()
	f, errno := fsys.OpenFile(p, flag, 0o600)
	require.Zero(t, errno, "open %q: %v", p, errno)
	return f
}

func write(t *testing.T, f experimentalsys.File, s string) {
	t.Helper()
	n, errno := f.Write([]byte(s))
	require.Zero(t, errno)
	require.Equal(t, len(s), n)
}

func readAll(t *testing.T, f experimentalsys.File) string {
	t.Helper()
	var out []byte
	buf := make([]byte, 7)
	for {
		n, errno := f.Read(buf)
		require.Zero(t, errno)
		if n == 0 {
			return string(out)
		}
		out = append(out, buf[:n]...)
	}
}

func TestFSOpenFlags(t *testing.T) {
	s := NewStore(1 << 20)
	fsys := s.FS(Options{})

	_, errno := fsys.OpenFile("f", oRdonly, 0o600)
	require.Equal(t, experimentalsys.ENOENT, errno)

	f := mustOpen(t, fsys, "f", oWronly|oCreat|oExcl)
	write(t, f, "hello")
	_, errno = f.Read(make([]byte, 1))
	require.Equal(t, experimentalsys.EBADF, errno, "read on a write-only handle")
	require.Zero(t, f.Close())
	require.Zero(t, f.Close(), "close is idempotent")
	_, errno = f.Write([]byte("x"))
	require.Equal(t, experimentalsys.EBADF, errno, "write after close")

	_, errno = fsys.OpenFile("f", oWronly|oCreat|oExcl, 0o600)
	require.Equal(t, experimentalsys.EEXIST, errno)

	r := mustOpen(t, fsys, "f", oRdonly)
	require.Equal(t, "hello", readAll(t, r))
	_, errno = r.Write([]byte("x"))
	require.Equal(t, experimentalsys.EBADF, errno, "write on a read-only handle")
	require.Equal(t, experimentalsys.EBADF, r.Truncate(0))
	require.Zero(t, r.Close())

	a := mustOpen(t, fsys, "f", oWronly|oAppend)
	require.True(t, a.IsAppend())
	_, errno = a.Seek(0, io.SeekStart)
	require.Zero(t, errno)
	write(t, a, " world")
	require.Zero(t, a.SetAppend(false))
	_, _ = a.Seek(0, io.SeekStart)
	write(t, a, "J")
	require.Zero(t, a.Close())
	got, _ := s.ReadFile("f")
	require.Equal(t, "Jello world", string(got))

	rw := mustOpen(t, fsys, "f", oRdwr|oTrunc)
	require.Equal(t, "", readAll(t, rw))
	write(t, rw, "abc")
	_, _ = rw.Seek(0, io.SeekStart)
	require.Equal(t, "abc", readAll(t, rw))
	require.Zero(t, rw.Close())

	// Directories.
	require.Zero(t, fsys.Mkdir("d", 0o700))
	for _, flag := range []experimentalsys.Oflag{oWronly, oRdwr, oRdonly | oTrunc, oRdwr | oCreat} {
		_, errno = fsys.OpenFile("d", flag, 0o600)
		require.Equal(t, experimentalsys.EISDIR, errno, "flag %v", flag)
	}
	d := mustOpen(t, fsys, "d", oRdonly|oDir)
	isDir, _ := d.IsDir()
	require.True(t, isDir)
	_, errno = d.Read(make([]byte, 1))
	require.Equal(t, experimentalsys.EISDIR, errno)
	require.Zero(t, d.Close())
	_, errno = fsys.OpenFile("f", oRdonly|oDir, 0o600)
	require.Equal(t, experimentalsys.ENOTDIR, errno)
	_, errno = fsys.OpenFile("f/", oRdonly, 0o600)
	require.Equal(t, experimentalsys.ENOTDIR, errno)
	_, errno = fsys.OpenFile("f/x", oRdonly, 0o600)
	require.Equal(t, experimentalsys.ENOTDIR, errno)
	_, errno = fsys.OpenFile("new/", oWronly|oCreat, 0o600)
	require.Equal(t, experimentalsys.EISDIR, errno)
	_, errno = fsys.OpenFile("missing/x", oWronly|oCreat, 0o600)
	require.Equal(t, experimentalsys.ENOENT, errno)
	_, errno = fsys.OpenFile("../x", oRdonly, 0o600)
	require.Equal(t, experimentalsys.EPERM, errno)

	// The probe wazero makes for the preopen, and opens of the root in every spelling.
	for _, p := range []string{".", "", "/"} {
		root, errno := fsys.OpenFile(p, oRdonly, 0)
		require.Zero(t, errno)
		isDir, _ = root.IsDir()
		require.True(t, isDir)
		require.Zero(t, root.Close())
	}
	// fd-relative paths as wazero builds them ("<dir name>/<path>").
	f = mustOpen(t, fsys, "d/./../d/inner", oWronly|oCreat)
	require.Zero(t, f.Close())
	got, err := s.ReadFile("d/inner")
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestFSReadWriteSeek(t *testing.T) {
	s := NewStore(1 << 30)
	fsys := s.FS(Options{})
	f := mustOpen(t, fsys, "f", oRdwr|oCreat)
	defer f.Close()

	data := bytes.Repeat([]byte("0123456789"), 20000) // spans pages
	n, errno := f.Write(data)
	require.Zero(t, errno)
	require.Equal(t, len(data), n)

	pos, errno := f.Seek(0, io.SeekCurrent)
	require.Zero(t, errno)
	require.Equal(t, int64(len(data)), pos)
	pos, _ = f.Seek(-10, io.SeekEnd)
	require.Equal(t, int64(len(data)-10), pos)
	buf := make([]byte, 100)
	n, _ = f.Read(buf)
	require.Equal(t, "0123456789", string(buf[:n]))
	n, errno = f.Read(buf)
	require.Zero(t, errno)
	require.Zero(t, n, "EOF is n == 0")

	_, errno = f.Seek(-1, io.SeekStart)
	require.Equal(t, experimentalsys.EINVAL, errno)
	_, errno = f.Seek(0, 7)
	require.Equal(t, experimentalsys.EINVAL, errno)

	n, _ = f.Pread(buf[:5], 65535)
	require.Equal(t, string(data[65535:65540]), string(buf[:n]))
	_, errno = f.Pread(buf, -1)
	require.Equal(t, experimentalsys.EINVAL, errno)
	n, errno = f.Pwrite([]byte("XYZ"), 65534)
	require.Zero(t, errno)
	require.Equal(t, 3, n)
	_, errno = f.Pwrite([]byte("x"), -1)
	require.Equal(t, experimentalsys.EINVAL, errno)
	pos, _ = f.Seek(0, io.SeekCurrent)
	require.Equal(t, int64(len(data)), pos, "pwrite does not move the offset")

	// Seek past the end and write: a hole of zeros.
	_, _ = f.Seek(int64(len(data))+100000, io.SeekStart)
	write(t, f, "tail")
	st, _ := f.Stat()
	require.Equal(t, int64(len(data)+100004), st.Size)
	n, _ = f.Pread(buf[:6], int64(len(data))+99998)
	require.Equal(t, "\x00\x00tail", string(buf[:n]))

	// Truncate down and up.
	require.Zero(t, f.Truncate(10))
	require.Zero(t, f.Truncate(20))
	got, _ := s.ReadFile("f")
	require.Equal(t, "0123456789"+string(make([]byte, 10)), string(got))
	require.Equal(t, experimentalsys.EINVAL, f.Truncate(-1))
	require.Zero(t, f.Sync())
	require.Zero(t, f.Datasync())
}

func TestFSSharedHandles(t *testing.T) {
	s := NewStore(1 << 20)
	fsys := s.FS(Options{})
	w := mustOpen(t, fsys, "f", oWronly|oCreat)
	r := mustOpen(t, fsys, "f", oRdonly)
	write(t, w, "one")
	require.Equal(t, "one", readAll(t, r))
	write(t, w, "two")
	require.Equal(t, "two", readAll(t, r), "a reader sees later writes")
	require.NoError(t, s.WriteFile("f", []byte("host")))
	_, _ = r.Seek(0, io.SeekStart)
	require.Equal(t, "host", readAll(t, r), "host replacement is visible to open handles")
	wi, _ := w.Ino()
	ri, _ := r.Ino()
	require.Equal(t, wi, ri)

	// Unlinked but open: still readable and writable, still charged, freed at the last close.
	require.Zero(t, fsys.Unlink("f"))
	_, errno := fsys.Stat("f")
	require.Equal(t, experimentalsys.ENOENT, errno)
	write(t, w, "-more")
	got := make([]byte, 20)
	n, _ := r.Pread(got, 0)
	require.Equal(t, "host\x00\x00-more", string(got[:n]), "w's offset was 6")
	st, errno := r.Stat()
	require.Zero(t, errno)
	require.Equal(t, uint64(0), st.Nlink)
	files, used, _ := s.Stats()
	require.Equal(t, 0, files)
	require.Equal(t, int64(11), used)
	require.Zero(t, w.Close())
	_, used, _ = s.Stats()
	require.Equal(t, int64(11), used)
	require.Zero(t, r.Close())
	_, used, _ = s.Stats()
	require.Zero(t, used)
	require.Zero(t, s.entries)

	// A file replaced by rename while open also lives on until closed.
	require.NoError(t, s.WriteFile("a", []byte("aaaa")))
	require.NoError(t, s.WriteFile("b", []byte("bb")))
	h := mustOpen(t, fsys, "b", oRdonly)
	require.Zero(t, fsys.Rename("a", "b"))
	require.Equal(t, "bb", readAll(t, h))
	_, used, _ = s.Stats()
	require.Equal(t, int64(6), used)
	require.Zero(t, h.Close())
	_, used, _ = s.Stats()
	require.Equal(t, int64(4), used)
}

func TestFSReaddir(t *testing.T) {
	s := NewStore(1 << 20)
	fsys := s.FS(Options{})
	for _, p := range []string{"d/c", "d/a", "d/b"} {
		require.NoError(t, s.WriteFile(p, []byte("x")))
	}
	require.Zero(t, fsys.Mkdir("d/sub", 0o700))

	d := mustOpen(t, fsys, "d", oRdonly|oDir)
	defer d.Close()
	first, errno := d.Readdir(2)
	require.Zero(t, errno)
	rest, errno := d.Readdir(10)
	require.Zero(t, errno)
	all := append(first, rest...)
	var names []string
	for _, e := range all {
		names = append(names, e.Name)
		st, errno := fsys.Stat("d/" + e.Name)
		require.Zero(t, errno)
		require.Equal(t, st.Ino, e.Ino)
		require.NotZero(t, e.Ino)
		require.Equal(t, st.Mode.Type(), e.Type)
	}
	require.Equal(t, []string{"a", "b", "c", "sub"}, names, "no . or .., sorted")
	require.Equal(t, fs.ModeDir, all[3].Type)
	more, errno := d.Readdir(10)
	require.Zero(t, errno)
	require.Empty(t, more)

	// Rewind sees new entries.
	require.NoError(t, s.WriteFile("d/e", nil))
	_, errno = d.Seek(0, io.SeekStart)
	require.Zero(t, errno)
	again, _ := d.Readdir(-1)
	require.Len(t, again, 5)
	_, errno = d.Seek(1, io.SeekStart)
	require.Equal(t, experimentalsys.EISDIR, errno)

	f := mustOpen(t, fsys, "d/a", oRdonly)
	_, errno = f.Readdir(1)
	require.Equal(t, experimentalsys.EBADF, errno)
	require.Zero(t, f.Close())

	st, _ := fsys.Stat("d")
	require.True(t, st.Mode.IsDir())
	require.Equal(t, uint64(3), st.Nlink, "2 + one subdirectory")
	root, _ := fsys.Stat(".")
	require.True(t, root.Mode.IsDir())
	dev, _ := d.Dev()
	require.Equal(t, root.Dev, dev)
}

func TestFSDirectoryOps(t *testing.T) {
	s := NewStore(1 << 20)
	fsys := s.FS(Options{})
	require.Zero(t, fsys.Mkdir("a", 0o700))
	require.Equal(t, experimentalsys.EEXIST, fsys.Mkdir("a", 0o700))
	require.Equal(t, experimentalsys.EEXIST, fsys.Mkdir(".", 0o700))
	require.Equal(t, experimentalsys.ENOENT, fsys.Mkdir("x/y", 0o700))
	require.NoError(t, s.WriteFile("file", []byte("f")))
	require.Equal(t, experimentalsys.EEXIST, fsys.Mkdir("file", 0o700))
	require.Equal(t, experimentalsys.ENOTDIR, fsys.Mkdir("file/y", 0o700))

	require.Zero(t, fsys.Mkdir("a/b", 0o700))
	require.Equal(t, experimentalsys.ENOTEMPTY, fsys.Rmdir("a"))
	require.Equal(t, experimentalsys.ENOTDIR, fsys.Rmdir("file"))
	require.Equal(t, experimentalsys.ENOENT, fsys.Rmdir("nope"))
	require.Equal(t, experimentalsys.EPERM, fsys.Rmdir("."))
	require.Equal(t, experimentalsys.EISDIR, fsys.Unlink("a"))
	require.Equal(t, experimentalsys.ENOENT, fsys.Unlink("nope"))
	require.Equal(t, experimentalsys.ENOTDIR, fsys.Unlink("file/"))

	// An open directory that is removed reads as empty.
	d := mustOpen(t, fsys, "a/b", oRdonly|oDir)
	require.Zero(t, fsys.Rmdir("a/b"))
	ents, errno := d.Readdir(-1)
	require.Zero(t, errno)
	require.Empty(t, ents)
	require.Zero(t, d.Close())
	require.Zero(t, fsys.Rmdir("a"))
	names, _ := s.List("/")
	require.Equal(t, []string{"file"}, names)
}

func TestFSRename(t *testing.T) {
	s := NewStore(1 << 20)
	fsys := s.FS(Options{})
	put := func(p, c string) { require.NoError(t, s.WriteFile(p, []byte(c))) }
	put("a/f", "F")
	put("b/g", "G")
	require.Zero(t, fsys.Mkdir("empty", 0o700))

	require.Zero(t, fsys.Rename("a/f", "a/f2"))                       // file
	require.Zero(t, fsys.Rename("a/f2", "b/g"))                       // file replaces file
	require.Zero(t, fsys.Rename("b/g", "b/g"))                        // same
	require.Equal(t, experimentalsys.EISDIR, fsys.Rename("b/g", "a")) // file onto dir
	require.Equal(t, experimentalsys.ENOTDIR, fsys.Rename("a", "b/g"))
	require.Equal(t, experimentalsys.ENOTEMPTY, fsys.Rename("empty", "b"))
	require.Zero(t, fsys.Rename("b", "empty")) // dir replaces empty dir
	require.Equal(t, experimentalsys.EINVAL, fsys.Rename("empty", "empty/sub"))
	require.Equal(t, experimentalsys.ENOENT, fsys.Rename("nope", "x"))
	require.Equal(t, experimentalsys.ENOENT, fsys.Rename("a", "nope/x"))
	require.Equal(t, experimentalsys.ENOTDIR, fsys.Rename("empty/g/", "x"))
	require.Equal(t, experimentalsys.ENOTDIR, fsys.Rename("empty/g", "x/"))
	require.Equal(t, experimentalsys.EPERM, fsys.Rename(".", "x"))
	require.Equal(t, experimentalsys.EPERM, fsys.Rename("a", "/"))
	require.Zero(t, fsys.Rename("empty", "a/moved")) // dir into another dir

	got, err := s.ReadFile("a/moved/g")
	require.NoError(t, err)
	require.Equal(t, "F", string(got))
	names, _ := s.List("/")
	require.Equal(t, []string{"a/"}, names)
	files, used, _ := s.Stats()
	require.Equal(t, 1, files)
	require.Equal(t, int64(1), used)
}

func TestFSLinksTimesModes(t *testing.T) {
	s := NewStore(1 << 20)
	fsys := s.FS(Options{})
	require.NoError(t, s.WriteFile("f", []byte("x")))
	require.Equal(t, experimentalsys.EPERM, fsys.Link("f", "g"))
	require.Equal(t, experimentalsys.EPERM, fsys.Symlink("f", "g"))
	_, errno := fsys.Readlink("f")
	require.Equal(t, experimentalsys.EINVAL, errno)
	_, errno = fsys.Readlink("nope")
	require.Equal(t, experimentalsys.ENOENT, errno)

	require.Zero(t, fsys.Utimens("f", 1000, 2000))
	st, _ := fsys.Stat("f")
	require.Equal(t, int64(1000), st.Atim)
	require.Equal(t, int64(2000), st.Mtim)
	require.Zero(t, fsys.Utimens("f", experimentalsys.UTIME_OMIT, 3000))
	st, _ = fsys.Lstat("f")
	require.Equal(t, int64(1000), st.Atim)
	require.Equal(t, int64(3000), st.Mtim)
	h := mustOpen(t, fsys, "f", oRdonly)
	require.Zero(t, h.Utimens(5, experimentalsys.UTIME_OMIT))
	st, _ = h.Stat()
	require.Equal(t, int64(5), st.Atim)
	require.Zero(t, h.Close())
	require.Equal(t, experimentalsys.ENOENT, fsys.Utimens("nope", 1, 1))

	require.Zero(t, fsys.Chmod("f", 0o600))
	st, _ = fsys.Stat("f")
	require.Equal(t, fs.FileMode(0o600), st.Mode)
	require.Equal(t, experimentalsys.ENOENT, fsys.Chmod("nope", 0o600))
}

func TestFSWriteFilter(t *testing.T) {
	s := NewStore(1 << 20)
	fsys := s.FS(Options{WriteFilter: func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte("SECRET"), []byte("[REDACTED]"))
	}})
	f := mustOpen(t, fsys, "f", oRdwr|oCreat)
	write(t, f, "a SECRET b")
	n, errno := f.Pwrite([]byte("SECRET"), 100)
	require.Zero(t, errno)
	require.Equal(t, 6, n, "the guest is told its whole buffer was written")
	require.Zero(t, f.Close())
	got, _ := s.ReadFile("f")
	require.Equal(t, "a [REDACTED] b", string(got[:14]))
	require.Equal(t, "[REDACTED]", string(got[100:]))
	// The host API is not filtered.
	require.NoError(t, s.WriteFile("h", []byte("SECRET")))
	got, _ = s.ReadFile("h")
	require.Equal(t, "SECRET", string(got))
}

// TestFSReadOnly exercises every mutating call of a read-only view.
func TestFSReadOnly(t *testing.T) {
	s := NewStore(1 << 20)
	require.NoError(t, s.WriteFile("d/f", []byte("data")))
	requireReadOnly(t, s.FS(Options{ReadOnly: true}), "d", "d/f")
	got, _ := s.ReadFile("d/f")
	require.Equal(t, "data", string(got))
	names, _ := s.List("d")
	require.Equal(t, []string{"f"}, names)
}

// requireReadOnly checks that fsys refuses every change with EACCES (PermissionError) while
// reads work. dir is an existing directory and file an existing file.
func requireReadOnly(t *testing.T, fsys experimentalsys.FS, dir, file string) {
	t.Helper()
	for _, flag := range []experimentalsys.Oflag{
		oWronly, oRdwr, oWronly | oAppend, oRdwr | oTrunc, oRdonly | oTrunc,
		oWronly | oCreat, oRdonly | oCreat, oWronly | oCreat | oExcl,
	} {
		_, errno := fsys.OpenFile(file, flag, 0o600)
		require.Equal(t, experimentalsys.EACCES, errno, "open %v", flag)
		_, errno = fsys.OpenFile(dir+"/new", flag, 0o600)
		require.Equal(t, experimentalsys.EACCES, errno, "open new %v", flag)
	}
	require.Equal(t, experimentalsys.EACCES, fsys.Mkdir(dir+"/new", 0o700))
	require.Equal(t, experimentalsys.EACCES, fsys.Rmdir(dir))
	require.Equal(t, experimentalsys.EACCES, fsys.Unlink(file))
	require.Equal(t, experimentalsys.EACCES, fsys.Rename(file, dir+"/moved"))
	require.Equal(t, experimentalsys.EACCES, fsys.Rename(dir, "moved"))
	require.Equal(t, experimentalsys.EACCES, fsys.Utimens(file, 1, 1))
	require.Equal(t, experimentalsys.EACCES, fsys.Chmod(file, 0o777))
	require.NotZero(t, fsys.Link(file, dir+"/link"))
	require.NotZero(t, fsys.Symlink(file, dir+"/link"))

	f, errno := fsys.OpenFile(file, oRdonly, 0)
	require.Zero(t, errno)
	_, errno = f.Write([]byte("x"))
	require.Equal(t, experimentalsys.EBADF, errno)
	_, errno = f.Pwrite([]byte("x"), 0)
	require.Equal(t, experimentalsys.EBADF, errno)
	require.Equal(t, experimentalsys.EBADF, f.Truncate(0))
	require.Equal(t, experimentalsys.EACCES, f.Utimens(1, 1))
	buf := make([]byte, 100)
	n, errno := f.Read(buf)
	require.Zero(t, errno)
	require.NotZero(t, n)
	require.Zero(t, f.Close())

	d, errno := fsys.OpenFile(dir, oRdonly|oDir, 0)
	require.Zero(t, errno)
	ents, errno := d.Readdir(-1)
	require.Zero(t, errno)
	require.NotEmpty(t, ents)
	require.Zero(t, d.Close())
	_, errno = fsys.Stat(file)
	require.Zero(t, errno)
	// The preopen probe still works.
	root, errno := fsys.OpenFile(".", oRdonly, 0)
	require.Zero(t, errno)
	require.Zero(t, root.Close())
}
