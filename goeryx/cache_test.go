package goeryx

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goeryx/goeryx/goeryx/internal/instrument"
)

// ---- the cache files (no guest runtime needed) ----

// kindTest is a kind whose payloads are not checked.
const kindTest cacheKind = 100

func init() {
	cacheKindNames[kindTest] = "test"
	cacheMaxPayload[kindTest] = 1 << 30
}

func testPayload(n int) []byte {
	p := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range p {
		if (i/4096)%3 != 1 { // every third page stays zero: a hole in the file
			p[i] = byte(r.Uint32())
		}
	}
	return p
}

func TestCacheRoundTrip(t *testing.T) {
	c := openDiskCache(t.TempDir(), "")
	key := newCacheKey("test", "round trip")
	_, err := c.load(kindTest, key)
	require.ErrorIs(t, err, errCacheMiss)
	for _, n := range []int{0, 1, 4096, 3*4096 + 17, 1 << 20} {
		payload := testPayload(n)
		require.NoError(t, c.store(kindTest, key, payload))
		got, err := c.load(kindTest, key)
		require.NoError(t, err, "%d bytes", n)
		require.True(t, bytes.Equal(payload, got), "%d bytes", n)
		fi, err := os.Stat(c.path(kindTest, key))
		require.NoError(t, err)
		require.Equal(t, int64(cacheHeaderSize+n), fi.Size())
	}
	// A key, or a kind, is not another's.
	_, err = c.load(kindModule, key)
	require.ErrorIs(t, err, errCacheMiss)
	other := newCacheKey("test", "other")
	require.NoError(t, os.Rename(c.path(kindTest, key), c.path(kindTest, other)))
	_, err = c.load(kindTest, other)
	require.ErrorContains(t, err, "another key")
	// Parts are length-prefixed: moving a boundary changes the key.
	require.NotEqual(t, newCacheKey("ab", "c"), newCacheKey("a", "bc"))
	// No cache directory: nothing is cached, nothing fails.
	var none *diskCache
	require.NoError(t, none.store(kindTest, key, []byte("x")))
	_, err = none.load(kindTest, key)
	require.ErrorIs(t, err, errCacheMiss)
}

func TestCacheSparse(t *testing.T) {
	c := openDiskCache(t.TempDir(), "")
	key := newCacheKey("sparse")
	payload := make([]byte, 8<<20)
	copy(payload[4<<20:], "not zero")
	require.NoError(t, c.store(kindTest, key, payload))
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(c.path(kindTest, key), &st))
	if st.Blocks*512 > 1<<20 {
		t.Logf("the file system does not keep holes (%d bytes allocated)", st.Blocks*512)
	}
	got, err := c.load(kindTest, key)
	require.NoError(t, err)
	require.True(t, bytes.Equal(payload, got))
}

func TestCacheDamagedFiles(t *testing.T) {
	c := openDiskCache(t.TempDir(), "")
	key := newCacheKey("damaged")
	payload := testPayload(5 * 4096)
	path := c.path(kindTest, key)
	damage := map[string]func(f *os.File) error{
		"empty":             func(f *os.File) error { return f.Truncate(0) },
		"cut in the header": func(f *os.File) error { return f.Truncate(100) },
		"cut in the payload": func(f *os.File) error {
			return f.Truncate(cacheHeaderSize + 4096)
		},
		"longer": func(f *os.File) error {
			_, err := f.WriteAt([]byte{1}, cacheHeaderSize+int64(len(payload)))
			return err
		},
		"payload byte": func(f *os.File) error { return flipByte(f, cacheHeaderSize+3*4096+5) },
		"magic":        func(f *os.File) error { return flipByte(f, 2) },
		"length":       func(f *os.File) error { return flipByte(f, 50) },
		"checksum":     func(f *os.File) error { return flipByte(f, 57) },
		"format": func(f *os.File) error {
			// A well-formed header of another format version.
			var hdr [64]byte
			if _, err := f.ReadAt(hdr[:], 0); err != nil {
				return err
			}
			hdr[8]++
			putHeaderChecksum(hdr[:])
			_, err := f.WriteAt(hdr[:], 0)
			return err
		},
		"garbage": func(f *os.File) error {
			_, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, cacheHeaderSize), 0)
			return err
		},
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, c.store(kindTest, key, payload))
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			require.NoError(t, err)
			require.NoError(t, fn(f))
			require.NoError(t, f.Close())
			_, err = c.load(kindTest, key)
			require.Error(t, err)
			require.NotErrorIs(t, err, errCacheMiss)
			// Storing again repairs it.
			require.NoError(t, c.store(kindTest, key, payload))
			got, err := c.load(kindTest, key)
			require.NoError(t, err)
			require.True(t, bytes.Equal(payload, got))
		})
	}
	// A length beyond what the kind allows is refused before allocating it.
	require.NoError(t, c.store(kindStamp, key, []byte("x")))
	f, err := os.OpenFile(c.path(kindStamp, key), os.O_RDWR, 0)
	require.NoError(t, err)
	var hdr [64]byte
	_, err = f.ReadAt(hdr[:], 0)
	require.NoError(t, err)
	hdr[53] = 1 // length 2^40 + 1
	putHeaderChecksum(hdr[:])
	_, err = f.WriteAt(hdr[:], 0)
	require.NoError(t, err)
	f.Close()
	_, err = c.load(kindStamp, key)
	require.ErrorContains(t, err, "payload")
}

