package vfs

import (
	"io"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/require"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

func readdirNames(t *testing.T, fsys experimentalsys.FS, p string) map[string]fs.FileMode {
	t.Helper()
	d, errno := fsys.OpenFile(p, oRdonly|oDir, 0o600)
	require.Zero(t, errno, p)
	defer d.Close()
	ents, errno := d.Readdir(-1)
	require.Zero(t, errno)
	out := map[string]fs.FileMode{}
	for _, e := range ents {
		require.NotZero(t, e.Ino)
		out[e.Name] = e.Type
	}
	return out
}

func TestRoot(t *testing.T) {
	r, err := RootWithFiles(
		[]string{"/data", "/usr/local/lib/python3.12", "/site-packages", "/mnt/a", "/mnt/b/"},
		[]string{"/etc/app.json", "/mnt/c.txt"})
	require.NoError(t, err)

	require.Equal(t, map[string]fs.FileMode{"data": fs.ModeDir, "usr": fs.ModeDir, "site-packages": fs.ModeDir,
		"mnt": fs.ModeDir, "etc": fs.ModeDir}, readdirNames(t, r, "."))
	require.Equal(t, map[string]fs.FileMode{"local": fs.ModeDir}, readdirNames(t, r, "usr"))
	require.Equal(t, map[string]fs.FileMode{"a": fs.ModeDir, "b": fs.ModeDir, "c.txt": 0}, readdirNames(t, r, "mnt"))
	require.Equal(t, map[string]fs.FileMode{"app.json": 0}, readdirNames(t, r, "/etc"))
	require.Empty(t, readdirNames(t, r, "data"))

	// The preopen probe, stat, rewinding.
	root, errno := r.OpenFile(".", oRdonly, 0)
	require.Zero(t, errno)
	first, _ := root.Readdir(2)
	require.Len(t, first, 2)
	_, errno = root.Seek(0, io.SeekStart)
	require.Zero(t, errno)
	all, _ := root.Readdir(0)
	require.Len(t, all, 5)
	st, errno := root.Stat()
	require.Zero(t, errno)
	require.True(t, st.Mode.IsDir())
	_, errno = root.Write([]byte("x"))
	require.NotZero(t, errno)
	require.Zero(t, root.Close())
	st, errno = r.Stat("usr/local")
	require.Zero(t, errno)
	require.True(t, st.Mode.IsDir())
	st, errno = r.Lstat("etc/app.json")
	require.Zero(t, errno)
	require.True(t, st.Mode.IsRegular())

	// Everything else does not exist; nothing can change.
	for _, p := range []string{"tmp", "usr/bin", "etc/passwd", "usr/local/lib/other"} {
		_, errno := r.Stat(p)
		require.Equal(t, experimentalsys.ENOENT, errno, p)
		_, errno = r.OpenFile(p, oRdonly, 0o600)
		require.Equal(t, experimentalsys.ENOENT, errno, p)
	}
	_, errno = r.Stat("etc/app.json/x")
	require.Equal(t, experimentalsys.ENOTDIR, errno)
	_, errno = r.OpenFile("etc/app.json", oRdonly, 0o600)
	require.Equal(t, experimentalsys.EACCES, errno, "a file mount is another file system")
	for _, flag := range []experimentalsys.Oflag{oWronly, oRdwr, oWronly | oCreat, oRdonly | oTrunc} {
		_, errno = r.OpenFile("newfile", flag, 0o600)
		require.Equal(t, experimentalsys.EACCES, errno)
		_, errno = r.OpenFile("data", flag, 0o600)
		require.Equal(t, experimentalsys.EACCES, errno)
	}
	require.Equal(t, experimentalsys.EACCES, r.Mkdir("new", 0o700))
	require.Equal(t, experimentalsys.EEXIST, r.Mkdir("usr", 0o700), "makedirs(exist_ok=True) needs EEXIST")
	require.Equal(t, experimentalsys.EACCES, r.Rmdir("mnt"))
	require.Equal(t, experimentalsys.EACCES, r.Unlink("etc/app.json"))
	require.Equal(t, experimentalsys.EACCES, r.Rename("mnt", "mnt2"))
	require.Equal(t, experimentalsys.EACCES, r.Chmod("mnt", 0o777))
	require.Equal(t, experimentalsys.EACCES, r.Utimens("mnt", 1, 1))
	require.Equal(t, experimentalsys.EPERM, r.Link("mnt", "x"))
	require.Equal(t, experimentalsys.EPERM, r.Symlink("mnt", "x"))
	_, errno = r.Readlink("mnt")
	require.Equal(t, experimentalsys.EINVAL, errno)

	plain, err := Root([]string{"/data"})
	require.NoError(t, err)
	require.Equal(t, map[string]fs.FileMode{"data": fs.ModeDir}, readdirNames(t, plain, "/"))
}

func TestRootValidation(t *testing.T) {
	for _, c := range []struct{ dirs, files []string }{
		{dirs: []string{"data"}},
		{dirs: []string{"/"}},
		{dirs: []string{""}},
		{dirs: []string{"/a/../b"}},
		{dirs: []string{"/a\x00"}},
		{dirs: []string{"/a"}, files: []string{"/a"}},
		{dirs: []string{"/a/b"}, files: []string{"/a"}},
		{dirs: []string{"/x"}, files: []string{"/f", "/f"}},
	} {
		_, err := RootWithFiles(c.dirs, c.files)
		require.Error(t, err, "%v %v", c.dirs, c.files)
	}
	_, err := Root([]string{"/a", "/a", "/a/b"})
	require.NoError(t, err, "repeated and nested directory mounts are fine")
}
