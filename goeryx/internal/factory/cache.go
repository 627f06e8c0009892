package factory

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The packages root (<cache>/factory-packages) is a bounded cache shared by every process of
// the user: staged trees (p1-<hash>), trees extracted from loaded files (f-<hash>) and, for
// factories built with cache=True, captured images (i-<key>.img). Entries are evicted least
// recently used first once the root holds more than CacheLimits allow, except:
//   - a tree that a live factory of any process uses: each holds a Lease, a shared flock on
//     the tree's directory, and eviction needs an exclusive one (non-blocking);
//   - anything used in the last CacheLimits.Grace (a build between staging and leasing, or a
//     reader between finding an image and opening it).
// Use is recorded in the entry's mtime. Eviction renames a tree to tmp-… before removing it,
// so a directory that exists under its final name is complete.

// CacheLimits bound the packages root.
type CacheLimits struct {
	MaxBytes   int64         // total size of the entries
	MaxEntries int           // number of entries
	Grace      time.Duration // entries used more recently are never evicted
}

// DefaultCacheLimits: room for a few dozen factories of typical size (jinja2 ~10 MB staged,
// sympy ~120 MB).
var DefaultCacheLimits = CacheLimits{MaxBytes: 2 << 30, MaxEntries: 64, Grace: 10 * time.Minute}

// CacheLimitsFromEnv are DefaultCacheLimits with GOERYX_FACTORY_CACHE_BYTES (a byte count)
// applied when it is set and valid.
func CacheLimitsFromEnv() CacheLimits {
	lim := DefaultCacheLimits
	if v := os.Getenv("GOERYX_FACTORY_CACHE_BYTES"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			lim.MaxBytes = n
		}
	}
	return lim
}

// Lease keeps a tree of the packages root from being evicted while it is used.
type Lease struct{ f *os.File }

// Release ends the lease (nil-safe, idempotent).
func (l *Lease) Release() {
	if l != nil && l.f != nil {
		l.f.Close() // closing the descriptor drops its flock
		l.f = nil
	}
}

// Acquire leases dir, a tree of the packages root, and records its use. It fails (ok false)
// when dir does not exist, or was evicted while the lease was being taken.
func Acquire(dir string) (*Lease, bool) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, false
	}
	if err := lockShared(f); err != nil {
		f.Close()
		return nil, false
	}
	// An eviction may have renamed the directory between open and lock: the name must still
	// lead to the directory we locked.
	st, err1 := f.Stat()
	cur, err2 := os.Stat(dir)
	if err1 != nil || err2 != nil || !os.SameFile(st, cur) || !st.IsDir() {
		f.Close()
		return nil, false
	}
	touch(dir)
	return &Lease{f: f}, true
}

func touch(p string) {
	now := time.Now()
	_ = os.Chtimes(p, now, now)
}

const (
	imagePrefix = "i-"
	imageSuffix = ".img"
	imageMagic  = "GOERYX-FACTORY-IMAGE-1\n"
)

func imagePath(root, key string) string {
	return filepath.Join(root, imagePrefix+key[:min(len(key), 64)]+imageSuffix)
}

// SaveImage stores a captured image under key in root (cache=True across processes): written
// to a temporary file and renamed, so a reader sees all of it or nothing. Errors are ignored
// by callers: the cache is an optimisation.
func SaveImage(root, key string, image []byte) error {
	enc := imageEncode(image)
	sum := sha256.Sum256(enc)
	tmp, err := os.CreateTemp(root, "tmp-image-")
	if err != nil {
		return err
	}
	var hdr bytes.Buffer
	hdr.WriteString(imageMagic)
	fmt.Fprintf(&hdr, "%s %d %x\n", key, len(image), sum)
	_, err = tmp.Write(hdr.Bytes())
	if err == nil {
		_, err = tmp.Write(enc)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), imagePath(root, key))
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// LoadImage returns the image stored under key, or nil when there is none or it is damaged
// (then it is removed). The file is checked like a factory file's image: key, size bound,
// SHA-256 of the content.
func LoadImage(root, key string) []byte {
	p := imagePath(root, key)
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() > MaxImageBytes+MaxImageBytes/imagePage/8+4096 {
		return nil
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil
	}
	img, err := decodeCachedImage(data, key)
	if err != nil {
		os.Remove(p)
		return nil
	}
	touch(p)
	return img
}

func decodeCachedImage(data []byte, key string) ([]byte, error) {
	rest, ok := bytes.CutPrefix(data, []byte(imageMagic))
	if !ok {
		return nil, errors.New("not an image")
	}
	line, enc, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, errors.New("truncated")
	}
	f := strings.Fields(string(line))
	if len(f) != 3 || f[0] != key {
		return nil, errors.New("another key")
	}
	size, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil || size == 0 || size > MaxImageBytes || size%imagePage != 0 {
		return nil, errors.New("invalid size")
	}
	sum := sha256.Sum256(enc)
	if fmt.Sprintf("%x", sum) != f[2] {
		return nil, errors.New("checksum mismatch")
	}
	return imageDecode(enc, size)
}

type cacheEntry struct {
	name  string
	used  time.Time
	bytes int64
}

// Prune evicts the least recently used entries of root until it is within lim. Entries
// leased by live factories (in any process) and entries used within lim.Grace stay.
func Prune(root string, lim CacheLimits) {
	if !canLock {
		return // without locks, a tree in use could not be told from an unused one
	}
	dirents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	var entries []cacheEntry
	var total int64
	for _, d := range dirents {
		name := d.Name()
		isTree := d.IsDir() && (strings.HasPrefix(name, stagedPrefix) || strings.HasPrefix(name, "f-"))
		isImage := d.Type().IsRegular() && strings.HasPrefix(name, imagePrefix) && strings.HasSuffix(name, imageSuffix)
		if !isTree && !isImage {
			continue
		}
		info, err := d.Info()
		if err != nil {
			continue
		}
		e := cacheEntry{name: name, used: info.ModTime(), bytes: info.Size()}
		if isTree {
			e.bytes = treeBytes(filepath.Join(root, name))
		}
		entries = append(entries, e)
		total += e.bytes
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].used.Before(entries[j].used) })
	count := len(entries)
	cutoff := time.Now().Add(-lim.Grace)
	for _, e := range entries {
		if total <= lim.MaxBytes && count <= lim.MaxEntries {
			return
		}
		if !e.used.Before(cutoff) {
			return // sorted: every later entry is as recent
		}
		if evict(root, e.name) {
			total -= e.bytes
			count--
		}
	}
}

// treeBytes is the size of the files under dir (what eviction frees).
func treeBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// evict removes the entry name of root unless a live factory leases it.
func evict(root, name string) bool {
	p := filepath.Join(root, name)
	if strings.HasSuffix(name, imageSuffix) {
		return os.Remove(p) == nil // readers that opened it keep reading
	}
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if !tryLockExclusive(f) {
		return false // leased
	}
	gone, err := os.MkdirTemp(root, "tmp-evicted-")
	if err != nil {
		return false
	}
	// Rename under the lock: a process leasing the name now either locked before us (and we
	// failed above) or finds the name gone once we unlock.
	if err := os.Rename(p, filepath.Join(gone, "tree")); err != nil {
		os.Remove(gone)
		return false
	}
	os.RemoveAll(gone)
	return true
}
