package goeryx

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/goeryx/goeryx/goeryx/internal/instrument"
)

// The start-up cache: what OpenRuntime would otherwise redo in every process (instrumenting
// the guest, booting an interpreter for the memory image, hashing the runtime files), kept in
// files under RuntimeOptions.CacheDir. What each file depends on is in its key
// (moduleCacheKey, imageCacheKey in runtime.go).
//
//	<CacheDir>/startup/module-<key>.bin   the instrumented guest module (the input of the compiler)
//	<CacheDir>/startup/fuelmodule-<key>.bin  the fuel-instrumented module (fuel.go), once used
//	<CacheDir>/startup/data-<key>.bin     its data segments (read only to build an image)
//	<CacheDir>/startup/image-<key>.bin    the memory image of a booted interpreter
//	<CacheDir>/startup/code-<key>.bin     the name of wazero's cache entry for the module
//	<CacheDir>/startup/stamp-<key>.bin    "stdlib.zip at this path, with this inode, size, mtime
//	                                       and ctime, had the manifest's SHA-256"
//	<CacheDir>/startup/<key>.lock         held while one process builds what is missing
//	<CacheDir>/wazero-<version>/...       wazero's compiled-code cache (its own format)
//
// Every file is written to a temporary name and renamed into place, so a reader sees a whole
// file or none, and concurrent writers of one key both write valid files. A file starts with a
// header naming its format, kind and full key and the length and CRC-32C of its payload; a file
// that does not check out is ignored (and replaced by the rebuild), never trusted. The payload
// starts at a page boundary, and runs of zero pages are left as holes (the image is about half
// zero pages).

// cacheFormat is bumped when the layout or the meaning of a cache file changes.
const cacheFormat = 1

const (
	cacheSubdir     = "startup"
	cacheHeaderSize = 4096
	cacheMagic      = "GOERYXC\n"
	// cacheKeep is how many files of one kind stay in the cache: the most recently used.
	cacheKeep = 3
	// cacheTouchAfter: a hit refreshes the file's mtime (its "last used" for pruning) when
	// older than this.
	cacheTouchAfter = time.Hour
	// cacheLockWait bounds the wait for another process building the same files; after it the
	// build goes ahead without the lock (duplicated work, still correct).
	cacheLockWait = 3 * time.Minute
)

type cacheKind uint32

const (
	kindModule cacheKind = 1
	kindImage  cacheKind = 2
	kindStamp  cacheKind = 3
	kindData   cacheKind = 4
	// kindFuelModule is the fuel-instrumented module (fuel.go), built on first use.
	kindFuelModule cacheKind = 5
	// kindCode is the name of wazero's cache entry for the module (precompiled.go), so that a
	// start that links precompiled code need not hash the module for it.
	kindCode cacheKind = 6
)

var cacheKindNames = map[cacheKind]string{kindModule: "module", kindImage: "image", kindStamp: "stamp", kindData: "data",
	kindFuelModule: "fuelmodule", kindCode: "code"}

