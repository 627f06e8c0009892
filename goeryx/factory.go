package goeryx

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goeryx/goeryx/goeryx/internal/dylink"
	"github.com/goeryx/goeryx/goeryx/internal/factory"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
	"github.com/goeryx/goeryx/goeryx/internal/vfs"
)

// SitePackagesPath is where a factory's packages are mounted in the guest (read-only).
const SitePackagesPath = "/site-packages"

// factoryBuildTimeout bounds the pre-imports of a factory build: they run guest code like any
// run, under a deadline, so an import that never returns fails the build instead of hanging it.
const factoryBuildTimeout = 10 * time.Minute

// maxFactoryFileBytes bounds what load reads: the largest image plus the largest package tree.
const maxFactoryFileBytes = factory.MaxImageBytes + 2<<30

// FactoryOptions configure Runtime.NewFactory (API.md §10).
type FactoryOptions struct {
	// SitePackages is a directory copied as is into the factory's packages ("" for none).
	SitePackages string
	// Packages are .whl, .tar.gz/.tgz files or directories.
	Packages []string
	// Imports are imported before the interpreter state is captured.
	Imports []string
	// SetupCode runs after the imports, in the user namespace, before the state is captured:
	// the names it binds are globals of every sandbox (an extension, as pyeryx's setup_code).
	SetupCode string
	// Cache shares the captured state between identical factories in the process.
	Cache bool
}

// Factory creates sandboxes and sessions whose interpreters start from a memory image taken
// after its packages were imported: the same image technique as the runtime's own, so a
// sandbox from a factory starts as fast as a plain one. It is safe for concurrent use.
type Factory struct {
	rt  *Runtime
	img *factoryImage

	mu     sync.Mutex
	closed bool
	size   int64 // len(Bytes()), once known (0: not yet)
}

// factoryImage is a factory's captured state: shared by the factory and every sandbox and
// session made from it (and, with Cache, by identical factories), and released with the last.
type factoryImage struct {
	key     string
	image   []byte
	pool    *memoryPool
	pkgDir  string         // the private site-packages directory (content-addressed, never written)
	lease   *factory.Lease // keeps pkgDir from eviction from the packages cache (nil: not ours)
	imports []string
	refs    atomic.Int64
	cached  bool // in factoryCache: released only when the cache entry and all users are gone
}

func (fi *factoryImage) acquire() { fi.refs.Add(1) }

func (fi *factoryImage) release() {
	if fi.refs.Add(-1) == 0 {
		fi.pool.close()
		fi.lease.Release()
	}
}

// factoryCache holds the images of factories made with Cache, by key, for the process.
var factoryCache = struct {
	sync.Mutex
	m map[string]*factoryImage
}{m: map[string]*factoryImage{}}

func cachedImage(key string) *factoryImage {
	factoryCache.Lock()
	defer factoryCache.Unlock()
	if fi := factoryCache.m[key]; fi != nil {
		fi.acquire()
		return fi
	}
	return nil
}

// remember puts fi in the cache (which holds a reference of its own) unless an identical one
// got there first, and returns the one to use.
func remember(fi *factoryImage) *factoryImage {
	factoryCache.Lock()
	defer factoryCache.Unlock()
	if have := factoryCache.m[fi.key]; have != nil {
		have.acquire()
		fi.release()
		return have
	}
	fi.cached = true
	fi.acquire()
	factoryCache.m[fi.key] = fi
	return fi
}

// pruning is set while a prunePackages runs: one at a time is enough.
var pruning atomic.Bool

// prunePackages bounds the packages cache (factory.Prune) in the background: it walks every
// staged tree for its size, which should not delay the build that just added one.
func prunePackages(root string) {
	if !pruning.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer pruning.Store(false)
		factory.Prune(root, factory.CacheLimitsFromEnv())
	}()
}

