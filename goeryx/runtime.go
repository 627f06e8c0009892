package goeryx

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
	"github.com/goeryx/goeryx/goeryx/internal/driver"
	"github.com/goeryx/goeryx/goeryx/internal/dylink"
	"github.com/goeryx/goeryx/goeryx/internal/instrument"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
	"github.com/goeryx/goeryx/goeryx/internal/ready"
)

// Version is the engine's version; snapshots record it.
const Version = "0.1.0"

// RuntimeOptions configure OpenRuntime.
type RuntimeOptions struct {
	// CacheDir holds compiled code and the interpreter image, so that later processes start
	// in milliseconds ("" disables the disk cache). See cache.go for its layout.
	CacheDir string
	// Logf, if set, receives progress messages worth showing a user (slow first compile,
	// damaged cache files). It may be called from another goroutine while OpenRuntime runs.
	Logf func(format string, args ...any)

	// ReadyInterpreters is the size of the pool of ready interpreters (ready.go): nil means
	// DefaultReadyInterpreters, 0 none.
	ReadyInterpreters *int

	// noInstrument is a benchmark-only knob, settable only from inside this package: the
	// guest is compiled without the loop-header instrumentation, so busy guest code never
	// calls tick (no timeout or cancellation while it computes). It exists to measure what
	// the instrumentation costs (timeout_overhead_test.go). Its startup-cache files have keys
	// of their own, so they never mix with the instrumented ones.
	noInstrument bool
}

// Manifest is the runtime artifact's manifest.json (docs/ABI.md).
type Manifest struct {
	ABI           int    `json:"abi"`
	PythonVersion string `json:"python_version"`
	Wasm          string `json:"wasm"`
	WasmSHA256    string `json:"wasm_sha256"`
	Stdlib        string `json:"stdlib"`
	StdlibSHA256  string `json:"stdlib_sha256"`
	Recipe        string `json:"recipe"`
}

// Runtime is a loaded and compiled guest runtime. It is safe for concurrent use; one per
// process is enough.
type Runtime struct {
	manifest Manifest
	wz       wazero.Runtime
	compiled wazero.CompiledModule
	stdlib   fs.FS
	// data is the content of the module's data segments, stripped from the compiled module:
	// only the interpreter that builds the image needs it (see instrument.StripData). It is
	// loaded only then, and dropped after.
	data []instrument.DataSegment
	// image is the linear memory of an interpreter right after boot and prepare.
	image []byte
	// memory hands out linear memories that start as image (memory.go).
	memory *memoryPool
	// noInstrument: RuntimeOptions.noInstrument.
	noInstrument bool

	// dir, cacheDir and logf are OpenRuntime's arguments, kept to build the fuel module on
	// first use (fuel.go).
	dir      string
	cacheDir string
	logf     func(format string, args ...any)
	fuel     fuelModule
	// imageKey identifies what the image depends on: factory files record it (factory.go).
	imageKey string
	// dl: side modules (goeryx/dylink.go).
	dl dlRuntime

	// ready holds interpreters made before they are asked for; runs counts the runs in
	// progress, by which it judges whether the CPU is spare (ready.go).
	ready          *ready.Pool[*instance]
	runs           atomic.Int64
	saturatedUntil atomic.Int64 // unix ns: runs used every P at once until then (ready.go)

	mu     sync.Mutex
	closed bool
}

// preparedImports are imported before the memory image is taken, so runs find them loaded.
var preparedImports = []string{"json", "re", "random", "dill", "linecache", "traceback"}

// Cache keys (cache.go). What a cached file holds is decided by the inputs its key hashes:
//   - the instrumented module (and the data segments stripped from it): the runtime's
//     python.wasm (by the manifest's hash) and the instrumentation (the source of
//     internal/instrument and the ABI it implements);
//   - the image: the instrumented module, stdlib.zip (by the manifest's hash; the image holds
//     imported modules and the import system's view of the stdlib), the driver, preparedImports,
//     wazero (its WASI runs during boot) and the engine's own source (the host side of boot);
//   - the fuel-instrumented module, built on first use: fuelModuleCacheKey (fuel.go), a cache
//     file kind of its own. It shares the image.
func moduleCacheKey(m *Manifest) cacheKey {
	return newCacheKey("goeryx module", m.WasmSHA256, sourceHash("internal/instrument", "internal/abi"))
}