func flipByte(f *os.File, off int64) error {
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0x40
	_, err := f.WriteAt(b, off)
	return err
}

func putHeaderChecksum(hdr []byte) {
	sum := crc32.Checksum(hdr[:60], castagnoli)
	hdr[60], hdr[61], hdr[62], hdr[63] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)
}

// TestCacheConcurrentWriters: writers of one key and readers never see a partial file. (Few
// writes: ext4 writes a file back before a rename replaces another, ~0.1 s each.)
func TestCacheConcurrentWriters(t *testing.T) {
	c := openDiskCache(t.TempDir(), "")
	key := newCacheKey("concurrent")
	payload := testPayload(256 << 10)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 3; j++ {
				if err := c.store(kindTest, key, payload); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				got, err := c.load(kindTest, key)
				if err == errCacheMiss {
					continue
				}
				if err != nil {
					errs <- err
				} else if !bytes.Equal(got, payload) {
					errs <- fmt.Errorf("a reader got different bytes")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	names, _ := filepath.Glob(filepath.Join(c.dir, "*.tmp"))
	require.Empty(t, names, "temporary files left behind")
}

func TestCachePrune(t *testing.T) {
	c := openDiskCache(t.TempDir(), "")
	old := time.Now().Add(-48 * time.Hour)
	for i := 0; i < 6; i++ {
		key := newCacheKey("prune", fmt.Sprint(i))
		require.NoError(t, c.store(kindTest, key, []byte{byte(i)}))
		mtime := old.Add(time.Duration(i) * time.Hour) // key 5 is the most recently used
		require.NoError(t, os.Chtimes(c.path(kindTest, key), mtime, mtime))
	}
	require.NoError(t, c.store(kindModule, newCacheKey("other kind"), []byte{1}))
	abandoned := filepath.Join(c.dir, "test-abandoned.tmp")
	require.NoError(t, os.WriteFile(abandoned, nil, 0o644))
	require.NoError(t, os.Chtimes(abandoned, old, old))
	fresh := filepath.Join(c.dir, "test-being-written.tmp")
	require.NoError(t, os.WriteFile(fresh, nil, 0o644))

	newest := newCacheKey("prune", "new")
	require.NoError(t, c.store(kindTest, newest, []byte{9}))
	images, _ := filepath.Glob(filepath.Join(c.dir, "test-*.bin"))
	want := []string{c.path(kindTest, newest)}
	for _, i := range []int{4, 5} {
		want = append(want, c.path(kindTest, newCacheKey("prune", fmt.Sprint(i))))
	}
	require.ElementsMatch(t, want, images)
	require.FileExists(t, c.path(kindModule, newCacheKey("other kind")))
	require.NoFileExists(t, abandoned)
	require.FileExists(t, fresh)

	// A hit marks the file used, so that it survives the next prune.
	key0 := newCacheKey("prune", "0")
	require.NoError(t, c.store(kindTest, key0, []byte{0}))
	require.NoError(t, os.Chtimes(c.path(kindTest, key0), old, old))
	_, err := c.load(kindTest, key0)
	require.NoError(t, err)
	fi, err := os.Stat(c.path(kindTest, key0))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), fi.ModTime(), time.Minute)
}

