package goeryx

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// executeWithin runs sb.Execute on another goroutine and fails the test when it has not
// returned after limit: a host call that blocks must fail the test, not hang it.
func executeWithin(t *testing.T, limit time.Duration, exec func() (*Result, error)) (*Result, error, time.Duration) {
	t.Helper()
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		res, err := exec()
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("the run was still going after %v", limit)
		return nil, nil, 0
	}
}

// TestVolumeFIFORefused: opening a FIFO in a volume used to block the host call until a writer
// appeared, past the timeout and Close. It fails at once with PermissionError now.
func TestVolumeFIFORefused(t *testing.T) {
	rt := runtimeForTest(t)
	dir := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "p"), 0o666))
	sb, err := rt.NewSandbox(&Config{Limits: Limits{ExecutionTimeoutMS: i64(2000)},
		Volumes: []Volume{{HostPath: dir, GuestPath: "/mnt/v"}}}, nil, nil)
	require.NoError(t, err)
	defer sb.Close()
	res, err, _ := executeWithin(t, 10*time.Second, func() (*Result, error) {
		return sb.Execute(context.Background(), `
import errno, os, stat
assert 'p' in os.listdir('/mnt/v')  # stat and listing do not open it
for mode in ('r', 'w', 'a', 'r+'):
    try:
        open('/mnt/v/p', mode)
    except PermissionError as e:
        assert e.errno == errno.EACCES
    else:
        raise SystemExit('opened the FIFO with mode ' + mode)
print('refused')`)
	})
	require.NoError(t, err)
	require.Equal(t, "refused", res.Stdout)

	// A FIFO as the volume's own host path is refused when the sandbox is made.
	_, err = rt.NewSandbox(&Config{Volumes: []Volume{{HostPath: filepath.Join(dir, "p"), GuestPath: "/mnt/p"}}}, nil, nil)
	requireKindMessage(t, err, KindInitialization, "not a regular file")
}

// A loop of large writes passes few bytecode boundaries, so the guest's own ticks came
// seconds apart and the timeout was overrun by seconds. Every write now polls the run.
const writeLoop = `
buf = b'x' * (64 << 20)
with open(PATH, 'wb') as f:
    while True:
        f.seek(0)
        f.write(buf)
`

func TestLargeWritesMeetTheDeadline(t *testing.T) {
	rt := runtimeForTest(t)
	dir := t.TempDir()
	for name, cfg := range map[string]struct {
		cfg   *Config
		store *VFS
		path  string
	}{
		"volume": {&Config{Volumes: []Volume{{HostPath: dir, GuestPath: "/mnt/v"}}}, nil, "/mnt/v/big"},
		"store":  {&Config{}, NewVFS(1 << 30), "/data/big"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.cfg.Limits.ExecutionTimeoutMS = i64(1000)
			sb, err := rt.NewSandbox(cfg.cfg, cfg.store, nil)
			require.NoError(t, err)
			defer sb.Close()
			_, err, took := executeWithin(t, 60*time.Second, func() (*Result, error) {
				return sb.Execute(context.Background(), "PATH = '"+cfg.path+"'\n"+writeLoop)
			})
			requireKindMessage(t, err, KindTimeout, "execution timed out after 1000 ms")
			require.Less(t, took, 2500*time.Millisecond, "a 1 s timeout (measured: 1.0 s; 7-15 s before writes polled)")
		})
	}
}

// TestCloseEndsLargeWrites: Close from another goroutine stops a run busy writing a volume.
func TestCloseEndsLargeWrites(t *testing.T) {
	rt := runtimeForTest(t)
	dir := t.TempDir()
	s, err := rt.NewSession(context.Background(), &Config{Volumes: []Volume{{HostPath: dir, GuestPath: "/mnt/v"}}}, nil, nil)
	require.NoError(t, err)
	go func() {
		time.Sleep(500 * time.Millisecond)
		s.Close()
	}()
	_, err, took := executeWithin(t, 60*time.Second, func() (*Result, error) {
		return s.Execute(context.Background(), "PATH = '/mnt/v/big'\n"+writeLoop)
	})
	requireKindMessage(t, err, KindCancelled, "closed during execution")
	require.Less(t, took, 2500*time.Millisecond, "closed after 0.5 s (measured: 0.5 s; 19 s before writes polled)")
	st, err := os.Stat(filepath.Join(dir, "big"))
	require.NoError(t, err)
	require.LessOrEqual(t, st.Size(), int64(64<<20))
}