func imageCacheKey(module cacheKey, m *Manifest) cacheKey {
	return newCacheKey("goeryx image", Version, module.String(), m.StdlibSHA256,
		driver.Source(), strings.Join(preparedImports, "\x00"), wazeroVersion,
		sourceHash(".", "internal/abi", "internal/instrument", "internal/protocol"))
}

// OpenRuntime loads the runtime artifact in dir (docs/ABI.md), compiles it (or loads the
// compiled code from the cache) and builds the pre-initialised memory image (or loads it from
// the cache).
//
// With a CacheDir, a process normally finds everything in the cache and reads neither
// python.wasm (the cache holds the instrumented module, keyed by python.wasm's hash in the
// manifest) nor hashes stdlib.zip (a stamp vouches for it while its inode, size, mtime and ctime
// are unchanged); whatever is missing or damaged is rebuilt from the runtime files, whose hashes
// are then checked, by one process at a time.
func OpenRuntime(dir string, opts RuntimeOptions) (*Runtime, error) {
	rt, _, err := openRuntime(dir, opts)
	return rt, err
}

func openRuntime(dir string, opts RuntimeOptions) (*Runtime, *startupInfo, error) {
	ctx := context.Background()
	rt := &Runtime{noInstrument: opts.noInstrument}
	rt.dir, rt.cacheDir, rt.logf = dir, opts.CacheDir, opts.Logf
	s := newStartupInfo(opts.Logf)
	defer s.done() // also reports the damaged cache files
	t := time.Now()
	if err := rt.readManifest(dir); err != nil {
		return nil, s, initError("cannot load guest runtime from %s: %v", dir, err)
	}
	precompiled := precompiledDir(dir)
	cache := openDiskCache(opts.CacheDir, precompiled)
	modKey := moduleCacheKey(&rt.manifest)
	if rt.noInstrument { // the image key derives from the module key
		modKey = newCacheKey("goeryx module, not instrumented", modKey.String())
	}
	imgKey := imageCacheKey(modKey, &rt.manifest)
	rt.imageKey = imgKey.String()
	s.since("manifest, cache keys", t)

	// stdlib.zip and the image load while the module compiles.
	var wg sync.WaitGroup
	var stdlibErr error
	var image []byte
	wg.Add(2)
	go func() {
		defer wg.Done()
		stdlibErr = rt.loadStdlib(dir, cache, s)
	}()
	go func() {
		defer wg.Done()
		t := time.Now()
		image = s.loadCached(cache, kindImage, imgKey)
		s.since("load cached image", t)
	}()
	closeOnError := func(err error) (*Runtime, *startupInfo, error) {
		wg.Wait()
		if rt.wz != nil {
			rt.wz.Close(ctx)
		}
		return nil, s, err
	}

	// What is missing is built by one process at a time: the others wait, then find it.
	var unlock func()
	lock := func() {
		if unlock == nil {
			t := time.Now()
			unlock = cache.lock(modKey, s.log)
			s.since("build lock", t)
		}
	}
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()

	t = time.Now()
	wasm := s.loadCached(cache, kindModule, modKey)
	s.since("load cached module", t)
	if wasm == nil {
		lock()
		wasm = s.loadCached(cache, kindModule, modKey)
	}
	s.moduleCached = wasm != nil
	haveData := false
	if wasm == nil {
		var err error
		if wasm, rt.data, err = rt.instrumentedModule(dir, s); err != nil {
			return closeOnError(err)
		}
		haveData = true
		// A cache that cannot be written only costs time.
		_ = cache.store(kindData, modKey, encodeDataSegments(rt.data))
		_ = cache.store(kindModule, modKey, wasm)
	}
	code := ""
	if precompiled != "" || !s.moduleCached {
		code = codeEntry(cache, modKey, wasm, s)
	}
	if err := rt.compile(ctx, wasm, opts.CacheDir, precompiled, code, !s.moduleCached, s); err != nil {
		return closeOnError(err)
	}
	// What side modules bind to (a runtime not linked for them loads none).
	if m, err := dylink.ParseMain(wasm); err == nil && m.CanLoad() {
		rt.dl.main = m
	}
	rt.dl.cache = dylink.NewCache(rt.wz)
	if !rt.noInstrument {
		rt.dl.cache.Instrument = func(b []byte) ([]byte, error) {
			out, _, err := instrument.InstrumentSide(b)
			return out, err
		}
	}

	wg.Wait()
	if stdlibErr != nil {
		return closeOnError(initError("cannot load guest runtime from %s: %v", dir, stdlibErr))
	}
	if image == nil {
		lock()
		image = s.loadCached(cache, kindImage, imgKey)
	}
	s.imageCached = image != nil
	if image == nil {
		if !haveData {
			if err := rt.loadDataSegments(dir, cache, modKey, s); err != nil {
				return closeOnError(err)
			}
		}
		t := time.Now()
		done := s.slowNotice("goeryx: booting the guest interpreter…")
		var err error
		if image, err = rt.buildImage(ctx); err != nil {
			return closeOnError(err)
		}
		if d := done(); d > time.Second {
			s.log("goeryx: booted the guest interpreter in %.1f s%s", d.Seconds(), cachedNote(cache))
		}
		s.since("build image", t)
		t = time.Now()
		_ = cache.store(kindImage, imgKey, image)
		s.since("store image", t)
	}
	rt.data = nil
	rt.image = image
	t = time.Now()
	var err error
	if rt.memory, err = newMemoryPool(rt.image); err != nil {
		return closeOnError(initError("failed to start guest interpreter: %v", err))
	}
	s.since("memory pool", t)
	size := DefaultReadyInterpreters
	if n := opts.ReadyInterpreters; n != nil {
		if *n < 0 || *n > MaxReadyInterpreters {
			return closeOnError(&Error{Kind: KindValue, Message: fmt.Sprintf("ready interpreters must be from 0 to %d, got %d", MaxReadyInterpreters, *n)})
		}
		size = *n
	}
	if size > 0 {
		rt.newReadyPool(size)
	}
	return rt, s, nil
}

