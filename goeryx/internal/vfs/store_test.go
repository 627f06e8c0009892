package vfs

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestContentMatchesFlatModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var c content
	var model []byte
	for i := 0; i < 3000; i++ {
		switch rng.Intn(4) {
		case 0, 1: // write somewhere around page boundaries
			off := int64(rng.Intn(5*pageSize)) + int64(rng.Intn(3)-1)
			if off < 0 {
				off = 0
			}
			data := make([]byte, rng.Intn(2*pageSize))
			rng.Read(data)
			c.writeAt(data, off)
			if end := int(off) + len(data); end > len(model) {
				model = append(model, make([]byte, end-len(model))...)
			}
			copy(model[off:], data)
		case 2: // truncate up or down
			size := rng.Intn(6 * pageSize)
			c.truncate(int64(size))
			if size < len(model) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-len(model))...)
			}
		case 3: // read a random range
			off := rng.Intn(6 * pageSize)
			buf := bytes.Repeat([]byte{0xAA}, rng.Intn(2*pageSize))
			n := c.readAt(buf, int64(off))
			want := 0
			if off < len(model) {
				want = min(len(buf), len(model)-off)
			}
			require.Equal(t, want, n)
			if n > 0 {
				require.Equal(t, model[off:off+n], buf[:n], "step %d", i)
			}
		}
		require.Equal(t, int64(len(model)), c.size)
	}
	require.Equal(t, model, c.bytes())
}

func TestContentSparseCostsNoMemory(t *testing.T) {
	var c content
	c.writeAt([]byte("x"), 1<<40)
	require.Equal(t, int64(1<<40+1), c.size)
	require.Len(t, c.pages, 1)
	for _, p := range c.pages {
		require.LessOrEqual(t, cap(p), pageSize)
	}
	buf := make([]byte, 4)
	require.Equal(t, 2, c.readAt(buf, 1<<40-1))
	require.Equal(t, []byte{0, 'x'}, buf[:2])
	c.truncate(10)
	require.Empty(t, c.pages)
	// Shrinking then growing never resurrects old bytes.
	c.writeAt([]byte("abcdef"), 0)
	c.truncate(2)
	c.truncate(6)
	require.Equal(t, []byte("ab\x00\x00\x00\x00"), c.bytes())
}

func TestStoreHostAPI(t *testing.T) {
	s := NewStore(1 << 20)
	require.NoError(t, s.WriteFile("a/b/c.txt", []byte("hello")))
	require.NoError(t, s.WriteFile("/top.txt", []byte("top")))

	got, err := s.ReadFile("/a/b/c.txt")
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))
	got[0] = 'H' // a copy
	got, _ = s.ReadFile("a//b/./c.txt")
	require.Equal(t, "hello", string(got))

	names, err := s.List("/")
	require.NoError(t, err)
	require.Equal(t, []string{"a/", "top.txt"}, names)
	names, err = s.List("")
	require.NoError(t, err)
	require.Equal(t, []string{"a/", "top.txt"}, names)
	names, err = s.List("a/b/")
	require.NoError(t, err)
	require.Equal(t, []string{"c.txt"}, names)

	files, used, maxBytes := s.Stats()
	require.Equal(t, 2, files)
	require.Equal(t, int64(8), used)
	require.Equal(t, int64(1<<20), maxBytes)

	// Data passed in is copied.
	data := []byte("mutable")
	require.NoError(t, s.WriteFile("m", data))
	data[0] = 'X'
	got, _ = s.ReadFile("m")
	require.Equal(t, "mutable", string(got))
	require.NoError(t, s.Remove("m"))

	// Empty file.
	require.NoError(t, s.WriteFile("empty", nil))
	got, err = s.ReadFile("empty")
	require.NoError(t, err)
	require.Empty(t, got)
	require.NoError(t, s.Remove("empty"))

	// Remove: files, empty dirs, non-empty dirs.
	err = s.Remove("a/b")
	require.ErrorIs(t, err, syscall.ENOTEMPTY)
	require.NoError(t, s.Remove("a/b/c.txt"))
	require.NoError(t, s.Remove("a/b"))
	require.NoError(t, s.Remove("a/"))
	names, _ = s.List("/")
	require.Equal(t, []string{"top.txt"}, names)
	files, used, _ = s.Stats()
	require.Equal(t, 1, files)
	require.Equal(t, int64(3), used)
}

