// Package factory turns a SandboxFactory's package inputs (wheels, .tar.gz/.tgz archives,
// package directories, a site-packages tree) into a private, content-addressed site-packages
// directory, and defines the factory artifact format (artifact.go). API.md §10.
//
// Every input is untrusted data: archive members that escape the target, links, devices,
// absurd sizes and bombs are refused before anything is written, and every size is bounded
// before it is allocated or written (Limits). Caller-owned files are only ever read.
package factory

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Limits bound what one factory's packages may expand to.
type Limits struct {
	MaxFiles      int   // files and directories, over all inputs
	MaxTotalBytes int64 // bytes of file content, over all inputs
	MaxFileBytes  int64 // bytes of one file
}

// DefaultLimits are generous for real packages (sympy: ~1,000 files, 70 MB) and small enough
// that a bomb cannot fill a disk.
var DefaultLimits = Limits{MaxFiles: 200_000, MaxTotalBytes: 1 << 30, MaxFileBytes: 256 << 20}

// An archive that expands to more than bombRatio times its size, once past bombFloor bytes, is
// a bomb: real packages compress 3 to 10 times, runs of zeros a thousand times. It is refused
// before (zip: declared sizes) or while (gzip: as it streams) it expands, so a bomb costs at
// most bombFloor bytes of disk.
const (
	bombRatio = 100
	bombFloor = 64 << 20
)

func bombError(input string, expanded, size int64) error {
	return errorf("%s: unsafe archive: it expands to more than %d bytes, over %d times its size of %d bytes", input, expanded, bombRatio, size)
}

// Error is a refused input; its message is the contract's (API.md §10 error table).
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, args ...any) error { return &Error{Msg: fmt.Sprintf(format, args...)} }

// Guest describes the guest's CPython, for native extension modules.
type Guest struct {
	Major, Minor int
	// CheckSide says why a WebAssembly side module cannot be loaded by the guest (a
	// malformed module, an import the guest does not provide), or nil (goeryx/internal/dylink).
	CheckSide func(data []byte) error
}

// Input is one package input: Path is a .whl, .tar.gz/.tgz or a directory.
type Input struct {
	Path string
}

// staging is one build in progress: a private directory being filled.
type staging struct {
	dir   string
	lim   Limits
	guest Guest
	files int
	bytes int64
}

// Stage copies or extracts sitePackages (a tree, copied as is; "" for none) and packages into
// a fresh directory under root, named by the hash of that content: root/p1-<hash>. When that
// directory exists already (the same inputs were staged before, by this process or another),
// it is used as is; otherwise prepare (if not nil) completes the fresh tree (the engine
// compiles its modules there) before it is moved into place. Directories appear only by an
// atomic rename of a complete tree, so one that exists is complete. The tree is returned
// leased (the caller releases the lease when no factory uses the tree any more); fresh says
// whether this call published it (the root then grew: the caller prunes it).
func Stage(root, sitePackages string, packages []string, guest Guest, lim Limits, prepare func(dir string) error) (dir, hash string, lease *Lease, fresh bool, err error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", "", nil, false, fmt.Errorf("cannot create %s: %v", root, err)
	}
	pruneAbandoned(root)
	tmp, err := os.MkdirTemp(root, "tmp-")
	if err != nil {
		return "", "", nil, false, err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	s := &staging{dir: tmp, lim: lim, guest: guest}
	if sitePackages != "" {
		if err := s.addTree(sitePackages, sitePackages, "."); err != nil {
			return "", "", nil, false, err
		}
	}
	for _, p := range packages {
		if err := s.add(p); err != nil {
			return "", "", nil, false, err
		}
	}
	hash, err = TreeHash(tmp)
	if err != nil {
		return "", "", nil, false, err
	}
	final := filepath.Join(root, stagedPrefix+hash)
	if l, ok := Acquire(final); ok {
		return final, hash, l, false, nil
	}
	if prepare != nil {
		if err := prepare(tmp); err != nil {
			return "", "", nil, false, err
		}
	}
	l, err := publishLeased(tmp, final)
	if err != nil {
		return "", "", nil, false, err
	}
	return final, hash, l, true, nil
}