// loadDataSegments sets rt.data, from the cache or else from python.wasm.
func (rt *Runtime) loadDataSegments(dir string, cache *diskCache, modKey cacheKey, s *startupInfo) error {
	if payload := s.loadCached(cache, kindData, modKey); payload != nil {
		if data, err := decodeDataSegments(payload); err == nil {
			rt.data = data
			return nil
		}
	}
	_, data, err := rt.instrumentedModule(dir, s)
	if err != nil {
		return err
	}
	rt.data = data
	_ = cache.store(kindData, modKey, encodeDataSegments(data))
	return nil
}

// loadCached returns the cached payload, or nil (noting a damaged file).
func (s *startupInfo) loadCached(c *diskCache, kind cacheKind, key cacheKey) []byte {
	data, err := c.load(kind, key)
	if err != nil {
		if !errors.Is(err, errCacheMiss) {
			s.addDamaged(fmt.Sprintf("%s (%v)", c.path(kind, key), err))
		}
		return nil
	}
	return data
}

func cachedNote(c *diskCache) string {
	if c == nil || c.dir == "" || !dirWritable(c.dir) {
		return ""
	}
	return " (cached for later processes)"
}

// dirWritable reports whether files can be created in dir (made if missing): a cache that
// cannot be written must not be announced as caching anything.
func dirWritable(dir string) bool {
	if os.MkdirAll(dir, 0o755) != nil {
		return false
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// instrumentedModule reads python.wasm, checks it against the manifest, instruments it (unless
// rt.noInstrument) and strips its data segments, returning the module to compile and the
// segments.
func (rt *Runtime) instrumentedModule(dir string, s *startupInfo) ([]byte, []instrument.DataSegment, error) {
	t := time.Now()
	wasm, err := os.ReadFile(filepath.Join(dir, rt.manifest.Wasm))
	if err != nil {
		return nil, nil, initError("cannot load guest runtime: %v", err)
	}
	if err := checkSHA256(wasm, rt.manifest.WasmSHA256); err != nil {
		return nil, nil, initError("guest runtime %s: %v", rt.manifest.Wasm, err)
	}
	s.since("read+sha256 python.wasm", t)
	t = time.Now()
	if !rt.noInstrument {
		if wasm, _, err = instrument.InstrumentRuntime(wasm); err != nil {
			return nil, nil, initError("cannot instrument guest runtime: %v", err)
		}
	}
	wasm, data, err := instrument.StripData(wasm)
	if err != nil {
		return nil, nil, initError("cannot prepare guest runtime: %v", err)
	}
	s.since("instrument", t)
	return wasm, data, nil
}

// compile sets rt.wz and rt.compiled. wazero's compilation cache under cacheDir ("" = none)
// spares the compilation in later processes. wazero fails, rather than recompiles, on a cache
// entry it cannot read: then the entries are removed and the compilation retried, and at last
// done without the cache. newModule (the module was just instrumented, so wazero probably
// compiled it) prunes old entries, which would otherwise pile up. Code in the precompiled
// directory (precompiled.go; "" = none) named code (wazero's entry name) is linked into the
// cache first.
func (rt *Runtime) compile(ctx context.Context, wasm []byte, cacheDir, precompiled, code string, newModule bool, s *startupInfo) error {
	wzDir, note, cached := "", "", ""
	if cacheDir != "" {
		wzDir = filepath.Join(cacheDir, "wazero-"+wazeroVersion)
		if dirWritable(wzDir) {
			note, cached = ", then cached in "+wzDir, " (cached for later processes)"
		}
		s.codePrecompiled = linkPrecompiledCode(precompiled, wzDir, code)
	}
	// With an entry already in the cache (the wheel's precompiled code, or an earlier process's),
	// wazero only loads it: a slow load (an emulated CPU, a cold disk) must not be announced as a
	// compilation.
	verb, notice := "compiled", "goeryx: compiling the guest runtime for this machine (once per runtime and wazero version"+note+")…"
	if cacheEntryExists(wzDir, code) {
		verb, notice, cached = "loaded", "goeryx: loading the compiled guest runtime from "+wzDir+"…", ""
	}
	t := time.Now()
	done := s.slowNotice(notice)
	var err error
	for i, dir := range []string{wzDir, wzDir, ""} {
		if err = rt.compileWith(ctx, wasm, dir); err == nil || dir == "" {
			break
		}
		if i == 0 {
			s.log("goeryx: the compiled-code cache in %s is unusable (%v); recompiling", dir, err)
			removeWazeroEntries(dir)
		}
	}
	if err != nil {
		return initError("cannot compile guest runtime: %v", err)
	}
	if d := done(); d > time.Second {
		s.log("goeryx: %s the guest runtime in %.1f s%s", verb, d.Seconds(), cached)
	}
	s.since("compile (wazero)", t)
	if newModule && wzDir != "" {
		subdirs, _ := os.ReadDir(wzDir)
		for _, sub := range subdirs {
			if sub.IsDir() {
				pruneDir(filepath.Join(wzDir, sub.Name()), "", "", "", cacheKeep)
			}
		}
	}
	return nil
}

// compileWith compiles wasm with a new wazero runtime caching in cacheDir, setting rt.wz and
// rt.compiled on success.
func (rt *Runtime) compileWith(ctx context.Context, wasm []byte, cacheDir string) error {
	wz, err := newWazero(ctx, cacheDir)
	if err != nil {
		return err
	}
	compiled, err := wz.CompileModule(ctx, wasm)
	if err != nil && cacheDir != "" {
		// wazero stores new code in its file cache after compiling, and keeps it in memory: if
		// only the store failed (say, a read-only cache), asking again finds it.
		compiled, err = wz.CompileModule(ctx, wasm)
	}
	if err != nil {
		wz.Close(ctx)
		return err
	}
	rt.wz, rt.compiled = wz, compiled
	return nil
}

// newWazero returns a wazero runtime with the host modules, caching compiled code in cacheDir
// ("" = no file cache).
func newWazero(ctx context.Context, cacheDir string) (wazero.Runtime, error) {
	cfg := wazero.NewRuntimeConfigCompiler()
	if cacheDir != "" {
		if cache, err := wazero.NewCompilationCacheWithDir(cacheDir); err == nil {
			cfg = cfg.WithCompilationCache(cache)
		}
	}
	wz := wazero.NewRuntimeWithConfig(ctx, cfg)
	enableMemoryGuard(wz)
	if err := instantiateWASI(ctx, wz); err != nil {
		wz.Close(ctx)
		return nil, initError("cannot instantiate WASI: %v", err)
	}
	if err := instantiateHostModule(ctx, wz); err != nil {
		wz.Close(ctx)
		return nil, initError("cannot instantiate the host module: %v", err)
	}
	return wz, nil
}

// removeWazeroEntries removes the compiled modules in wazero's cache directory dir (wazero
// keeps them in a subdirectory per version and platform).
func removeWazeroEntries(dir string) {
	subdirs, _ := os.ReadDir(dir)
	for _, sub := range subdirs {
		if !sub.IsDir() {
			continue
		}
		entries, _ := os.ReadDir(filepath.Join(dir, sub.Name()))
		for _, e := range entries {
			os.Remove(filepath.Join(dir, sub.Name(), e.Name()))
		}
	}
}

func (rt *Runtime) readManifest(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &rt.manifest); err != nil {
		return fmt.Errorf("manifest.json: %v", err)
	}
	if rt.manifest.ABI != abi.Version {
		return fmt.Errorf("runtime ABI %d, engine expects %d", rt.manifest.ABI, abi.Version)
	}
	return nil
}

// loadStdlib reads stdlib.zip. Its hash is checked unless a stamp in the cache vouches for this
// very file (fileIdentity): hashing it would cost more than all else a warm start does with it,
// and the stamp cannot vouch for a file that was replaced or written since (besides, the zip
// reader checks each member's CRC-32 as the guest reads it).
func (rt *Runtime) loadStdlib(dir string, cache *diskCache, s *startupInfo) error {
	t := time.Now()
	path := filepath.Join(dir, rt.manifest.Stdlib)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	id := fileIdentity(f)
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	zipData := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, zipData); err != nil {
		return fmt.Errorf("%s: %v", rt.manifest.Stdlib, err)
	}
	abs, _ := filepath.Abs(path)
	stampKey := newCacheKey("goeryx stamp", abs, rt.manifest.StdlibSHA256)
	stamped := false
	if id != "" {
		stamp, err := cache.load(kindStamp, stampKey)
		stamped = err == nil && string(stamp) == id
	}
	if !stamped {
		if err := checkSHA256(zipData, rt.manifest.StdlibSHA256); err != nil {
			return fmt.Errorf("%s: %v", rt.manifest.Stdlib, err)
		}
		if id != "" {
			_ = cache.store(kindStamp, stampKey, []byte(id))
		}
	}
	zr, err := zip.NewReader(bytes.NewReader(zipData), int64(len(zipData)))
	if err != nil {
		return fmt.Errorf("%s: %v", rt.manifest.Stdlib, err)
	}
	rt.stdlib = stdlibFS{zr}
	s.mu.Lock()
	s.stdlibStamped = stamped
	s.mu.Unlock()
	s.since("load stdlib.zip", t)
	return nil
}