// packagesRoot is where private site-packages directories are staged.
func (rt *Runtime) packagesRoot() (string, error) {
	if rt.cacheDir != "" {
		dir := filepath.Join(rt.cacheDir, "factory-packages")
		if err := os.MkdirAll(dir, 0o755); err == nil {
			return dir, nil
		}
	}
	// Without a usable cache directory: a private directory of this user in the temporary
	// directory, which other users must not have made (or replaced by a link) beforehand.
	dir := filepath.Join(os.TempDir(), "goeryx-factory-packages-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	if err := checkPrivateDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

func (rt *Runtime) guest() factory.Guest {
	var g factory.Guest
	parts := strings.Split(rt.manifest.PythonVersion, ".")
	if len(parts) >= 2 {
		g.Major, _ = strconv.Atoi(parts[0])
		g.Minor, _ = strconv.Atoi(parts[1])
	}
	if m := rt.dl.main; m != nil {
		g.CheckSide = func(data []byte) error {
			side, err := rt.dl.cache.Parse(data)
			if err != nil {
				return err
			}
			return m.Check(side)
		}
	}
	return g
}

func factoryError(err error) error {
	if factory.IsError(err) {
		return initError("%s", err.Error())
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return initError("cannot build factory: %v", err)
}

// NewFactory stages the packages into a private directory, starts an interpreter from the
// runtime's image with them mounted at /site-packages, imports opts.Imports and captures its
// memory as the factory's image.
func (rt *Runtime) NewFactory(opts FactoryOptions) (*Factory, error) {
	root, err := rt.packagesRoot()
	if err != nil {
		return nil, initError("cannot build factory: %v", err)
	}
	for _, p := range opts.Packages {
		if _, err := os.Stat(p); err != nil {
			return nil, initError("package not found: %s", p)
		}
	}
	if opts.SitePackages != "" {
		if st, err := os.Stat(opts.SitePackages); err != nil || !st.IsDir() {
			return nil, initError("package not found: %s", opts.SitePackages)
		}
	}
	dir, hash, lease, fresh, err := factory.Stage(root, opts.SitePackages, opts.Packages, rt.guest(), factory.DefaultLimits, rt.compilePackages)
	if err != nil {
		return nil, factoryError(err)
	}
	imports := append([]string{}, opts.Imports...)
	key := newCacheKey("goeryx factory", rt.imageKey, hash, strings.Join(imports, "\x00"), opts.SetupCode).String()
	if opts.Cache {
		if fi := cachedImage(key); fi != nil {
			lease.Release()
			return &Factory{rt: rt, img: fi}, nil
		}
	}
	// With cache, an image captured by an earlier process from the same inputs is reused.
	// Only images without extension modules are saved: the loaded side modules (libs) are not
	// part of the saved image, so a saved image never has any.
	var image []byte
	var libs []dylink.Record
	if opts.Cache {
		image = factory.LoadImage(root, key)
	}
	if image == nil {
		if image, libs, err = rt.captureFactoryImage(dir, imports, opts.SetupCode); err != nil {
			lease.Release()
			return nil, err
		}
		if opts.Cache && len(libs) == 0 && factory.SaveImage(root, key, image) == nil {
			fresh = true
		}
	}
	if fresh {
		prunePackages(root)
	}
	fi, err := newFactoryImage(key, image, dir, lease, imports, libs)
	if err != nil {
		lease.Release()
		return nil, err
	}
	if opts.Cache {
		fi = remember(fi)
	}
	return &Factory{rt: rt, img: fi}, nil
}

func newFactoryImage(key string, image []byte, dir string, lease *factory.Lease, imports []string, libs []dylink.Record) (*factoryImage, error) {
	pool, err := newMemoryPool(image)
	if err != nil {
		return nil, initError("failed to start guest interpreter: %v", err)
	}
	pool.libs = libs
	fi := &factoryImage{key: key, image: image, pool: pool, pkgDir: dir, lease: lease, imports: imports}
	fi.refs.Store(1)
	return fi, nil
}

// packagesResponse is the driver's answer to prepare_packages and compile_packages.
type packagesResponse struct {
	OK         bool   `json:"ok"`
	Module     string `json:"module"`
	Error      string `json:"error"`
	SetupError string `json:"setup_error"`
	Message    string `json:"driver_error"`
}

// withPackages starts an interpreter from the runtime's image with dir mounted at
// /site-packages (writable or not), sends it header under the build's deadline and, when the
// request succeeded, calls then with the interpreter. what names the step in errors.
func (rt *Runtime) withPackages(dir string, writable bool, header map[string]any, what string, then func(*instance) error) error {
	pkgs, err := vfs.HostDir(dir, vfs.Options{ReadOnly: !writable})
	if err != nil {
		return initError("cannot build factory: %v", err)
	}
	fi := &factoryImage{pool: rt.memory, image: rt.image, pkgDir: dir}
	// The build's memory is capped at what a factory file may hold, so that every factory that
	// builds also loads.
	maxMem := int64(factory.MaxImageBytes)
	b, err := newBoxWithImage(rt, &Config{Limits: Limits{MaxMemoryBytes: &maxMem}}, nil, NoHooks{}, fi, pkgs)
	if err != nil {
		pkgs.Close()
		return err
	}
	defer b.closeFilesystems()
	ctx := context.Background()
	inst, err := b.newInterpreter(ctx, false)
	if err != nil {
		return err
	}
	defer inst.close()
	timeout := factoryBuildTimeout.Milliseconds()
	r := inst.beginRun(ctx, b.limits(&timeout, nil))
	var resp packagesResponse
	_, reqErr := inst.request(header, nil, &resp)
	inst.endRun(r)
	inst.stdout.take()
	stderr := inst.stderr.take()
	if out, failed := b.failure(inst, r, reqErr, "SandboxFactory"); failed {
		return initError("%s failed: %s", what, out.err.Message)
	}
	switch {
	case resp.Error != "":
		return initError("pre-import of '%s' failed: %s", resp.Module, resp.Error)
	case resp.SetupError != "":
		return initError("setup_code failed: %s", resp.SetupError)
	case !resp.OK:
		return initError("cannot build factory: guest driver error: %s%s", resp.Message, suffixOf(stderr))
	}
	return then(inst)
}

// compilePackages has the guest compile the modules of the staged tree dir to bytecode in
// place (__pycache__, hash-based: no source stat at import), so that what sandboxes import
// later than the factory's imports is unmarshalled rather than compiled in every sandbox.
func (rt *Runtime) compilePackages(dir string) error {
	return rt.withPackages(dir, true, map[string]any{"op": protocol.ReqCompilePackages, "path": SitePackagesPath},
		"compiling the packages", func(*instance) error { return nil })
}

// captureFactoryImage starts an interpreter from the runtime's image with dir at
// /site-packages, has the driver add it to sys.path (with its .pth files) and import imports,
// and run setupCode, and returns a copy of its memory and the extension modules loaded.
func (rt *Runtime) captureFactoryImage(dir string, imports []string, setupCode string) ([]byte, []dylink.Record, error) {
	what := "the pre-imports"
	if len(imports) > 0 {
		what = fmt.Sprintf("pre-import of '%s'", strings.Join(imports, "', '"))
	}
	if setupCode != "" {
		what += " and setup_code"
	}
	var image []byte
	var libs []dylink.Record
	err := rt.withPackages(dir, false, map[string]any{"op": protocol.ReqPreparePackages, "path": SitePackagesPath, "imports": imports, "setup_code": setupCode},
		what, func(inst *instance) error {
			mem := inst.mod.Memory()
			img, ok := mem.Read(0, mem.Size())
			if !ok {
				return initError("cannot build factory: cannot read guest memory")
			}
			image = append([]byte(nil), img...)
			if inst.dl != nil {
				// the extension modules the imports loaded: sandboxes bind them again
				libs = inst.dl.Records()
			}
			return nil
		})
	return image, libs, err
}

// LoadFactory reads a factory file (SandboxFactory.load). sitePackages, if not "", is mounted
// read-only instead of the file's packages.
func (rt *Runtime) LoadFactory(path, sitePackages string, cache bool) (*Factory, error) {
	data, err := readBounded(path, maxFactoryFileBytes)
	if err != nil {
		return nil, initError("failed to load factory from %s: %v", path, err)
	}
	return rt.loadFactory(data, path, sitePackages, cache)
}

// FactoryFromBytes is LoadFactory for data in memory (SandboxFactory.from_bytes).
func (rt *Runtime) FactoryFromBytes(data []byte, sitePackages string, cache bool) (*Factory, error) {
	return rt.loadFactory(data, "<bytes>", sitePackages, cache)
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if st.Size() > max {
		return nil, fmt.Errorf("the file is too large (%d bytes)", st.Size())
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, unwrapPathError(err)
	}
	return data, nil
}

// unwrapPathError drops the path that *PathError repeats (the message names it already).
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (rt *Runtime) loadFactory(data []byte, label, sitePackages string, cache bool) (*Factory, error) {
	h, body, err := factory.DecodeHeader(data)
	if errors.Is(err, factory.ErrNotFactory) {
		return nil, initError("%s is not a goeryx factory file", label)
	}
	if err != nil {
		return nil, initError("failed to load factory from %s: %v", label, err)
	}
	if h.Format != factory.FormatVersion || h.Goeryx != Version || h.GuestPython != rt.manifest.PythonVersion || h.Runtime != rt.imageKey {
		msg := fmt.Sprintf("factory file %s was made by goeryx %s (format %d, guest Python %s); this is goeryx %s (format %d, guest Python %s)",
			label, h.Goeryx, h.Format, h.GuestPython, Version, factory.FormatVersion, rt.manifest.PythonVersion)
		if h.Format == factory.FormatVersion && h.Goeryx == Version && h.GuestPython == rt.manifest.PythonVersion {
			msg += ", with another build of the guest runtime"
		}
		return nil, initError("%s", msg)
	}
	for _, m := range h.Imports {
		if m == "" || strings.ContainsAny(m, "\x00 ") {
			return nil, initError("failed to load factory from %s: malformed header: invalid import %q", label, m)
		}
	}
	key := newCacheKey("goeryx factory file", rt.imageKey, string(data[:min(len(data), 1<<20)]), strconv.Itoa(len(data))).String()
	if sitePackages != "" {
		key = ""
	}
	if cache && key != "" {
		// Identical files: the header holds the sections' SHA-256, so the first MiB and the
		// length identify the content once the header checked out.
		if fi := cachedImage(key); fi != nil {
			return &Factory{rt: rt, img: fi}, nil
		}
	}
	image, files, err := h.Payload(body)
	if err != nil {
		return nil, initError("failed to load factory from %s: %v", label, err)
	}
	var dir string
	var lease *factory.Lease
	if sitePackages == "" {
		root, err := rt.packagesRoot()
		if err != nil {
			return nil, initError("failed to load factory from %s: %v", label, err)
		}
		var fresh bool
		if dir, lease, fresh, err = factory.ExtractFiles(root, files, h.FilesKey(), label, rt.guest(), factory.DefaultLimits); err != nil {
			return nil, initError("failed to load factory from %s: %v", label, err)
		}
		if fresh {
			prunePackages(root)
		}
	} else if dir, err = checkSitePackages(sitePackages); err != nil {
		return nil, err
	}
	libs, err := factoryLibraries(h.Libraries, dir)
	if err != nil {
		lease.Release()
		return nil, initError("failed to load factory from %s: %v", label, err)
	}
	fi, err := newFactoryImage(key, image, dir, lease, h.Imports, libs)
	if err != nil {
		lease.Release()
		return nil, err
	}
	if cache && key != "" {
		fi = remember(fi)
	}
	return &Factory{rt: rt, img: fi}, nil
}

// factoryLibraries reads the extension modules a factory file's image holds from its package
// directory (they are package files under /site-packages), checking they are the same files.
func factoryLibraries(recs []factory.Library, dir string) ([]dylink.Record, error) {
	var out []dylink.Record
	for _, r := range recs {
		rel, ok := strings.CutPrefix(r.Path, SitePackagesPath+"/")
		if !ok || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("malformed header: extension module %q is not in %s", r.Path, SitePackagesPath)
		}
		data, err := readBounded(filepath.Join(dir, filepath.FromSlash(rel)), dylink.MaxModuleBytes)
		if err != nil {
			return nil, fmt.Errorf("extension module %s: %v", r.Path, unwrapPathError(err))
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != r.SHA256 {
			return nil, fmt.Errorf("extension module %s is not the file the image was taken with", r.Path)
		}
		out = append(out, dylink.Record{Name: r.Path, Bytes: data, SHA256: sum, MemBase: r.MemBase, TableBase: r.TableBase})
	}
	return out, nil
}

func checkSitePackages(dir string) (string, error) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return "", initError("package not found: %s", dir)
	}
	return dir, nil
}

// Imports are the modules imported before the image was captured.
func (f *Factory) Imports() []string { return append([]string{}, f.img.imports...) }

// ImageBytes is the size of the factory's memory image.
func (f *Factory) ImageBytes() uint64 { return uint64(len(f.img.image)) }

var errFactoryClosed = &Error{Kind: KindValue, Message: "SandboxFactory is closed"}

// Bytes is the factory artifact (SandboxFactory.to_bytes): always the same bytes for the same
// factory. It is encoded on each call and not kept (it is about as large as the image plus the
// packages).
func (f *Factory) Bytes() ([]byte, error) {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return nil, errFactoryClosed
	}
	h := factory.Header{Format: factory.FormatVersion, Goeryx: Version, GuestPython: f.rt.manifest.PythonVersion,
		Runtime: f.rt.imageKey, Imports: f.img.imports}
	for _, l := range f.img.pool.libs {
		h.Libraries = append(h.Libraries, factory.Library{Path: l.Name, SHA256: hex.EncodeToString(l.SHA256[:]),
			MemBase: l.MemBase, TableBase: l.TableBase})
	}
	data, err := factory.Encode(h, f.img.image, f.img.pkgDir)
	if err != nil {
		return nil, &Error{Kind: KindEryx, Message: fmt.Sprintf("cannot encode factory: %v", err)}
	}
	f.mu.Lock()
	f.size = int64(len(data))
	f.mu.Unlock()
	return data, nil
}

