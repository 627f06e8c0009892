package vfs

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// withinSeconds runs fn and fails the test if it has not returned after d (a hang in a host
// call must fail the test, not the test binary's timeout).
func withinSeconds(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", what, d)
	}
}

// TestHostDirRefusesSpecialFiles: a FIFO, a socket or a symlink to one in a volume is refused
// with EACCES, at once. Opening a FIFO for reading used to block the host call until a writer
// appeared, past the run's deadline and Close.
func TestHostDirRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o666))
	require.NoError(t, os.Symlink("fifo", filepath.Join(dir, "link-to-fifo")))
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plain"), []byte("ok"), 0o644))

	v, err := HostDir(dir, Options{})
	require.NoError(t, err)
	defer v.Close()
	for _, name := range []string{"fifo", "link-to-fifo", "sock"} {
		for _, flag := range []experimentalsys.Oflag{oRdonly, oWronly, oRdwr, oWronly | oCreat, oRdwr | oCreat | oTrunc, oRdonly | oDir} {
			withinSeconds(t, 5*time.Second, "open "+name, func() {
				f, errno := v.OpenFile(name, flag, 0o600)
				if f != nil {
					f.Close()
				}
				if flag&oDir != 0 {
					require.Contains(t, []experimentalsys.Errno{experimentalsys.EACCES, experimentalsys.ENOTDIR}, errno, "%s %v", name, flag)
				} else {
					require.Equal(t, experimentalsys.EACCES, errno, "%s %v", name, flag)
				}
			})
		}
		// Stat, listing and removal do not open the file and still work.
		st, errno := v.Stat(name)
		require.Zero(t, errno)
		require.NotZero(t, st.Mode&(os.ModeNamedPipe|os.ModeSocket), name)
	}
	// An exclusive create of an existing special file is EEXIST, as for any existing file.
	_, errno := v.OpenFile("fifo", oWronly|oCreat|oExcl, 0o600)
	require.Equal(t, experimentalsys.EEXIST, errno)
	// The FIFO never saw an opener: a writer opening it without blocking finds no reader.
	_, err = os.OpenFile(filepath.Join(dir, "fifo"), os.O_WRONLY|syscall.O_NONBLOCK, 0)
	require.ErrorIs(t, err, syscall.ENXIO)

	f := mustOpen(t, v, "plain", oRdonly)
	require.Equal(t, "ok", readAll(t, f))
	f.Close()
	root := mustOpen(t, v, ".", oRdonly|oDir)
	names := map[string]bool{}
	for {
		ents, errno := root.Readdir(10)
		require.Zero(t, errno)
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			names[e.Name] = true
		}
	}
	root.Close()
	require.Equal(t, map[string]bool{"fifo": true, "link-to-fifo": true, "sock": true, "plain": true}, names)
	require.Zero(t, v.Unlink("fifo"))
}

// TestVolumeOfSpecialFileRefused: a FIFO as the host path of a volume is refused when the
// volume is opened, without blocking.
func TestVolumeOfSpecialFileRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, syscall.Mkfifo(p, 0o666))
	for _, ro := range []bool{true, false} {
		withinSeconds(t, 5*time.Second, "OpenVolume", func() {
			_, err := OpenVolume(p, Options{ReadOnly: ro})
			require.ErrorContains(t, err, "not a regular file")
		})
	}
}

// pollCounter is an Options.Poll that counts its calls and panics at call panicAt (0: never),
// as the engine does to stop a guest.
type pollCounter struct {
	calls, panicAt int
}

type stopPanic struct{}

func (p *pollCounter) poll() {
	p.calls++
	if p.calls == p.panicAt {
		panic(stopPanic{})
	}
}

// expectStop runs fn and requires it to panic with the pollCounter's panic.
func expectStop(t *testing.T, fn func()) {
	t.Helper()
	defer func() {
		require.Equal(t, stopPanic{}, recover())
	}()
	fn()
}