func TestCacheLock(t *testing.T) {
	c := openDiskCache(t.TempDir(), "")
	key := newCacheKey("lock")
	unlock := c.lock(key, t.Logf)
	acquired := make(chan struct{})
	go func() {
		defer close(acquired)
		c.lock(key, t.Logf)()
	}()
	select {
	case <-acquired:
		t.Fatal("the lock was taken twice")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case <-acquired:
	case <-time.After(5 * time.Second):
		t.Fatal("the lock was not released")
	}
	// Another key is another lock.
	c.lock(key, t.Logf)()
	done := make(chan struct{})
	u := c.lock(key, t.Logf)
	go func() {
		c.lock(newCacheKey("other"), t.Logf)()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a lock on another key waited")
	}
	u()
}

func TestSourceHash(t *testing.T) {
	a := sourceHash("internal/instrument", "internal/abi")
	require.Equal(t, a, sourceHash("internal/instrument", "internal/abi"))
	require.NotEqual(t, a, sourceHash("internal/instrument"))
	// Test files do not count: editing a test does not invalidate the cache.
	names := []string{}
	entries, err := engineSources.ReadDir("internal/instrument")
	require.NoError(t, err)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Contains(t, names, "instrument.go")
}

// ---- OpenRuntime with the cache (needs the guest runtime) ----

// warmCacheDir returns a new cache directory holding a copy of the test runtime's wazero
// compilation cache, so that tests of the start-up cache do not each compile the guest (they
// still instrument it and boot an interpreter).
func warmCacheDir(t *testing.T) string {
	t.Helper()
	runtimeForTest(t) // compiles into testCacheDir once
	dst := t.TempDir()
	srcs, _ := filepath.Glob(filepath.Join(testCacheDir(), "wazero-*"))
	for _, src := range srcs {
		require.NoError(t, filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(testCacheDir(), path)
			if fi.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			if strings.HasSuffix(path, ".tmp") {
				return nil
			}
			return copyFile(path, filepath.Join(dst, rel))
		}))
	}
	return dst
}

func testCacheDir() string { return filepath.Join(os.TempDir(), "goeryx-go-test-cache") }

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func runtimeDirForTest(t *testing.T) string {
	dir := os.Getenv("GOERYX_RUNTIME_DIR")
	if dir == "" {
		t.Skip("GOERYX_RUNTIME_DIR not set: run ./build.sh, then ./build.sh test")
	}
	return dir
}

func openForTest(t *testing.T, cache string, logf func(string, ...any)) (*Runtime, *startupInfo) {
	t.Helper()
	rt, s, err := openRuntime(runtimeDirForTest(t), RuntimeOptions{CacheDir: cache, Logf: logf})
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	return rt, s
}

func requirePrints(t *testing.T, rt *Runtime) {
	t.Helper()
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	res, err := sb.Execute(context.Background(), "import json\nprint(json.dumps([6*7]))")
	require.NoError(t, err)
	require.Equal(t, "[42]", res.Stdout)
}

type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestOpenRuntimeCacheHitAndMiss(t *testing.T) {
	cache := warmCacheDir(t)
	rt1, s1 := openForTest(t, cache, nil)
	require.False(t, s1.moduleCached)
	require.False(t, s1.imageCached)
	require.False(t, s1.stdlibStamped)
	requirePrints(t, rt1)

	rt2, s2 := openForTest(t, cache, nil)
	require.True(t, s2.moduleCached, s2.String())
	require.True(t, s2.imageCached, s2.String())
	require.True(t, s2.stdlibStamped, s2.String())
	require.True(t, bytes.Equal(rt1.image, rt2.image))
	requirePrints(t, rt2)

}