// Size is len(Bytes()), encoded once.
func (f *Factory) Size() (int64, error) {
	f.mu.Lock()
	size, closed := f.size, f.closed
	f.mu.Unlock()
	if closed {
		return 0, errFactoryClosed
	}
	if size > 0 {
		return size, nil
	}
	data, err := f.Bytes()
	return int64(len(data)), err
}

// Save writes Bytes to path atomically: a temporary file in the same directory, synced, then
// renamed over path.
func (f *Factory) Save(path string) error {
	data, err := f.Bytes()
	if err != nil {
		return err
	}
	fail := func(err error) error {
		return initError("failed to save factory to %s: %v", path, unwrapPathError(err))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fail(err)
	}
	name := tmp.Name()
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return fail(err)
	}
	return nil
}

// NewSandbox is Runtime.NewSandbox for interpreters that start from the factory's image.
// sitePackages, if not "", is mounted at /site-packages instead of the factory's packages.
func (f *Factory) NewSandbox(cfg *Config, store *VFS, hooks Hooks, sitePackages string) (*Sandbox, error) {
	b, err := f.newBox(cfg, store, hooks, sitePackages)
	if err != nil {
		return nil, err
	}
	return &Sandbox{box: b, running: map[*instance]struct{}{}}, nil
}

// NewSession is Runtime.NewSession for an interpreter that starts from the factory's image;
// its Reset returns to that image.
func (f *Factory) NewSession(ctx context.Context, cfg *Config, store *VFS, hooks Hooks, sitePackages string) (*Session, error) {
	b, err := f.newBox(cfg, store, hooks, sitePackages)
	if err != nil {
		return nil, err
	}
	return newSession(ctx, b)
}

