package goeryx

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A module with one empty function: wazero compiles it to code and caches that.
var tinyModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: func() -> ()
	0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
	0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section: no locals, end
}

// TestWazeroCacheEntryName checks wazeroCacheEntry against wazero: the file its compilation
// cache writes for a module in goeryx's configuration has exactly that name. A wazero upgrade
// that changes the cache key fails here (and would otherwise silently stop the precompiled
// code from being found).
func TestWazeroCacheEntryName(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	wz, err := newWazero(ctx, dir)
	require.NoError(t, err)
	defer wz.Close(ctx)
	_, err = wz.CompileModule(ctx, tinyModule)
	require.NoError(t, err)
	entries, err := os.ReadDir(filepath.Join(dir, wazeroCacheSubdir()))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{wazeroCacheEntry(tinyModule)}, names)
}

// TestCPUBaseline: wazero's compiler is limited to the baseline features, whatever this CPU has.
func TestCPUBaseline(t *testing.T) {
	mask, ok := cpuBaseline[runtime.GOARCH]
	if !ok {
		t.Skipf("no compiler baseline for %s", runtime.GOARCH)
	}
	require.Equal(t, machineCPUFeatures&mask, wazeroCPUFeatures)
	if runtime.GOARCH == "amd64" {
		require.Equal(t, uint64(1), wazeroCPUFeatures, "SSE4.1 only (wazero does not compile without it)")
	}
}

// precompiledRuntimeDir makes a runtime directory like the wheel's: the test runtime's files
// plus a precompiled directory holding the files OpenRuntime made in an empty cache.
func precompiledRuntimeDir(t *testing.T) (string, []byte) {
	rt := runtimeForTest(t) // fills testCacheDir()
	src := runtimeDirForTest(t)
	dir := t.TempDir()
	for _, name := range []string{"manifest.json", rt.manifest.Wasm, rt.manifest.Stdlib} {
		abs, _ := filepath.Abs(filepath.Join(src, name))
		require.NoError(t, os.Symlink(abs, filepath.Join(dir, name)))
	}
	modKey := moduleCacheKey(&rt.manifest)
	imgKey := imageCacheKey(modKey, &rt.manifest)
	pre := filepath.Join(dir, precompiledSubdir)
	require.NoError(t, os.MkdirAll(filepath.Join(pre, cacheSubdir), 0o755))
	for _, name := range []string{cacheFileName(kindModule, modKey), cacheFileName(kindImage, imgKey)} {
		require.NoError(t, copyFile(filepath.Join(testCacheDir(), cacheSubdir, name), filepath.Join(pre, cacheSubdir, name)))
	}
	wasm := mustReadCachedModule(t, rt, testCacheDir())
	// The code file, as a cold start writes it (the test cache may predate it).
	pc := &diskCache{dir: filepath.Join(pre, cacheSubdir)}
	require.Equal(t, wazeroCacheEntry(wasm), codeEntry(pc, modKey, wasm, newStartupInfo(nil)))
	code := filepath.Join("wazero-"+wazeroVersion, wazeroCacheSubdir(), wazeroCacheEntry(wasm))
	require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(pre, code)), 0o755))
	require.NoError(t, copyFile(filepath.Join(testCacheDir(), code), filepath.Join(pre, code)))
	return dir, wasm
}

// largeFiles lists the regular files of at least 64 KiB under dir.
func largeFiles(t *testing.T, dir string) []string {
	var large []string
	require.NoError(t, filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() >= 64<<10 {
			large = append(large, path)
		}
		return err
	}))
	return large
}

// TestOpenRuntimePrecompiled: with an empty cache, a runtime directory with precompiled files
// is opened without instrumenting, compiling or booting anything, and the cache gains no large
// file (only a link to the compiled code and the stdlib stamp).
func TestOpenRuntimePrecompiled(t *testing.T) {
	dir, _ := precompiledRuntimeDir(t)
	cache := t.TempDir()
	var log logRecorder
	rt, s, err := openRuntime(dir, RuntimeOptions{CacheDir: cache, Logf: log.logf})
	require.NoError(t, err)
	defer rt.Close()
	require.True(t, s.moduleCached, s.String())
	require.True(t, s.imageCached, s.String())
	require.True(t, s.codePrecompiled, s.String())
	t.Logf("first start from precompiled files:\n%s", s)
	for _, step := range s.steps {
		require.NotEqual(t, "code entry (hash module)", step.name, "the name comes from the code file")
	}
	requirePrints(t, rt)
	require.Empty(t, largeFiles(t, cache))
	require.NotContains(t, log.String(), "compiling")
	for _, step := range s.steps {
		require.NotEqual(t, "instrument", step.name)
		require.NotEqual(t, "build image", step.name)
	}

	// A second process finds its cache warm, and the link in place.
	_, s2, err := openRuntime(dir, RuntimeOptions{CacheDir: cache})
	require.NoError(t, err)
	require.True(t, s2.codePrecompiled && s2.stdlibStamped, s2.String())
}