// publishLeased publishes tmp as final and leases it. A fresh tree is within the cache's
// grace period, so no eviction comes between the two.
func publishLeased(tmp, final string) (*Lease, error) {
	if err := publish(tmp, final); err != nil {
		return nil, err
	}
	l, ok := Acquire(final)
	if !ok {
		return nil, fmt.Errorf("%s vanished as it was published", final)
	}
	return l, nil
}

// abandonedAfter is the age of a temporary staging directory that a build in progress would
// not leave: one left by a process that died mid-build.
const abandonedAfter = 24 * time.Hour

// pruneAbandoned removes temporary staging directories older than abandonedAfter.
func pruneAbandoned(root string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "tmp-") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > abandonedAfter {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// stagedPrefix names staged directories; it changes when what prepare adds changes (the
// compiled bytecode), so that a tree prepared the old way is never reused.
const stagedPrefix = "p1-"

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// publish renames the complete tree tmp to final, unless another process published it first.
func publish(tmp, final string) error {
	if err := os.Rename(tmp, final); err != nil && !isDir(final) {
		return err
	}
	return nil
}

func (s *staging) add(p string) error {
	info, err := os.Stat(p)
	if err != nil {
		return errorf("package not found: %s", p)
	}
	lower := strings.ToLower(p)
	switch {
	case info.IsDir():
		if _, err := os.Stat(filepath.Join(p, "__init__.py")); err == nil {
			return s.addTree(p, p, filepath.Base(filepath.Clean(p)))
		}
		return s.addTree(p, p, ".")
	case !info.Mode().IsRegular():
	case strings.HasSuffix(lower, ".whl"):
		return s.addWheel(p)
	case strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
		return s.addTarGz(p)
	}
	return errorf("cannot detect package format for %s: expected .whl, .tar.gz, .tgz or a directory", p)
}

// count charges one entry of size bytes to the budget.
func (s *staging) count(input, member string, size int64) error {
	s.files++
	if s.files > s.lim.MaxFiles {
		return errorf("%s: too many files (more than %d)", input, s.lim.MaxFiles)
	}
	if size < 0 || size > s.lim.MaxFileBytes {
		return errorf("%s: archive member '%s' is too large (%d bytes, the limit is %d)", input, member, size, s.lim.MaxFileBytes)
	}
	s.bytes += size
	if s.bytes > s.lim.MaxTotalBytes {
		return errorf("%s: packages expand beyond the limit of %d bytes", input, s.lim.MaxTotalBytes)
	}
	return nil
}

// memberPath checks an archive member name and returns it cleaned and relative ("" for the
// archive root), or an error naming it.
func memberPath(input, name string) (string, error) {
	unsafe := func() (string, error) { return "", errorf("%s: unsafe archive member '%s'", input, name) }
	if name == "" || strings.ContainsAny(name, "\x00\\") || strings.HasPrefix(name, "/") || len(name) > 4096 {
		return unsafe()
	}
	if len(name) >= 2 && name[1] == ':' { // a Windows drive
		return unsafe()
	}
	for _, c := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if c == ".." {
			return unsafe()
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

// target is where a relative member path lands, making its parents.
func (s *staging) target(rel string) (string, error) {
	dst := filepath.Join(s.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	return dst, nil
}

// writeFile writes at most size bytes of r to rel; more is an error (an archive that lies
// about a member's size).
func (s *staging) writeFile(input, member, rel string, r io.Reader, size int64) error {
	if isNative(rel) {
		// Read whole (size is within MaxFileBytes) to check what it is before writing it.
		data, err := io.ReadAll(io.LimitReader(r, size+1))
		if IsError(err) {
			return err
		}
		if err != nil {
			return errorf("%s: cannot extract '%s': %v", input, member, err)
		}
		if int64(len(data)) > size {
			return errorf("%s: unsafe archive member '%s'", input, member)
		}
		if reason := s.guest.nativeProblem(path.Base(rel), data); reason != "" {
			return errorf("%s: native extension module '%s' cannot be loaded by this guest runtime: %s", input, member, reason)
		}
		r = bytes.NewReader(data)
	}
	dst, err := s.target(rel)
	if err != nil {
		return err
	}
	if st, err := os.Lstat(dst); err == nil && st.IsDir() {
		return errorf("%s: unsafe archive member '%s'", input, member)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if IsError(err) {
		return err
	}
	if err != nil {
		return errorf("%s: cannot extract '%s': %v", input, member, err)
	}
	if n > size {
		return errorf("%s: unsafe archive member '%s'", input, member)
	}
	return nil
}

func (s *staging) mkdir(rel string) error {
	if rel == "" {
		return nil
	}
	return os.MkdirAll(filepath.Join(s.dir, filepath.FromSlash(rel)), 0o755)
}

// addTree copies the directory src (the input named input) to dest (relative to the staging
// directory). Only regular files and directories are copied; anything else (a symlink, a
// device, a FIFO) is refused, so the copy holds nothing that points outside it.
func (s *staging) addTree(input, src, dest string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return errorf("%s: cannot read %s: %v", input, p, err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		relSlash := path.Join(dest, filepath.ToSlash(rel))
		if relSlash == "." {
			return nil
		}
		member := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			if err := s.count(input, member, 0); err != nil {
				return err
			}
			return s.mkdir(relSlash)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			if err := s.count(input, member, info.Size()); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return errorf("%s: cannot read %s: %v", input, p, err)
			}
			defer f.Close()
			return s.writeFile(input, member, relSlash, f, info.Size())
		}
		return errorf("%s: unsafe archive member '%s'", input, member)
	})
}

// WheelTags returns the python-abi-platform tags of a wheel file name, or "" when the name
// does not follow the wheel convention.
func WheelTags(file string) string {
	base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	parts := strings.Split(base, "-")
	if len(parts) != 5 && len(parts) != 6 {
		return ""
	}
	return strings.Join(parts[len(parts)-3:], "-")
}

// isWASIPlatform says whether a wheel platform tag names the WASI guest.
func isWASIPlatform(plat string) bool {
	for _, p := range strings.Split(plat, ".") {
		if p == "wasm32_wasi" || strings.HasPrefix(p, "wasi_") && strings.HasSuffix(p, "_wasm32") {
			return true
		}
	}
	return false
}

// checkWheelTags refuses a wheel for another platform.
func checkWheelTags(p string) error {
	tags := WheelTags(p)
	if tags == "" {
		return errorf("%s: not a valid wheel file name (expected name-version-python-abi-platform.whl)", p)
	}
	plat := tags[strings.LastIndexByte(tags, '-')+1:]
	for _, t := range strings.Split(plat, ".") {
		if t == "any" {
			return nil
		}
	}
	if isWASIPlatform(plat) {
		return nil
	}
	return errorf("%s: wheel is built for '%s', not for pure Python or WASI", p, tags)
}

func (s *staging) addWheel(p string) error {
	if err := checkWheelTags(p); err != nil {
		return err
	}
	zr, err := zip.OpenReader(p)
	if err != nil {
		return errorf("%s: not a valid wheel: %v", p, err)
	}
	defer zr.Close()
	// Every member is checked, and the declared sizes summed against the limits, before
	// anything is written: a bomb is refused without expanding any of it.
	type planned struct {
		f   *zip.File
		rel string
	}
	var plan []planned
	archiveSize := int64(0)
	if st, err := os.Stat(p); err == nil {
		archiveSize = st.Size()
	}
	declared := int64(0)
	for _, f := range zr.File {
		declared += int64(min(f.UncompressedSize64, 1<<62))
		if declared > bombFloor && declared/bombRatio > archiveSize {
			return bombError(p, declared, archiveSize)
		}
		rel, err := memberPath(p, f.Name)
		if err != nil {
			return err
		}
		mode := f.Mode()
		if mode&(fs.ModeSymlink|fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeIrregular) != 0 {
			return errorf("%s: unsafe archive member '%s'", p, f.Name)
		}
		if f.UncompressedSize64 > uint64(s.lim.MaxFileBytes) {
			return errorf("%s: archive member '%s' is too large (%d bytes, the limit is %d)", p, f.Name, f.UncompressedSize64, s.lim.MaxFileBytes)
		}
		if err := s.count(p, f.Name, int64(f.UncompressedSize64)); err != nil {
			return err
		}
		rel = wheelTarget(rel)
		if rel == "-" {
			continue
		}
		plan = append(plan, planned{f, rel})
	}
	for _, m := range plan {
		if m.f.FileInfo().IsDir() || strings.HasSuffix(m.f.Name, "/") {
			if err := s.mkdir(m.rel); err != nil {
				return err
			}
			continue
		}
		if m.rel == "" {
			return errorf("%s: unsafe archive member '%s'", p, m.f.Name)
		}
		rc, err := m.f.Open()
		if err != nil {
			return errorf("%s: cannot extract '%s': %v", p, m.f.Name, err)
		}
		err = s.writeFile(p, m.f.Name, m.rel, rc, int64(m.f.UncompressedSize64))
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// wheelTarget maps a wheel member to its place in site-packages: <name>.data/purelib and
// platlib go to the root, the other .data schemes (scripts, headers, data) are not installed
// ("-").
func wheelTarget(rel string) string {
	first, rest, _ := strings.Cut(rel, "/")
	if !strings.HasSuffix(first, ".data") {
		return rel
	}
	scheme, sub, _ := strings.Cut(rest, "/")
	if scheme == "purelib" || scheme == "platlib" {
		if sub == "" {
			return ""
		}
		return sub
	}
	if rest == "" {
		return ""
	}
	return "-"
}

func (s *staging) addTarGz(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return errorf("package not found: %s", p)
	}
	defer f.Close()
	// The expansion is bounded as it streams: tar sizes are declared per member and each is
	// checked against the limits before it is written, and bombGuard stops a bomb.
	in := &countingReader{r: f}
	gz, err := gzip.NewReader(in)
	if err != nil {
		return errorf("%s: not a valid .tar.gz archive: %v", p, err)
	}
	return s.addTar(p, &bombGuard{r: gz, in: in, input: p})
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// bombGuard fails a decompressed stream that passes bombFloor bytes and bombRatio times the
// compressed bytes read so far.
type bombGuard struct {
	r     io.Reader
	in    *countingReader
	out   int64
	input string
}

func (g *bombGuard) Read(b []byte) (int, error) {
	n, err := g.r.Read(b)
	g.out += int64(n)
	if g.out > bombFloor && g.out/bombRatio > g.in.n {
		return n, bombError(g.input, g.out, g.in.n)
	}
	return n, err
}

// addTar extracts a tar stream: regular files and directories only.
func (s *staging) addTar(p string, r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if IsError(err) {
			return err
		}
		if err != nil {
			return errorf("%s: not a valid archive: %v", p, err)
		}
		rel, err := memberPath(p, h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := s.count(p, h.Name, 0); err != nil {
				return err
			}
			if err := s.mkdir(rel); err != nil {
				return err
			}
		case tar.TypeReg: // archive/tar reports the old '\x00' type as TypeReg
			if rel == "" {
				return errorf("%s: unsafe archive member '%s'", p, h.Name)
			}
			if err := s.count(p, h.Name, h.Size); err != nil {
				return err
			}
			if err := s.writeFile(p, h.Name, rel, tr, h.Size); err != nil {
				return err
			}
		case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			// metadata records, already folded into the next header by archive/tar
		default:
			return errorf("%s: unsafe archive member '%s'", p, h.Name)
		}
	}
}

// TreeHash is a hash of a directory tree's paths, kinds and contents: the name of the staged
// directory. A tree holding anything but regular files and directories has no hash.
func TreeHash(dir string) (string, error) {
	h := sha256.New()
	var lenBuf [8]byte
	field := func(b []byte) {
		binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(b)))
		h.Write(lenBuf[:])
		h.Write(b)
	}
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		field([]byte(filepath.ToSlash(rel)))
		if info.IsDir() {
			field([]byte{'d'})
			continue
		}
		field([]byte{'f'})
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		binary.LittleEndian.PutUint64(lenBuf[:], uint64(info.Size()))
		h.Write(lenBuf[:])
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// IsError says whether err is a refused input (its message is for the user as is).
func IsError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