func TestStoreHostErrors(t *testing.T) {
	s := NewStore(1 << 20)
	require.NoError(t, s.WriteFile("dir/f", []byte("x")))

	cases := []struct {
		name string
		err  error
		want error
	}{
		{"read missing", errOf(s.ReadFile("nope")), syscall.ENOENT},
		{"read missing parent", errOf(s.ReadFile("no/pe")), syscall.ENOENT},
		{"read dir", errOf(s.ReadFile("dir")), syscall.EISDIR},
		{"read through file", errOf(s.ReadFile("dir/f/g")), syscall.ENOTDIR},
		{"read file with slash", errOf(s.ReadFile("dir/f/")), syscall.ENOTDIR},
		{"write over dir", s.WriteFile("dir", []byte("x")), syscall.EISDIR},
		{"write with slash", s.WriteFile("new/", []byte("x")), syscall.EISDIR},
		{"write through file", s.WriteFile("dir/f/g", []byte("x")), syscall.ENOTDIR},
		{"list missing", errOf(s.List("nope")), syscall.ENOENT},
		{"list file", errOf(s.List("dir/f")), syscall.ENOTDIR},
		{"remove missing", s.Remove("nope"), syscall.ENOENT},
		{"remove file with slash", s.Remove("dir/f/"), syscall.ENOTDIR},
		{"remove non-empty", s.Remove("dir"), syscall.ENOTEMPTY},
		{"dotdot", errOf(s.ReadFile("../etc/passwd")), ErrInvalidPath},
		{"inner dotdot", errOf(s.ReadFile("dir/../dir/f")), ErrInvalidPath},
		{"dotdot list", errOf(s.List("..")), ErrInvalidPath},
		{"dotdot write", s.WriteFile("a/../../b", nil), ErrInvalidPath},
		{"dotdot remove", s.Remove("dir/.."), ErrInvalidPath},
		{"nul", errOf(s.ReadFile("dir/f\x00")), ErrInvalidPath},
		{"nul write", s.WriteFile("x\x00y", nil), ErrInvalidPath},
		{"empty read", errOf(s.ReadFile("")), ErrInvalidPath},
		{"root read", errOf(s.ReadFile("/")), ErrInvalidPath},
		{"empty write", s.WriteFile("", nil), ErrInvalidPath},
		{"dot write", s.WriteFile("./", nil), ErrInvalidPath},
		{"root remove", s.Remove("/"), ErrInvalidPath},
		{"long name", s.WriteFile(string(bytes.Repeat([]byte("n"), MaxNameLen+1)), nil), syscall.ENAMETOOLONG},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Error(t, c.err)
			require.ErrorIs(t, c.err, c.want)
			if c.want != ErrInvalidPath {
				require.False(t, errors.Is(c.err, ErrInvalidPath))
				var pe *fs.PathError
				require.ErrorAs(t, c.err, &pe)
			}
		})
	}
	require.ErrorIs(t, errOf(s.ReadFile("nope")), fs.ErrNotExist)
	// Nothing changed.
	names, _ := s.List("/")
	require.Equal(t, []string{"dir/"}, names)
	files, used, _ := s.Stats()
	require.Equal(t, 1, files)
	require.Equal(t, int64(1), used)
}

func errOf[T any](_ T, err error) error { return err }

