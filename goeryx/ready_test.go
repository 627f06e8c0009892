package goeryx

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readyRuntime is a runtime whose pool has 2 interpreters (the default is none), sharing
// runtimeForTest's cache.
var readyRuntime = sync.OnceValues(func() (*Runtime, error) {
	two := 2
	return OpenRuntime(os.Getenv("GOERYX_RUNTIME_DIR"), RuntimeOptions{
		CacheDir: filepath.Join(os.TempDir(), "goeryx-go-test-cache"), ReadyInterpreters: &two})
})

func readyRuntimeForTest(t *testing.T) *Runtime {
	t.Helper()
	runtimeForTest(t) // skips without a runtime; builds the cache
	rt, err := readyRuntime()
	require.NoError(t, err)
	return rt
}

// waitReady waits until rt's pool has n interpreters ready.
func waitReady(t *testing.T, rt *Runtime, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return rt.ReadyStats().Ready >= n }, 20*time.Second, time.Millisecond,
		"the pool never held %d ready interpreters: %+v", n, rt.ReadyStats())
}

func TestReadySandboxRunsStartOnReadyInterpreters(t *testing.T) {
	rt := readyRuntimeForTest(t)
	mem := int64(300 << 20)
	cfg := &Config{Limits: Limits{MaxMemoryBytes: &mem}}
	run := func(code string) *Result {
		sb, err := rt.NewSandbox(cfg, nil, nil)
		require.NoError(t, err)
		defer sb.Close()
		res, err := sb.Execute(context.Background(), code)
		require.NoError(t, err)
		return res
	}
	run("print(1)") // the pool now refills for this configuration
	waitReady(t, rt, 2)
	before := rt.ReadyStats()
	// A run leaves state everywhere it can; the next run, on another ready interpreter, sees
	// none of it.
	res := run("import os, sys\nx = 41\nsys.modules['leak'] = 1\nopen('/scratch/f', 'w').write('s')\n" +
		"open('/data/f', 'w').write('d')\nos.environ['LEAK'] = '1'\nprint(os.getcwd(), x + 1)")
	require.Equal(t, "/scratch 42", res.Stdout)
	res = run("import os, sys\nprint('x' in globals(), 'leak' in sys.modules, os.path.exists('/scratch/f'), " +
		"os.path.exists('/data/f'), 'LEAK' in os.environ, os.getcwd(), os.environ['HOME'])")
	require.Equal(t, "False False False False False /scratch /scratch", res.Stdout)
	after := rt.ReadyStats()
	require.Equal(t, before.Hits+2, after.Hits, "both runs should have started on ready interpreters: %+v", after)
	waitReady(t, rt, 2)
}

func TestReadyInterpretersAreNotSharedAcrossConfigurations(t *testing.T) {
	rt := readyRuntimeForTest(t)
	mem := int64(256 << 20)
	a := &Config{Limits: Limits{MaxMemoryBytes: &mem}, ResultVariable: "answer"}
	b := &Config{Limits: Limits{MaxMemoryBytes: &mem}}
	exec := func(cfg *Config) *Result {
		sb, err := rt.NewSandbox(cfg, nil, nil)
		require.NoError(t, err)
		defer sb.Close()
		res, err := sb.Execute(context.Background(), "answer = 42\nresult = 7")
		require.NoError(t, err)
		return res
	}
	exec(a)
	waitReady(t, rt, 2)
	res := exec(a)
	require.NotNil(t, res.ResultJSON)
	require.Equal(t, "42", *res.ResultJSON)
	// b's configuration differs (its result variable): it must not run on a's interpreters.
	h := rt.ReadyStats().Hits
	res = exec(b)
	require.NotNil(t, res.ResultJSON)
	require.Equal(t, "7", *res.ResultJSON)
	require.Equal(t, h, rt.ReadyStats().Hits, "b ran on an interpreter configured for a")
	waitReady(t, rt, 2)
	res = exec(b)
	require.Equal(t, "7", *res.ResultJSON)
	require.Equal(t, h+1, rt.ReadyStats().Hits)
}

func TestReadyNotUsedForBoxesWithTheirOwnState(t *testing.T) {
	rt := readyRuntimeForTest(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(dir+"/in.txt", []byte("vol"), 0o644))
	for name, cfg := range map[string]*Config{
		"secrets": {Secrets: []Secret{{Name: "TOKEN", Value: "s3cret", AllowedHosts: []string{"example.com"}}}},
		"volume":  {Volumes: []Volume{{HostPath: dir, GuestPath: "/vol", ReadOnly: true}}},
		"stream":  {StreamStdout: true},
	} {
		t.Run(name, func(t *testing.T) {
			for i := 0; i < 3; i++ {
				h := rt.ReadyStats()
				sb, err := rt.NewSandbox(cfg, nil, nil)
				require.NoError(t, err)
				_, err = sb.Execute(context.Background(), "print(1)")
				require.NoError(t, err)
				sb.Close()
				after := rt.ReadyStats()
				require.Equal(t, h.Hits, after.Hits)
				require.Equal(t, h.Misses, after.Misses, "an ineligible box must not ask the pool")
			}
		})
	}
}

func TestReadyOffAndBadSize(t *testing.T) {
	dir := os.Getenv("GOERYX_RUNTIME_DIR")
	if dir == "" {
		t.Skip("GOERYX_RUNTIME_DIR not set: run ./build.sh, then ./build.sh test")
	}
	cache := filepath.Join(os.TempDir(), "goeryx-go-test-cache") // runtimeForTest's: compiled already
	rt, err := OpenRuntime(dir, RuntimeOptions{CacheDir: cache}) // the default: no pool
	require.NoError(t, err)
	defer rt.Close()
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		res, err := sb.Execute(context.Background(), "print(6*7)")
		require.NoError(t, err)
		require.Equal(t, "42", res.Stdout)
	}
	require.Equal(t, ReadyStats{ImageBytes: rt.ImageBytes()}, rt.ReadyStats())

	bad := MaxReadyInterpreters + 1
	_, err = OpenRuntime(dir, RuntimeOptions{CacheDir: cache, ReadyInterpreters: &bad})
	require.Error(t, err)
	t.Setenv(ReadyEnv, "many")
	_, err = ReadyFromEnv()
	require.ErrorContains(t, err, ReadyEnv+" must be an integer from 0 to 64")
	t.Setenv(ReadyEnv, "3")
	n, err := ReadyFromEnv()
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

// A runtime closed with interpreters ready (and one being made) releases them all.
func TestReadyRuntimeCloseWithReadyInterpreters(t *testing.T) {
	dir := os.Getenv("GOERYX_RUNTIME_DIR")
	if dir == "" {
		t.Skip("GOERYX_RUNTIME_DIR not set: run ./build.sh, then ./build.sh test")
	}
	four := 4
	rt, err := OpenRuntime(dir, RuntimeOptions{CacheDir: filepath.Join(os.TempDir(), "goeryx-go-test-cache"), ReadyInterpreters: &four})
	require.NoError(t, err)
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	_, err = sb.Execute(context.Background(), "print(1)")
	require.NoError(t, err)
	waitReady(t, rt, 1)
	require.NoError(t, rt.Close())
	require.Equal(t, 0, rt.ReadyStats().Ready)
}