func TestOpenRuntimeDamagedCache(t *testing.T) {
	cache := warmCacheDir(t)
	rt, _ := openForTest(t, cache, nil)
	c := openDiskCache(cache, "")
	modKey := moduleCacheKey(&rt.manifest)
	imgKey := imageCacheKey(modKey, &rt.manifest)
	stamps, _ := filepath.Glob(filepath.Join(c.dir, "stamp-*.bin"))
	require.Len(t, stamps, 1)

	// Damage all three files: each is ignored, rebuilt, and the next process finds it again.
	require.NoError(t, os.Truncate(c.path(kindModule, modKey), cacheHeaderSize+1000))
	f, err := os.OpenFile(c.path(kindImage, imgKey), os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, flipByte(f, cacheHeaderSize+12345))
	f.Close()
	require.NoError(t, os.WriteFile(stamps[0], []byte("garbage"), 0o644))

	var log logRecorder
	rt2, s2 := openForTest(t, cache, log.logf)
	require.False(t, s2.moduleCached)
	require.False(t, s2.imageCached)
	require.False(t, s2.stdlibStamped)
	require.Contains(t, log.String(), "damaged cache file")
	requirePrints(t, rt2)

	_, s3 := openForTest(t, cache, nil)
	require.True(t, s3.moduleCached && s3.imageCached && s3.stdlibStamped, s3.String())

	// What no build produces is refused even with a valid checksum.
	require.NoError(t, c.store(kindImage, imgKey, []byte("short")))
	require.NoError(t, c.store(kindModule, modKey, []byte("not wasm")))
	log = logRecorder{}
	rt4, s4 := openForTest(t, cache, log.logf)
	require.False(t, s4.imageCached)
	require.False(t, s4.moduleCached)
	require.Contains(t, log.String(), "not whole wasm pages")
	require.Contains(t, log.String(), "not a wasm module")
	requirePrints(t, rt4)
}

// TestOpenRuntimeStdlibStamp: the stamp vouches for stdlib.zip only while the file is unchanged.
func TestOpenRuntimeStdlibStamp(t *testing.T) {
	src := runtimeDirForTest(t)
	dir := t.TempDir()
	for _, name := range []string{"manifest.json", "python.wasm", "stdlib.zip"} {
		require.NoError(t, copyFile(filepath.Join(src, name), filepath.Join(dir, name)))
	}
	cache := warmCacheDir(t)
	open := func() (*startupInfo, error) {
		rt, s, err := openRuntime(dir, RuntimeOptions{CacheDir: cache})
		if err == nil {
			rt.Close()
		}
		return s, err
	}
	s, err := open()
	require.NoError(t, err)
	require.False(t, s.stdlibStamped)
	s, err = open()
	require.NoError(t, err)
	require.True(t, s.stdlibStamped)

	// Same size and mtime, other content: the ctime gives it away, and the hash refuses it.
	zipPath := filepath.Join(dir, "stdlib.zip")
	fi, err := os.Stat(zipPath)
	require.NoError(t, err)
	f, err := os.OpenFile(zipPath, os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, flipByte(f, fi.Size()/2))
	f.Close()
	require.NoError(t, os.Chtimes(zipPath, fi.ModTime(), fi.ModTime()))
	_, err = open()
	require.ErrorContains(t, err, "does not match the manifest")
}

// TestOpenRuntimeParallel: runtimes opened at once in one process build the image once and all
// work.
func TestOpenRuntimeParallel(t *testing.T) {
	cache := warmCacheDir(t)
	const n = 3
	var wg sync.WaitGroup
	rts := make([]*Runtime, n)
	infos := make([]*startupInfo, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rts[i], infos[i], errs[i] = openRuntime(runtimeDirForTest(t), RuntimeOptions{CacheDir: cache})
		}()
	}
	wg.Wait()
	built := 0
	for i := range n {
		require.NoError(t, errs[i])
		defer rts[i].Close()
		if !infos[i].imageCached {
			built++
		}
		requirePrints(t, rts[i])
	}
	require.Equal(t, 1, built, "the image was built more than once")
}

// TestOpenRuntimeAcrossProcesses: processes started at once on an empty cache build it once.
func TestOpenRuntimeAcrossProcesses(t *testing.T) {
	runtimeDirForTest(t)
	cache := warmCacheDir(t)
	const n = 3
	outs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestOpenRuntimeChild$", "-test.v")
			cmd.Env = append(os.Environ(), "GOERYX_CACHE_TEST_CHILD="+cache)
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(out), err
		}()
	}
	wg.Wait()
	built := 0
	for i := range n {
		require.NoError(t, errs[i], outs[i])
		require.Contains(t, outs[i], "child ok")
		if strings.Contains(outs[i], "image cached false") {
			built++
		}
	}
	require.Equal(t, 1, built, "the image was built more than once:\n%s", strings.Join(outs, "\n"))
}