func TestStoreHostBudget(t *testing.T) {
	s := NewStore(100)
	require.NoError(t, s.WriteFile("a", make([]byte, 60)))
	require.NoError(t, s.WriteFile("b", make([]byte, 40))) // exactly at the cap
	_, used, _ := s.Stats()
	require.Equal(t, int64(100), used)

	// A write that does not fit fails with ENOSPC and leaves the old content.
	err := s.WriteFile("a", bytes.Repeat([]byte("z"), 61))
	require.ErrorIs(t, err, syscall.ENOSPC)
	got, _ := s.ReadFile("a")
	require.Equal(t, make([]byte, 60), got)
	// ... and creates no parents.
	require.ErrorIs(t, s.WriteFile("p/q/r", []byte("x")), syscall.ENOSPC)
	names, _ := s.List("/")
	require.Equal(t, []string{"a", "b"}, names)

	// Replacing with a smaller file frees bytes.
	require.NoError(t, s.WriteFile("a", make([]byte, 10)))
	_, used, _ = s.Stats()
	require.Equal(t, int64(50), used)
	require.NoError(t, s.WriteFile("c", make([]byte, 50)))
	require.ErrorIs(t, s.WriteFile("d", []byte{1}), syscall.ENOSPC)
	require.NoError(t, s.Remove("c"))
	require.NoError(t, s.WriteFile("d", []byte{1}))

	// A zero budget still allows empty files and directories.
	z := NewStore(0)
	require.NoError(t, z.WriteFile("d/e", nil))
	require.ErrorIs(t, z.WriteFile("d/f", []byte{1}), syscall.ENOSPC)
	require.Equal(t, int64(0), NewStore(-5).max)
}

func TestStoreEntryCap(t *testing.T) {
	s := NewStore(1 << 20)
	for i := 0; s.entries < MaxEntries-1; i++ {
		require.NoError(t, s.WriteFile("d/"+itoa(i), nil))
	}
	require.Equal(t, MaxEntries-1, s.entries)
	require.ErrorIs(t, s.WriteFile("x/y", nil), syscall.ENOSPC, "two entries do not fit")
	require.NoError(t, s.WriteFile("x", nil))
	require.ErrorIs(t, s.WriteFile("y", nil), syscall.ENOSPC)
	require.NoError(t, s.WriteFile("x", []byte("replacing needs no entry")))

	fsys := s.FS(Options{})
	_, errno := fsys.OpenFile("new", oCreat|oWronly, 0o600)
	require.Equal(t, ErrnoNoSpace, errno)
	require.Equal(t, ErrnoNoSpace, fsys.Mkdir("newdir", 0o700))
	require.NoError(t, s.Remove("x"))
	require.Zero(t, fsys.Mkdir("newdir", 0o700))
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestHostPath(t *testing.T) {
	for in, want := range map[string][]string{
		"":           nil,
		"/":          nil,
		".":          nil,
		"//a//b/":    {"a", "b"},
		"./a/./b":    {"a", "b"},
		"/a/b/c.txt": {"a", "b", "c.txt"},
		"a b/ü":      {"a b", "ü"},
		"...":        {"..."},
		"..a":        {"..a"},
	} {
		comps, _, err := hostPath(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, comps, in)
	}
	_, dirOnly, _ := hostPath("a/b/")
	require.True(t, dirOnly)
	_, dirOnly, _ = hostPath("/")
	require.False(t, dirOnly)
	for _, bad := range []string{"..", "../a", "a/..", "a/../b", "/..", "a\x00"} {
		_, _, err := hostPath(bad)
		require.ErrorIs(t, err, ErrInvalidPath, bad)
	}
	_, _, err := hostPath(string(bytes.Repeat([]byte("a/"), MaxPathLen)))
	require.ErrorIs(t, err, syscall.ENAMETOOLONG)
}

func TestGuestPath(t *testing.T) {
	for in, want := range map[string][]string{
		"": nil, ".": nil, "/": nil, "a/b": {"a", "b"}, "/a//b/.": {"a", "b"},
		"a/../b": {"b"}, "sub/.": {"sub"},
	} {
		comps, _, errno := guestPath(in)
		require.Zero(t, errno, in)
		assert.Equal(t, want, comps, in)
	}
	for _, bad := range []string{"..", "../x", "a/../../x", "/.."} {
		_, _, errno := guestPath(bad)
		require.NotZero(t, errno, bad)
	}
	_, _, errno := guestPath("x\x00")
	require.NotZero(t, errno)
	_, _, errno = guestPath(string(bytes.Repeat([]byte("n"), MaxNameLen+1)))
	require.NotZero(t, errno)
}