func checkSHA256(data []byte, want string) error {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("sha256 %s does not match the manifest (%s)", got, want)
	}
	return nil
}

// buildImage boots one interpreter (writing rt.data as its data segments) and returns a copy
// of its memory: every later interpreter starts from that copy instead of running
// Py_Initialize.
func (rt *Runtime) buildImage(ctx context.Context) ([]byte, error) {
	boot, err := newMemoryPool(nil)
	if err != nil {
		return nil, initError("failed to start guest interpreter: %v", err)
	}
	defer boot.close()
	inst, err := rt.instantiate(ctx, &instanceConfig{}, boot)
	if err != nil {
		return nil, initError("failed to start guest interpreter: %v", err)
	}
	defer inst.close()
	fail := func(step string, err error) ([]byte, error) {
		return nil, initError("failed to start guest interpreter: %s: %v%s", step, err, stderrSuffix(inst))
	}
	mem := inst.mod.Memory()
	for _, seg := range rt.data {
		if !mem.Write(seg.Offset, seg.Data) {
			return fail("data segments", fmt.Errorf("segment at %d out of range", seg.Offset))
		}
	}
	if _, err := inst.callExport(abi.ExportInitialize); err != nil {
		return fail(abi.ExportInitialize, err)
	}
	if r, err := inst.callExport(abi.ExportInit); err != nil || int32(r) != 0 {
		return fail(abi.ExportInit, errOrStatus(err, r))
	}
	src := []byte(driver.Source())
	ptr, err := inst.writeGuest(src)
	if err != nil {
		return fail("driver", err)
	}
	r, err := inst.callExport(abi.ExportBoot, uint64(ptr), uint64(len(src)))
	inst.freeGuest(ptr)
	if err != nil || int32(r) != 0 {
		return fail(abi.ExportBoot, errOrStatus(err, r))
	}
	var resp struct {
		OK bool `json:"ok"`
	}
	if _, err := inst.request(map[string]any{"op": protocol.ReqPrepare, "imports": preparedImports}, nil, &resp); err != nil || !resp.OK {
		return fail("prepare", errOrStatus(err, 1))
	}
	size := mem.Size()
	img, ok := mem.Read(0, size)
	if !ok {
		return nil, initError("failed to start guest interpreter: cannot read memory")
	}
	return bytes.Clone(img), nil
}

