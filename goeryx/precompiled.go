package goeryx

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	_ "unsafe" // go:linkname

	_ "github.com/tetratelabs/wazero" // links internal/platform, whose variable is named below
)

// Precompiled start-up files: a runtime directory may carry, in precompiledSubdir, what
// OpenRuntime would otherwise build into an empty cache (the wheel does: setup.py makes it at
// wheel build time by opening the runtime once with an empty cache and keeping the results):
//
//	<runtime dir>/precompiled/startup/module-<key>.bin   the instrumented module
//	<runtime dir>/precompiled/startup/image-<key>.bin    the memory image
//	<runtime dir>/precompiled/startup/code-<key>.bin     the name of the compiled code's entry
//	<runtime dir>/precompiled/wazero-<version>/wazero-<version>-<arch>-<os>/<entry>
//	                                                      wazero's compiled code for the module
//
// The startup files are read from there when the cache has none (never written or pruned
// there: the directory may be read-only). wazero's cache has a single directory, so the
// compiled code is linked into the cache: a symbolic link (a few bytes) from the cache's entry
// name to the precompiled entry, made only when the cache has no such entry. wazero then
// loads the code as from any cache entry. A dangling link (the package was removed) is a miss;
// wazero replaces it with the code it compiles.
const precompiledSubdir = "precompiled"

// wazeroCPUFeatures is wazero's view of the CPU (internal/platform.CpuFeatures): the compiler
// emits the optional instructions it names, and wazero's file cache keys compiled code by it
// (internal/engine/wazevo/engine_cache.go, fileCacheKey). goeryx narrows it, once, before any
// compilation, to what every CPU wazero's compiler supports has (cpuBaseline), so that compiled
// code, and its cache key, are the same on every machine of an architecture: the code compiled
// at wheel build time is valid, and found, on any of them. See RATIONALE.md.
//
//go:linkname wazeroCPUFeatures github.com/tetratelabs/wazero/internal/platform.CpuFeatures
var wazeroCPUFeatures uint64

// cpuBaseline is, per GOARCH, the wazero CPU feature flags goeryx lets the compiler use
// (internal/platform/cpuid.go):
//   - amd64: SSE4.1 (bit 0), without which wazero does not compile at all; not BMI1 (bit 1:
//     TZCNT for ctz) nor ABM (bit 2: LZCNT, POPCNT for clz and popcnt), which then compile to
//     BSF/BSR sequences and a bit-twiddling popcount;
//   - arm64: none (bit 0, LSE atomics, is used only by the threads proposal, which goeryx does
//     not enable).
var cpuBaseline = map[string]uint64{"amd64": 1 << 0, "arm64": 0}

// machineCPUFeatures is the CPU as wazero detected it, before the narrowing.
var machineCPUFeatures = wazeroCPUFeatures

func init() {
	if mask, ok := cpuBaseline[runtime.GOARCH]; ok {
		wazeroCPUFeatures &= mask
	}
}

// wazeroOwnVersion is the version wazero names its cache subdirectory by ("dev" in test
// binaries, which have no dependency versions).
//
//go:linkname wazeroOwnVersion github.com/tetratelabs/wazero/internal/version.GetWazeroVersion
func wazeroOwnVersion() string

// wazeroCacheSubdir is the directory, under a directory given to
// wazero.NewCompilationCacheWithDir, that holds this wazero's entries (wazero's cache.go,
// ensuresFileCache).
func wazeroCacheSubdir() string {
	return "wazero-" + wazeroOwnVersion() + "-" + runtime.GOARCH + "-" + runtime.GOOS
}

// wazeroCacheEntry is the name of the file under wazeroCacheSubdir that holds the code wazero
// compiles for wasm in goeryx's configuration (no function listeners, no ensureTermination):
// the hex of SHA-256(module ID, "WAZEVO"[, "memory-guard" when the memory guard is on], CPU
// features as 8 little-endian bytes), where the
// module ID is SHA-256(wasm, 0) (internal/wasm/module.go, AssignModuleID; wazevo's
// fileCacheKey). TestWazeroCacheEntryName checks this against wazero.
func wazeroCacheEntry(wasm []byte) string {
	h := sha256.New()
	h.Write(wasm)
	h.Write([]byte{0}) // ensureTermination: false
	id := h.Sum(nil)
	h = sha256.New()
	h.Write(id)
	h.Write([]byte("WAZEVO"))
	if memoryGuardOn() { // code without bounds checks (the wazero patch's fileCacheKey)
		h.Write([]byte("memory-guard"))
	}
	h.Write(binary.LittleEndian.AppendUint64(nil, wazeroCPUFeatures))
	return hex.EncodeToString(h.Sum(nil))
}

// codeEntry returns wazeroCacheEntry(wasm), from the cache (a "code" file, keyed by the module
// key, wazero's version and the CPU features) or else computed, and then stored: hashing the
// module costs a start that links precompiled code about 10 ms, reading the name a few µs. The
// wheel's precompiled directory carries the file.
func codeEntry(cache *diskCache, modKey cacheKey, wasm []byte, s *startupInfo) string {
	key := newCacheKey("goeryx wazero entry", modKey.String(), wazeroOwnVersion(), runtime.GOARCH,
		fmt.Sprint(wazeroCPUFeatures), fmt.Sprint(memoryGuardOn()))
	if name := s.loadCached(cache, kindCode, key); name != nil {
		return string(name)
	}
	t := time.Now()
	name := wazeroCacheEntry(wasm)
	s.since("code entry (hash module)", t)
	_ = cache.store(kindCode, key, []byte(name))
	return name
}

// cacheEntryExists reports whether wazero's cache under wzDir holds the entry name (a file, or
// a link to one), so that the compile about to run is a load.
func cacheEntryExists(wzDir, name string) bool {
	if wzDir == "" || name == "" || strings.ContainsAny(name, `/\.`) {
		return false
	}
	fi, err := os.Stat(filepath.Join(wzDir, wazeroCacheSubdir(), name))
	return err == nil && fi.Mode().IsRegular()
}

// linkPrecompiledCode links the precompiled code named name (wazeroCacheEntry), if precompiled
// (a precompiled directory, "" = none) has it, into wazero's cache directory wzDir, unless wzDir
// has an entry of that name already. It reports whether wzDir now links to the precompiled code.
func linkPrecompiledCode(precompiled, wzDir, name string) bool {
	if precompiled == "" || wzDir == "" || name == "" || strings.ContainsAny(name, `/\.`) {
		return false
	}
	sub := wazeroCacheSubdir()
	src, err := filepath.Abs(filepath.Join(precompiled, "wazero-"+wazeroVersion, sub, name))
	if err != nil {
		return false
	}
	if fi, err := os.Stat(src); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	dst := filepath.Join(wzDir, sub, name)
	if target, err := os.Readlink(dst); err == nil {
		if target == src {
			return true
		}
		if _, err := os.Stat(dst); err == nil {
			return false // a link to another copy that exists: as good as any entry
		}
		os.Remove(dst) // dangling: replaced below
	} else if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		return false // an entry of its own (or unreadable): wazero uses it
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return false
	}
	tmp := fmt.Sprintf("%s.%d.link.tmp", dst, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(src, tmp); err != nil {
		return false
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return false
	}
	return true
}

// precompiledDir is dir's precompiled directory, or "" if it has none.
func precompiledDir(dir string) string {
	p := filepath.Join(dir, precompiledSubdir)
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return p
	}
	return ""
}