func (f *Factory) newBox(cfg *Config, store *VFS, hooks Hooks, sitePackages string) (*box, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, errFactoryClosed
	}
	f.img.acquire()
	f.mu.Unlock()
	fail := func(err error) (*box, error) {
		f.img.release()
		return nil, err
	}
	if cfg != nil {
		if cfg.VFSMountPath != "" && pathsOverlap(filepathClean(cfg.VFSMountPath), SitePackagesPath) {
			return fail(&Error{Kind: KindValue, Message: fmt.Sprintf("vfs_mount_path '%s' overlaps the factory's packages at '%s'", cfg.VFSMountPath, SitePackagesPath)})
		}
		for _, v := range cfg.Volumes {
			if pathsOverlap(filepathClean(v.GuestPath), SitePackagesPath) {
				return fail(&Error{Kind: KindValue, Message: fmt.Sprintf("volume guest_path '%s' overlaps the factory's packages at '%s'", v.GuestPath, SitePackagesPath)})
			}
		}
	}
	dir := f.img.pkgDir
	if sitePackages != "" {
		var err error
		if dir, err = checkSitePackages(sitePackages); err != nil {
			return fail(err)
		}
	}
	pkgs, err := vfs.HostDir(dir, vfs.Options{ReadOnly: true})
	if err != nil {
		return fail(initError("cannot mount the factory's packages from %s: %v", dir, err))
	}
	b, err := newBoxWithImage(f.rt, cfg, store, hooks, f.img, pkgs)
	if err != nil {
		pkgs.Close()
		return fail(err)
	}
	b.ownsImage = true
	return b, nil
}

func filepathClean(p string) string {
	if p == "" {
		return p
	}
	return filepath.ToSlash(filepath.Clean(p))
}

// Close frees the factory's cached artifact and its reference to the image; sandboxes and
// sessions made from it keep working (they hold references of their own).
func (f *Factory) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	f.img.release()
}
