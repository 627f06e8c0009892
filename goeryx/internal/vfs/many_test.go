package vfs

import (
	"io/fs"
	"sort"

	"fmt"
	"github.com/stretchr/testify/require"
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// createInDir creates n empty files d/f<i> the way a guest loop calling
// os.makedirs(d, exist_ok=True) before each open(..., "w") does: the directory is stat'ed at
// every step. That stat used to count the directory's subdirectories by walking all its
// entries, so filling one directory was quadratic.
func createInDir(tb testing.TB, fsys experimentalsys.FS, d string, n int) {
	for i := range n {
		if _, errno := fsys.Stat(d); errno != 0 {
			tb.Fatalf("stat %s: %v", d, errno)
		}
		f, errno := fsys.OpenFile(fmt.Sprintf("%s/f%06d", d, i), oWronly|oCreat|oExcl, 0o600)
		if errno != 0 {
			tb.Fatalf("create %d: %v", i, errno)
		}
		f.Close()
	}
}

// BenchmarkCreateManyFiles fills one directory of a Store with n files (ns/file should not
// grow with n):
//
//	go test -run XXX -bench CreateManyFiles -benchtime 3x ./goeryx/internal/vfs/
func BenchmarkCreateManyFiles(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				fsys := NewStore(1 << 30).FS(Options{})
				if errno := fsys.Mkdir("d", 0o755); errno != 0 {
					b.Fatal(errno)
				}
				createInDir(b, fsys, "d", n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/file")
		})
	}
}

// TestManyFilesInOneDirectory: a directory of tens of thousands of entries stays correct: its
// link count follows its subdirectories through mkdir, rename and rmdir, and paged listings
// are complete, sorted and stable while the directory changes.
func TestManyFilesInOneDirectory(t *testing.T) {
	const files, dirs = 30000, 50
	s := NewStore(1 << 30)
	fsys := s.FS(Options{})
	require.Zero(t, fsys.Mkdir("d", 0o755))
	require.Zero(t, fsys.Mkdir("e", 0o755))
	createInDir(t, fsys, "d", files)
	for i := range dirs {
		require.Zero(t, fsys.Mkdir(fmt.Sprintf("d/s%02d", i), 0o755))
	}
	nlink := func(p string) uint64 {
		st, errno := fsys.Stat(p)
		require.Zero(t, errno)
		return st.Nlink
	}
	require.Equal(t, uint64(2+dirs), nlink("d"))

	// A paged listing taken while entries are added and removed is the directory as it was
	// at the first page: complete, sorted, with unique inodes and the right types.
	dir := mustOpen(t, fsys, "d", oRdonly|oDir)
	var names []string
	inodes := map[uint64]bool{}
	for page := 0; ; page++ {
		ents, errno := dir.Readdir(997)
		require.Zero(t, errno)
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			names = append(names, e.Name)
			inodes[e.Ino] = true
			require.Equal(t, e.Name[0] == 's', e.Type == fs.ModeDir, e.Name)
		}
		if page == 3 {
			createInDir(t, fsys, "e", 10)
			require.Zero(t, fsys.Unlink("d/f000000"))
			f := mustOpen(t, fsys, "d/late", oWronly|oCreat)
			f.Close()
		}
	}
	dir.Close()
	require.Len(t, names, files+dirs)
	require.Len(t, inodes, files+dirs)
	require.True(t, sort.StringsAreSorted(names))

	require.Zero(t, fsys.Rename("d/s00", "e/s00")) // to another directory
	require.Equal(t, uint64(2+dirs-1), nlink("d"))
	require.Equal(t, uint64(3), nlink("e"))
	require.Zero(t, fsys.Rename("d/s01", "d/s02")) // replaces an empty directory
	require.Equal(t, uint64(2+dirs-2), nlink("d"))
	require.Zero(t, fsys.Rmdir("d/s03"))
	require.Equal(t, uint64(2+dirs-3), nlink("d"))
	require.Zero(t, fsys.Rename("d/f000001", "e/moved")) // files do not count
	require.Equal(t, uint64(2+dirs-3), nlink("d"))
	require.Equal(t, uint64(3), nlink("e"))
	require.NoError(t, s.WriteFile("d/new/deep/file", nil)) // the host API makes directories too
	require.Equal(t, uint64(2+dirs-2), nlink("d"))
	require.Equal(t, uint64(3), nlink("d/new"))

	for i := 2; i < files; i += 2 {
		require.Zero(t, fsys.Unlink(fmt.Sprintf("d/f%06d", i)))
	}
	listed, err := s.List("d")
	require.NoError(t, err)
	var want []string
	for i := 3; i < files; i += 2 {
		want = append(want, fmt.Sprintf("f%06d", i))
	}
	want = append(want, "late", "new/")
	for i := 4; i < dirs; i++ {
		want = append(want, fmt.Sprintf("s%02d/", i))
	}
	want = append(want, "s02/")
	sort.Strings(want)
	require.Equal(t, want, listed)
	n, _, _ := s.Stats()
	require.Equal(t, (files-2)/2+1+10+1+1, n) // d: odd files and late; e: 10 files and moved; new/deep/file
}