func TestOpenRuntimeChild(t *testing.T) {
	cache := os.Getenv("GOERYX_CACHE_TEST_CHILD")
	if cache == "" {
		t.Skip("run by TestOpenRuntimeAcrossProcesses")
	}
	rt, s := openForTest(t, cache, t.Logf)
	requirePrints(t, rt)
	fmt.Printf("child ok: image cached %v\n", s.imageCached)
}

// TestOpenRuntimeUnusableCache: a cache directory that cannot be used costs time, not
// correctness.
func TestOpenRuntimeUnusableCache(t *testing.T) {
	cache := warmCacheDir(t)
	require.NoError(t, os.WriteFile(filepath.Join(cache, cacheSubdir), []byte("a file"), 0o644))
	rt, s := openForTest(t, cache, nil)
	require.False(t, s.moduleCached || s.imageCached)
	requirePrints(t, rt)
}

// TestOpenRuntimeDamagedWazeroCache: wazero fails on a compiled-code entry it cannot read;
// OpenRuntime removes it and compiles again. Slow: it compiles the guest.
func TestOpenRuntimeDamagedWazeroCache(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the guest runtime")
	}
	cache := warmCacheDir(t)
	entries, _ := filepath.Glob(filepath.Join(cache, "wazero-*", "*", "*"))
	require.NotEmpty(t, entries)
	for _, e := range entries {
		require.NoError(t, os.Truncate(e, 100))
	}
	var log logRecorder
	rt, _ := openForTest(t, cache, log.logf)
	require.Contains(t, log.String(), "is unusable")
	requirePrints(t, rt)
	entries, _ = filepath.Glob(filepath.Join(cache, "wazero-*", "*", "*"))
	require.NotEmpty(t, entries, "the recompiled code was not cached")
	for _, e := range entries {
		fi, err := os.Stat(e)
		require.NoError(t, err)
		require.Greater(t, fi.Size(), int64(1000))
	}
}

func TestDataSegmentsEncoding(t *testing.T) {
	segs := []instrument.DataSegment{{Offset: 1024, Data: []byte("abc")}, {Offset: 7, Data: []byte{}}, {Offset: 1 << 31, Data: []byte{0, 1}}}
	got, err := decodeDataSegments(encodeDataSegments(segs))
	require.NoError(t, err)
	require.Equal(t, segs, got)
	enc := encodeDataSegments(segs)
	for _, n := range []int{3, 9, len(enc) - 1} {
		_, err := decodeDataSegments(enc[:n])
		require.Error(t, err, "%d bytes", n)
	}
	none, err := decodeDataSegments(nil)
	require.NoError(t, err)
	require.Empty(t, none)
}

// TestOpenRuntimeImageMissModuleHit: an engine change makes a new image key while the module's
// stays: the image is rebuilt with the data segments from the cache, without instrumenting
// python.wasm again (unless they are gone too).
func TestOpenRuntimeImageMissModuleHit(t *testing.T) {
	cache := warmCacheDir(t)
	rt, _ := openForTest(t, cache, nil)
	c := openDiskCache(cache, "")
	modKey := moduleCacheKey(&rt.manifest)
	imgKey := imageCacheKey(modKey, &rt.manifest)

	require.NoError(t, os.Remove(c.path(kindImage, imgKey)))
	rt2, s2 := openForTest(t, cache, nil)
	require.True(t, s2.moduleCached)
	require.False(t, s2.imageCached)
	require.NotContains(t, s2.String(), "instrument")
	requirePrints(t, rt2)

	require.NoError(t, os.Remove(c.path(kindImage, imgKey)))
	require.NoError(t, os.Remove(c.path(kindData, modKey)))
	rt3, s3 := openForTest(t, cache, nil)
	require.True(t, s3.moduleCached)
	require.Contains(t, s3.String(), "instrument")
	requirePrints(t, rt3)
	require.FileExists(t, c.path(kindData, modKey))
}
