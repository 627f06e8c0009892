package goeryx

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
	"github.com/goeryx/goeryx/goeryx/internal/driver"
	"github.com/goeryx/goeryx/goeryx/internal/instrument"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

// Version is the engine's version; snapshots record it.
const Version = "0.1.0"

// RuntimeOptions configure OpenRuntime.
type RuntimeOptions struct {
	// CacheDir holds compiled code ("" disables the disk cache).
	CacheDir string
	// Logf, if set, receives progress messages worth showing a user (slow first compile).
	Logf func(format string, args ...any)
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
	// only the interpreter that builds the image needs it (see instrument.StripData).
	data []instrument.DataSegment
	// image is the linear memory of an interpreter right after boot and prepare.
	image []byte
	// memory hands out linear memories that start as image (memory.go).
	memory *memoryPool

	mu     sync.Mutex
	closed bool
}

// preparedImports are imported before the memory image is taken, so runs find them loaded.
var preparedImports = []string{"json", "re", "random", "dill", "linecache", "traceback"}

// OpenRuntime loads the runtime artifact in dir (docs/ABI.md), compiles it (or loads the
// compiled code from the cache) and builds the pre-initialised memory image.
func OpenRuntime(dir string, opts RuntimeOptions) (*Runtime, error) {
	ctx := context.Background()
	rt := &Runtime{}
	if err := rt.load(dir); err != nil {
		return nil, initError("cannot load guest runtime from %s: %v", dir, err)
	}
	wasm, err := os.ReadFile(filepath.Join(dir, rt.manifest.Wasm))
	if err != nil {
		return nil, initError("cannot load guest runtime: %v", err)
	}
	if err := checkSHA256(wasm, rt.manifest.WasmSHA256); err != nil {
		return nil, initError("guest runtime %s: %v", rt.manifest.Wasm, err)
	}
	wasm, _, err = instrument.Instrument(wasm)
	if err != nil {
		return nil, initError("cannot instrument guest runtime: %v", err)
	}
	wasm, rt.data, err = instrument.StripData(wasm)
	if err != nil {
		return nil, initError("cannot prepare guest runtime: %v", err)
	}

	cfg := wazero.NewRuntimeConfigCompiler()
	if opts.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(opts.CacheDir, "wazero-"+wazeroVersion))
		if err == nil {
			cfg = cfg.WithCompilationCache(cache)
		}
	}
	rt.wz = wazero.NewRuntimeWithConfig(ctx, cfg)
	if err := instantiateWASI(ctx, rt.wz); err != nil {
		rt.wz.Close(ctx)
		return nil, initError("cannot instantiate WASI: %v", err)
	}
	if err := instantiateHostModule(ctx, rt.wz); err != nil {
		rt.wz.Close(ctx)
		return nil, initError("cannot instantiate the host module: %v", err)
	}
	start := time.Now()
	rt.compiled, err = rt.wz.CompileModule(ctx, wasm)
	if err != nil {
		rt.wz.Close(ctx)
		return nil, initError("cannot compile guest runtime: %v", err)
	}
	if d := time.Since(start); d > time.Second && opts.Logf != nil {
		opts.Logf("goeryx: compiled the guest runtime in %.1f s (cached for later processes)", d.Seconds())
	}
	if err := rt.buildImage(ctx); err != nil {
		rt.wz.Close(ctx)
		return nil, err
	}
	return rt, nil
}

func (rt *Runtime) load(dir string) error {
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
	zipData, err := os.ReadFile(filepath.Join(dir, rt.manifest.Stdlib))
	if err != nil {
		return err
	}
	if err := checkSHA256(zipData, rt.manifest.StdlibSHA256); err != nil {
		return fmt.Errorf("%s: %v", rt.manifest.Stdlib, err)
	}
	zr, err := zip.NewReader(bytes.NewReader(zipData), int64(len(zipData)))
	if err != nil {
		return fmt.Errorf("%s: %v", rt.manifest.Stdlib, err)
	}
	rt.stdlib = stdlibFS{zr}
	return nil
}

func checkSHA256(data []byte, want string) error {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("sha256 %s does not match the manifest (%s)", got, want)
	}
	return nil
}

// buildImage boots one interpreter and keeps a copy of its memory: every later interpreter
// starts from that copy instead of running Py_Initialize.
func (rt *Runtime) buildImage(ctx context.Context) error {
	boot, err := newMemoryPool(nil)
	if err != nil {
		return initError("failed to start guest interpreter: %v", err)
	}
	defer boot.close()
	inst, err := rt.instantiate(ctx, &instanceConfig{}, boot)
	if err != nil {
		return initError("failed to start guest interpreter: %v", err)
	}
	defer inst.close()
	fail := func(step string, err error) error {
		return initError("failed to start guest interpreter: %s: %v%s", step, err, stderrSuffix(inst))
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
		return initError("failed to start guest interpreter: cannot read memory")
	}
	rt.image = bytes.Clone(img)
	if rt.memory, err = newMemoryPool(rt.image); err != nil {
		return initError("failed to start guest interpreter: %v", err)
	}
	return nil
}

func errOrStatus(err error, status uint64) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("status %d", int32(status))
}

func stderrSuffix(inst *instance) string {
	if s := inst.stderr.take(); s != "" {
		return "\n" + s
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
	return rt.wz.Close(context.Background())
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