func errOrStatus(err error, status uint64) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("status %d", int32(status))
}

func stderrSuffix(inst *instance) string { return suffixOf(inst.stderr.take()) }

// suffixOf appends the guest's stderr, when there is any, to an error message.
func suffixOf(stderr string) string {
	if stderr != "" {
		return "\n" + stderr
	}
	return ""
}

// GuestPythonVersion is the guest's platform.python_version().
func (rt *Runtime) GuestPythonVersion() string { return rt.manifest.PythonVersion }

// ImageBytes is the size of the pre-initialised memory image: the least memory an interpreter
// needs to start.
func (rt *Runtime) ImageBytes() uint64 { return uint64(len(rt.image)) }

// Close releases the compiled code. Sandboxes and sessions must be closed first.
func (rt *Runtime) Close() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return nil
	}
	rt.closed = true
	if rt.ready != nil {
		rt.ready.Close()
	}
	err := rt.wz.Close(context.Background())
	if rt.memory != nil {
		rt.memory.close()
	}
	return err
}

// exportFunc returns an export or an error naming it.
func exportFunc(mod api.Module, name string) (api.Function, error) {
	f := mod.ExportedFunction(name)
	if f == nil {
		return nil, fmt.Errorf("guest runtime does not export %s", name)
	}
	return f, nil
}

func initError(format string, args ...any) *Error {
	return &Error{Kind: KindInitialization, Message: fmt.Sprintf(format, args...)}
}

// asError is err as an *Error; an error of another type becomes an initialisation error.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return initError("%v", err)
}