// TestOpenRuntimeDamagedPrecompiledCode: precompiled code wazero cannot load is compiled again
// into the cache, and the precompiled file is left alone.
func TestOpenRuntimeDamagedPrecompiledCode(t *testing.T) {
	dir, wasm := precompiledRuntimeDir(t)
	code := filepath.Join(dir, precompiledSubdir, "wazero-"+wazeroVersion, wazeroCacheSubdir(), wazeroCacheEntry(wasm))
	require.NoError(t, os.Truncate(code, 100))
	cache := t.TempDir()
	var log logRecorder
	rt, _, err := openRuntime(dir, RuntimeOptions{CacheDir: cache, Logf: log.logf})
	require.NoError(t, err)
	defer rt.Close()
	requirePrints(t, rt)
	require.Contains(t, log.String(), "unusable")
	fi, err := os.Stat(code)
	require.NoError(t, err)
	require.EqualValues(t, 100, fi.Size())
	entry := filepath.Join(cache, "wazero-"+wazeroVersion, wazeroCacheSubdir(), wazeroCacheEntry(wasm))
	fi, err = os.Lstat(entry)
	require.NoError(t, err)
	require.True(t, fi.Mode().IsRegular(), "the cache holds its own compiled code")
}

// TestLinkPrecompiledCode covers the cases of linking without compiling anything.
func TestLinkPrecompiledCode(t *testing.T) {
	pre, cache := t.TempDir(), t.TempDir()
	wz := filepath.Join(cache, "wazero-"+wazeroVersion)
	src := filepath.Join(pre, "wazero-"+wazeroVersion, wazeroCacheSubdir(), wazeroCacheEntry(tinyModule))
	dst := filepath.Join(wz, wazeroCacheSubdir(), wazeroCacheEntry(tinyModule))

	name := wazeroCacheEntry(tinyModule)
	require.False(t, linkPrecompiledCode(pre, wz, name), "nothing precompiled")
	require.NoError(t, os.MkdirAll(filepath.Dir(src), 0o755))
	require.NoError(t, os.WriteFile(src, []byte("code"), 0o644))
	require.False(t, linkPrecompiledCode(pre, wz, wazeroCacheEntry(tinyModule[:len(tinyModule)-1])), "another module")
	require.False(t, linkPrecompiledCode(pre, wz, "../"+name), "not a name")
	require.True(t, linkPrecompiledCode(pre, wz, name))
	target, err := os.Readlink(dst)
	require.NoError(t, err)
	require.Equal(t, src, target)
	require.True(t, linkPrecompiledCode(pre, wz, name), "already linked")

	// A dangling link (the package was removed, then reinstalled elsewhere) is replaced.
	require.NoError(t, os.Remove(dst))
	require.NoError(t, os.Symlink(filepath.Join(pre, "gone"), dst))
	require.True(t, linkPrecompiledCode(pre, wz, name))
	target, _ = os.Readlink(dst)
	require.Equal(t, src, target)

	// The cache's own entry is kept.
	require.NoError(t, os.Remove(dst))
	require.NoError(t, os.WriteFile(dst, []byte("own"), 0o644))
	require.False(t, linkPrecompiledCode(pre, wz, name))
	own, _ := os.ReadFile(dst)
	require.Equal(t, "own", string(own))
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), "*.tmp"))
	require.Empty(t, leftovers)
}

// The slow-start notice says "loading" only when wazero's cache holds the entry (a file or a
// link to one, as linkPrecompiledCode makes), and "compiling" otherwise.
func TestCacheEntryExists(t *testing.T) {
	wz := t.TempDir()
	assert.False(t, cacheEntryExists(wz, "entry"))
	assert.False(t, cacheEntryExists("", "entry"))
	sub := filepath.Join(wz, wazeroCacheSubdir())
	require.NoError(t, os.MkdirAll(sub, 0o700))
	require.NoError(t, os.Mkdir(filepath.Join(sub, "adir"), 0o700))
	assert.False(t, cacheEntryExists(wz, "adir"), "a directory is no entry")
	require.NoError(t, os.WriteFile(filepath.Join(sub, "entry"), []byte("code"), 0o600))
	assert.True(t, cacheEntryExists(wz, "entry"))
	require.NoError(t, os.Symlink(filepath.Join(sub, "entry"), filepath.Join(sub, "link")))
	assert.True(t, cacheEntryExists(wz, "link"))
	require.NoError(t, os.Symlink(filepath.Join(sub, "gone"), filepath.Join(sub, "dangling")))
	assert.False(t, cacheEntryExists(wz, "dangling"))
	assert.False(t, cacheEntryExists(wz, "../entry"), "names with separators are refused")
}