// cacheMaxPayload bounds what load accepts (and allocates): wasm32 memory is at most 4 GiB.
var cacheMaxPayload = map[cacheKind]int64{
	kindModule: 1 << 30, kindImage: maxWasm32Memory, kindStamp: 4096, kindData: maxWasm32Memory,
	kindFuelModule: 1 << 30, kindCode: 4096,
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type cacheKey [sha256.Size]byte

// newCacheKey hashes its parts, each prefixed by its length so that no two lists collide.
func newCacheKey(parts ...string) cacheKey {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	var k cacheKey
	h.Sum(k[:0])
	return k
}

func (k cacheKey) String() string { return fmt.Sprintf("%x", k[:16]) }

// errCacheMiss: no file for the key.
var errCacheMiss = errors.New("not cached")

// diskCache is the start-up cache in one directory, over an optional read-only one (the
// precompiled files of the runtime, precompiled.go). A nil *diskCache caches nothing.
type diskCache struct {
	dir string // "" if only ro is read (nothing is stored)
	ro  string // "" if none
}

// openDiskCache returns the cache under cacheDir over the startup files in precompiled (a
// precompiled directory, "" = none), or nil if both are "" (or cacheDir is unusable and there
// is no precompiled directory).
func openDiskCache(cacheDir, precompiled string) *diskCache {
	c := &diskCache{}
	if precompiled != "" {
		c.ro = filepath.Join(precompiled, cacheSubdir)
	}
	if cacheDir != "" {
		dir := filepath.Join(cacheDir, cacheSubdir)
		if err := os.MkdirAll(dir, 0o755); err == nil {
			c.dir = dir
		}
	}
	if c.dir == "" && c.ro == "" {
		return nil
	}
	return c
}

func (c *diskCache) path(kind cacheKind, key cacheKey) string {
	return filepath.Join(c.dir, cacheFileName(kind, key))
}

func cacheFileName(kind cacheKind, key cacheKey) string {
	return cacheKindNames[kind] + "-" + key.String() + ".bin"
}

// load returns the payload of the file for kind and key, from the cache or else the read-only
// directory: errCacheMiss if neither has one, another error if the cache's is damaged (the
// caller rebuilds it). A damaged read-only file is a miss.
func (c *diskCache) load(kind cacheKind, key cacheKey) ([]byte, error) {
	if c == nil {
		return nil, errCacheMiss
	}
	var payload []byte
	err := errCacheMiss
	if c.dir != "" {
		payload, err = loadCacheFile(c.path(kind, key), kind, key, true)
	}
	if errors.Is(err, errCacheMiss) && c.ro != "" {
		if p, roErr := loadCacheFile(filepath.Join(c.ro, cacheFileName(kind, key)), kind, key, false); roErr == nil {
			return p, nil
		}
	}
	return payload, err
}

// loadCacheFile reads and checks one cache file; touch: refresh its mtime when old (its "last
// used", for pruning).
func loadCacheFile(path string, kind cacheKind, key cacheKey, touch bool) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errCacheMiss
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var hdr [cacheHeaderSize]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	size, sum, err := parseCacheHeader(hdr[:], kind, key)
	if err != nil {
		return nil, err
	}
	if size > cacheMaxPayload[kind] || cacheHeaderSize+size != fi.Size() {
		return nil, fmt.Errorf("%d bytes for a %d-byte payload", fi.Size(), size)
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(f, payload); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if got := crc32.Checksum(payload, castagnoli); got != sum {
		return nil, fmt.Errorf("checksum %08x, header says %08x", got, sum)
	}
	if err := checkPayload(kind, payload); err != nil {
		return nil, err
	}
	if touch && time.Since(fi.ModTime()) > cacheTouchAfter {
		now := time.Now()
		_ = os.Chtimes(path, now, now)
	}
	return payload, nil
}

// checkPayload refuses what no build of kind produces.
func checkPayload(kind cacheKind, payload []byte) error {
	switch kind {
	case kindImage:
		if len(payload) == 0 || len(payload)%wasmPageSize != 0 {
			return fmt.Errorf("an image of %d bytes is not whole wasm pages", len(payload))
		}
	case kindModule, kindFuelModule:
		if !bytes.HasPrefix(payload, []byte("\x00asm")) {
			return errors.New("not a wasm module")
		}
	case kindData:
		if _, err := decodeDataSegments(payload); err != nil {
			return err
		}
	}
	return nil
}

// encodeDataSegments serialises data segments: for each, its offset and length (uint32, little
// endian), then its bytes.
func encodeDataSegments(segs []instrument.DataSegment) []byte {
	var out []byte
	for _, seg := range segs {
		out = binary.LittleEndian.AppendUint32(out, seg.Offset)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(seg.Data)))
		out = append(out, seg.Data...)
	}
	return out
}

func decodeDataSegments(b []byte) ([]instrument.DataSegment, error) {
	segs := []instrument.DataSegment{}
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, errors.New("data segments: truncated")
		}
		off, n := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
		if uint64(n) > uint64(len(b)-8) {
			return nil, errors.New("data segments: truncated")
		}
		segs = append(segs, instrument.DataSegment{Offset: off, Data: b[8 : 8+n : 8+n]})
		b = b[8+n:]
	}
	return segs, nil
}

func parseCacheHeader(hdr []byte, kind cacheKind, key cacheKey) (size int64, sum uint32, err error) {
	le := binary.LittleEndian
	switch {
	case string(hdr[0:8]) != cacheMagic:
		return 0, 0, errors.New("not a goeryx cache file")
	case crc32.Checksum(hdr[:60], castagnoli) != le.Uint32(hdr[60:64]):
		return 0, 0, errors.New("header checksum mismatch")
	case le.Uint32(hdr[8:12]) != cacheFormat:
		return 0, 0, fmt.Errorf("format %d, expected %d", le.Uint32(hdr[8:12]), cacheFormat)
	case cacheKind(le.Uint32(hdr[12:16])) != kind || !bytes.Equal(hdr[16:48], key[:]):
		return 0, 0, errors.New("the file is for another key")
	}
	return int64(le.Uint64(hdr[48:56])), le.Uint32(hdr[56:60]), nil
}