// TestLargeIOPolls: every read and write polls, and a large one polls between chunks of at
// most ioChunk bytes, on every kind of view, so the engine can stop a guest in the middle of
// one host call that moves gigabytes. A poll that panics stops the operation there.
func TestLargeIOPolls(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*ioChunk+100)/16)
	wantPolls := 4 // ceil(len(data) / ioChunk)
	require.Equal(t, wantPolls, (len(data)+ioChunk-1)/ioChunk)

	dir := t.TempDir()
	hostDir, err := HostDir(dir, Options{})
	require.NoError(t, err)
	defer hostDir.Close()
	single := filepath.Join(t.TempDir(), "single")
	require.NoError(t, os.WriteFile(single, nil, 0o644))
	hostFile, err := HostFile(single, Options{})
	require.NoError(t, err)
	defer hostFile.Close()

	views := map[string]func(poll func()) (experimentalsys.FS, string){
		"store": func(poll func()) (experimentalsys.FS, string) {
			return NewStore(1 << 30).FS(Options{Poll: poll}), "f"
		},
		"hostdir":  func(poll func()) (experimentalsys.FS, string) { return hostDir.View(poll), "f" },
		"hostfile": func(poll func()) (experimentalsys.FS, string) { return hostFile.View(poll), "." },
	}
	for name, view := range views {
		t.Run(name, func(t *testing.T) {
			p := &pollCounter{}
			fsys, path := view(p.poll)
			f := mustOpen(t, fsys, path, oRdwr|oCreat|oTrunc)
			defer f.Close()

			n, errno := f.Write(data)
			require.Zero(t, errno)
			require.Equal(t, len(data), n)
			require.Equal(t, wantPolls, p.calls, "write")

			p.calls = 0
			_, errno = f.Seek(0, 0)
			require.Zero(t, errno)
			got := make([]byte, len(data)+10)
			n, errno = f.Read(got)
			require.Zero(t, errno)
			require.Equal(t, len(data), n)
			require.Equal(t, data, got[:n])
			require.Equal(t, wantPolls, p.calls, "read")

			p.calls = 0
			n, errno = f.Pread(got[:len(data)], 0)
			require.Zero(t, errno)
			require.Equal(t, len(data), n)
			n, errno = f.Pwrite(data, 0)
			require.Zero(t, errno)
			require.Equal(t, len(data), n)
			require.Equal(t, 2*wantPolls, p.calls, "pread+pwrite")

			p.calls = 0
			_, errno = f.Write([]byte("small"))
			require.Zero(t, errno)
			require.Equal(t, 1, p.calls, "a small write polls once")

			// A poll that stops the guest during the second chunk of a write: the panic
			// reaches the caller (wazero turns it into the guest call's error), nothing more
			// is written, and the file stays usable (its locks were released).
			require.Zero(t, f.Truncate(0))
			_, errno = f.Seek(0, 0)
			require.Zero(t, errno)
			p.calls, p.panicAt = 0, 2
			expectStop(t, func() { f.Write(data) })
			st, errno := f.Stat()
			require.Zero(t, errno)
			require.Equal(t, int64(ioChunk), st.Size)
			p.panicAt = 0
			n, errno = f.Pwrite([]byte("x"), 0)
			require.Zero(t, errno)
			require.Equal(t, 1, n)
		})
	}
}

// TestStoreWriteStoppedKeepsBudgetConsistent: a store write stopped between chunks charges
// exactly what it wrote, and the store's lock is free again.
func TestStoreWriteStoppedKeepsBudgetConsistent(t *testing.T) {
	s := NewStore(1 << 30)
	p := &pollCounter{panicAt: 3}
	f := mustOpen(t, s.FS(Options{Poll: p.poll}), "f", oWronly|oCreat)
	expectStop(t, func() { f.Write(make([]byte, 5*ioChunk)) })
	files, usedBytes, _ := s.Stats()
	require.Equal(t, 1, files)
	require.Equal(t, int64(2*ioChunk), usedBytes)
	got, err := s.ReadFile("f")
	require.NoError(t, err)
	require.Len(t, got, 2*ioChunk)
	f.Close()
	require.NoError(t, s.Remove("f"))
	_, usedBytes, _ = s.Stats()
	require.Zero(t, usedBytes)
}
