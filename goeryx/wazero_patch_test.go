package goeryx

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The effects of third_party/wazero/wazero-v1.12.0.patch. The build selects the patched wazero
// with GOFLAGS=-modfile=build/go.wazero.mod (third_party/wazero/apply.sh); a plain `go test`
// builds with pristine wazero and skips these.

func requireWazeroPatch(t *testing.T) {
	if !strings.Contains(os.Getenv("GOFLAGS"), "go.wazero.mod") {
		t.Skip("pristine wazero: GOFLAGS does not select build/go.wazero.mod (third_party/wazero/apply.sh)")
	}
}

// testModule returns a module of n functions () -> i32; with signExt, the first one uses
// i32.extend8_s, an instruction of wasm 2.0 (the sign-extension feature).
func testModule(n int, signExt bool) []byte {
	uleb := func(b []byte, v uint64) []byte {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v != 0 {
				b = append(b, c|0x80)
			} else {
				return append(b, c)
			}
		}
	}
	section := func(m []byte, id byte, payload []byte) []byte {
		return append(uleb(append(m, id), uint64(len(payload))), payload...)
	}
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = section(m, 1, []byte{1, 0x60, 0, 1, 0x7f})
	funcs := uleb(nil, uint64(n))
	for range n {
		funcs = append(funcs, 0)
	}
	m = section(m, 3, funcs)
	m = section(m, 7, []byte{1, 1, 'f', 0, 0})
	code := uleb(nil, uint64(n))
	for i := range n {
		body := []byte{0, 0x41, byte(i % 64)} // no locals; i32.const
		if signExt && i == 0 {
			body = append(body, 0xc0) // i32.extend8_s
		}
		body = append(body, 0x0b)
		code = append(uleb(code, uint64(len(body))), body...)
	}
	return section(m, 10, code)
}

func compileWithCache(t *testing.T, dir string, features api.CoreFeatures, wasm []byte) error {
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	require.NoError(t, err)
	defer cache.Close(ctx)
	cfg := wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache).WithCoreFeatures(features)
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	defer r.Close(ctx)
	_, err = r.CompileModule(ctx, wasm)
	return err
}

// readSyscalls is this process's count of read system calls so far.
func readSyscalls(t *testing.T) int {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "syscr: "); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			return n
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}

// TestWazeroPatchBufferedCacheReads: loading compiled code from the file cache does not cost a
// read system call per function (pristine wazero reads each function's offset separately).
func TestWazeroPatchBufferedCacheReads(t *testing.T) {
	requireWazeroPatch(t)
	const n = 5000
	wasm := testModule(n, false)
	dir := t.TempDir()
	require.NoError(t, compileWithCache(t, dir, api.CoreFeaturesV2, wasm))
	before := readSyscalls(t)
	require.NoError(t, compileWithCache(t, dir, api.CoreFeaturesV2, wasm))
	reads := readSyscalls(t) - before
	t.Logf("%d read system calls to load %d functions", reads, n)
	require.Less(t, reads, n/10)
}

// TestWazeroPatchNoRevalidationOnCacheHit: with compiled code in the cache, CompileModule does
// not validate the function bodies again; without, it does. The probe is a body valid only with
// wasm 2.0 features, compiled with them, then looked up by a runtime without them.
func TestWazeroPatchNoRevalidationOnCacheHit(t *testing.T) {
	requireWazeroPatch(t)
	wasm := testModule(3, true)
	require.ErrorContains(t, compileWithCache(t, t.TempDir(), api.CoreFeaturesV1, wasm), "sign-extension",
		"a module compiled from scratch is validated")
	dir := t.TempDir()
	require.NoError(t, compileWithCache(t, dir, api.CoreFeaturesV2, wasm))
	require.NoError(t, compileWithCache(t, dir, api.CoreFeaturesV1, wasm),
		"a cache hit validated the function bodies again")
}
