package vfs

import (
	"fmt"
	"io"
	"math"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

func used(s *Store) int64 {
	_, u, _ := s.Stats()
	return u
}

func TestBudgetExactlyAtCap(t *testing.T) {
	s := NewStore(100)
	fsys := s.FS(Options{})
	f := mustOpen(t, fsys, "f", oRdwr|oCreat)
	defer f.Close()
	n, errno := f.Write(make([]byte, 100))
	require.Zero(t, errno)
	require.Equal(t, 100, n)
	require.Equal(t, int64(100), used(s))

	n, errno = f.Write([]byte{1})
	require.Equal(t, ErrnoNoSpace, errno)
	require.Zero(t, n)
	n, errno = f.Pwrite([]byte{1, 2}, 99)
	require.Equal(t, ErrnoNoSpace, errno, "all or nothing: the first byte would fit")
	require.Zero(t, n)
	st, _ := f.Stat()
	require.Equal(t, int64(100), st.Size, "a failed write changes nothing")
	pos, _ := f.Seek(0, io.SeekCurrent)
	require.Equal(t, int64(100), pos)

	// Overwriting inside the file costs nothing.
	n, errno = f.Pwrite([]byte("abc"), 50)
	require.Zero(t, errno)
	require.Equal(t, 3, n)
	g := mustOpen(t, fsys, "g", oWronly|oCreat)
	_, errno = g.Write([]byte{1})
	require.Equal(t, ErrnoNoSpace, errno)
	require.Zero(t, g.Close())
	require.Equal(t, int64(100), used(s))
}

func TestBudgetSparseWriteDoesNotAllocate(t *testing.T) {
	s := NewStore(64 << 20)
	fsys := s.FS(Options{})
	f := mustOpen(t, fsys, "f", oRdwr|oCreat)
	defer f.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	pos, errno := f.Seek(1<<40, io.SeekStart)
	require.Zero(t, errno)
	require.Equal(t, int64(1<<40), pos)
	_, errno = f.Write([]byte{1})
	require.Equal(t, ErrnoNoSpace, errno)
	_, errno = f.Pwrite([]byte{1}, 1<<40)
	require.Equal(t, ErrnoNoSpace, errno)
	require.Equal(t, ErrnoNoSpace, f.Truncate(1<<40))
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "no allocation for a refused write")
	st, _ := f.Stat()
	require.Zero(t, st.Size)
	require.Zero(t, used(s))

	// Overflowing offsets are refused, not wrapped.
	_, errno = f.Pwrite([]byte("0123456789"), math.MaxInt64-3)
	require.Equal(t, ErrnoNoSpace, errno)
	_, errno = f.Seek(math.MaxInt64, io.SeekStart)
	require.Zero(t, errno)
	_, errno = f.Seek(1, io.SeekCurrent)
	require.Equal(t, experimentalsys.EINVAL, errno)
	_, errno = f.Write([]byte("x"))
	require.Equal(t, ErrnoNoSpace, errno)

	// With a budget that allows it, a far write is charged by logical size but costs one page.
	huge := NewStore(1 << 62)
	h := mustOpen(t, huge.FS(Options{}), "f", oRdwr|oCreat)
	defer h.Close()
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, errno = h.Pwrite([]byte{7}, 1<<40)
	require.Zero(t, errno)
	require.Zero(t, h.Truncate(1<<41))
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20))
	require.Equal(t, int64(1<<41), used(huge))
	buf := make([]byte, 3)
	n, _ := h.Pread(buf, 1<<40-1)
	require.Equal(t, []byte{0, 7, 0}, buf[:n])
}

func TestBudgetTruncate(t *testing.T) {
	s := NewStore(100)
	fsys := s.FS(Options{})
	f := mustOpen(t, fsys, "f", oRdwr|oCreat)
	defer f.Close()
	require.Equal(t, ErrnoNoSpace, f.Truncate(101))
	require.Zero(t, f.Truncate(100))
	require.Equal(t, int64(100), used(s))
	require.Zero(t, f.Truncate(10))
	require.Equal(t, int64(10), used(s))
	require.Zero(t, f.Truncate(0))
	require.Zero(t, used(s))

	// O_TRUNC frees, and so does replacing by rename.
	_, errno := f.Write(make([]byte, 80))
	require.Zero(t, errno)
	g := mustOpen(t, fsys, "f", oWronly|oTrunc)
	require.Zero(t, used(s))
	_, errno = g.Write(make([]byte, 30))
	require.Zero(t, errno)
	require.Zero(t, g.Close())
	require.NoError(t, s.WriteFile("small", make([]byte, 5)))
	require.Equal(t, int64(35), used(s))
	require.Zero(t, f.Close())
	require.Zero(t, fsys.Rename("small", "f"))
	require.Equal(t, int64(5), used(s))
}

// TestBudgetConcurrentWriters hammers one store from guest handles and the host API at once;
// the budget must never be exceeded, and the accounting must match the files at the end.
func TestBudgetConcurrentWriters(t *testing.T) {
	const maxBytes = 50000
	s := NewStore(maxBytes)
	fsys := s.FS(Options{})
	var stop atomic.Bool
	var peak atomic.Int64
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		for !stop.Load() {
			u := used(s)
			if u > peak.Load() {
				peak.Store(u)
			}
		}
	}()

	var wg sync.WaitGroup
	var noSpace atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			name := fmt.Sprintf("w%d", w%4) // two workers per file
			for i := 0; i < 2000; i++ {
				var errno experimentalsys.Errno
				switch rng.Intn(6) {
				case 0, 1:
					f, e := fsys.OpenFile(name, oWronly|oCreat|oAppend, 0o600)
					if e != 0 {
						t.Errorf("open: %v", e)
						return
					}
					_, errno = f.Write(make([]byte, rng.Intn(3000)))
					f.Close()
				case 2:
					f, e := fsys.OpenFile(name, oRdwr|oCreat, 0o600)
					if e != 0 {
						t.Errorf("open: %v", e)
						return
					}
					_, errno = f.Pwrite([]byte{1}, int64(rng.Intn(40000)))
					if rng.Intn(2) == 0 {
						errno = f.Truncate(int64(rng.Intn(20000)))
					}
					f.Close()
				case 3:
					if err := s.WriteFile(name+"-host", make([]byte, rng.Intn(8000))); err != nil {
						errno = ErrnoNoSpace
					}
				case 4:
					_ = fsys.Unlink(name)
				case 5:
					_ = fsys.Rename(name+"-host", name)
				}
				if errno == ErrnoNoSpace {
					noSpace.Add(1)
				} else if errno != 0 {
					t.Errorf("unexpected errno %v", errno)
				}
			}
		}(w)
	}
	wg.Wait()
	stop.Store(true)
	watcher.Wait()

	require.LessOrEqual(t, peak.Load(), int64(maxBytes))
	require.NotZero(t, noSpace.Load(), "the test should have hit the cap")
	var total int64
	names, err := s.List("/")
	require.NoError(t, err)
	for _, n := range names {
		data, err := s.ReadFile(n)
		require.NoError(t, err)
		total += int64(len(data))
	}
	files, u, _ := s.Stats()
	require.Equal(t, total, u, "every handle is closed: used is the sum of the sizes")
	require.Equal(t, len(names), files)
	require.Equal(t, len(names), s.entries)
}