// store writes the file for kind and key atomically, then prunes the older files of the kind.
func (c *diskCache) store(kind cacheKind, key cacheKey, payload []byte) error {
	if c == nil || c.dir == "" {
		return nil
	}
	path := c.path(kind, key)
	f, err := os.CreateTemp(c.dir, cacheKindNames[kind]+"-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	var hdr [cacheHeaderSize]byte
	le := binary.LittleEndian
	copy(hdr[0:8], cacheMagic)
	le.PutUint32(hdr[8:12], cacheFormat)
	le.PutUint32(hdr[12:16], uint32(kind))
	copy(hdr[16:48], key[:])
	le.PutUint64(hdr[48:56], uint64(len(payload)))
	le.PutUint32(hdr[56:60], crc32.Checksum(payload, castagnoli))
	le.PutUint32(hdr[60:64], crc32.Checksum(hdr[:60], castagnoli))
	if _, err := f.Write(hdr[:]); err != nil {
		return err
	}
	if err := writeSparse(f, cacheHeaderSize, payload); err != nil {
		return err
	}
	// No fsync: a file cut short by a crash fails its checksum and is rebuilt.
	if err := f.Close(); err != nil {
		f = nil
		os.Remove(tmp)
		return err
	}
	f = nil
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	c.prune(kind, path)
	return nil
}

// writeSparse writes data at off, leaving zero pages as holes, and sets the file's size.
func writeSparse(f *os.File, off int64, data []byte) error {
	const page = 4096
	var zero [page]byte
	isZero := func(b []byte) bool { return bytes.Equal(b, zero[:len(b)]) }
	for start := 0; start < len(data); {
		end := min(start+page, len(data))
		if isZero(data[start:end]) {
			start = end
			continue
		}
		for end < len(data) && !isZero(data[end:min(end+page, len(data))]) {
			end = min(end+page, len(data))
		}
		if _, err := f.WriteAt(data[start:end], off+int64(start)); err != nil {
			return err
		}
		start = end
	}
	return f.Truncate(off + int64(len(data)))
}

// prune removes the files of kind but keep beyond the cacheKeep-1 most recently used others.
func (c *diskCache) prune(kind cacheKind, keep string) {
	pruneDir(c.dir, cacheKindNames[kind]+"-", ".bin", keep, cacheKeep-1)
}

// pruneDir keeps keep and the n newest other files named prefix*suffix in dir, and removes the
// rest of them. It also removes what processes left behind: temporary files older than a day
// (a writer that died) and lock files unused for a week.
func pruneDir(dir, prefix, suffix, keep string, n int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type file struct {
		path  string
		mtime time.Time
	}
	var files []file
	for _, e := range entries {
		name := e.Name()
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		path := filepath.Join(dir, name)
		age := time.Since(info.ModTime())
		switch {
		case strings.HasSuffix(name, ".tmp"):
			if age > 24*time.Hour {
				os.Remove(path)
			}
		case strings.HasSuffix(name, ".lock"):
			if age > 7*24*time.Hour {
				os.Remove(path)
			}
		case strings.HasPrefix(name, prefix) && strings.HasSuffix(name, suffix) && path != keep:
			files = append(files, file{path, info.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return b.mtime.Compare(a.mtime) })
	for i, f := range files {
		if i >= n {
			os.Remove(f.path)
		}
	}
}

// lock takes the build lock for key, waiting at most cacheLockWait for another process (logf
// says so after a second). The returned function releases it.
func (c *diskCache) lock(key cacheKey, logf func(string, ...any)) func() {
	if c == nil || c.dir == "" {
		return func() {}
	}
	f, err := os.OpenFile(filepath.Join(c.dir, key.String()+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return func() {}
	}
	start := time.Now()
	logged := false
	for {
		ok, err := tryLockFile(f)
		if ok || err != nil {
			break
		}
		if !logged && time.Since(start) > time.Second {
			logf("goeryx: waiting for another process preparing the guest runtime in %s", c.dir)
			logged = true
		}
		if time.Since(start) > cacheLockWait {
			logf("goeryx: still waiting after %v; preparing the guest runtime in this process too", cacheLockWait)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	now := time.Now()
	_ = os.Chtimes(f.Name(), now, now) // in use: not pruned
	return func() { f.Close() }        // closing releases the lock
}

// Sources that decide what the cached files contain, embedded so that a change to any of them
// changes the keys (test files are skipped when hashing).
//
//go:embed *.go internal/abi/*.go internal/abi/*.h internal/instrument/*.go internal/protocol/*.go
var engineSources embed.FS

// sourceHash hashes the embedded non-test files under the given roots ("." = the engine
// package itself, not its subdirectories).
func sourceHash(roots ...string) string {
	h := sha256.New()
	for _, root := range roots {
		entries, err := engineSources.ReadDir(root)
		if err != nil {
			panic(err) // the embed pattern covers every root
		}
		for _, e := range entries {
			if e.IsDir() || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			name := filepath.ToSlash(filepath.Join(root, e.Name()))
			data, _ := engineSources.ReadFile(name)
			fmt.Fprintf(h, "%s %d\n", name, len(data))
			h.Write(data)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
