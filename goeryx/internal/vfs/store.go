package vfs

import (
	"io/fs"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

const (
	pageShift = 16
	pageSize  = 1 << pageShift
	pageMask  = pageSize - 1
)

// content is the bytes of one file: a logical size and 64 KiB pages allocated only where data
// was written. A page holds the bytes from its start up to its length; everything else below
// size reads as zeros. Bytes beyond a page's length are never exposed without being zeroed.
type content struct {
	size  int64
	pages map[int64][]byte
}

func (c *content) readAt(buf []byte, off int64) int {
	if off >= c.size || len(buf) == 0 {
		return 0
	}
	if rest := c.size - off; int64(len(buf)) > rest {
		buf = buf[:rest]
	}
	for i := 0; i < len(buf); {
		pos := off + int64(i)
		po := int(pos & pageMask)
		chunk := min(pageSize-po, len(buf)-i)
		dst := buf[i : i+chunk]
		if p := c.pages[pos>>pageShift]; po < len(p) {
			k := copy(dst, p[po:])
			clear(dst[k:])
		} else {
			clear(dst)
		}
		i += chunk
	}
	return len(buf)
}

// writeAt stores data at off. The caller has checked the budget and that off+len(data) does not
// overflow.
func (c *content) writeAt(data []byte, off int64) {
	for i := 0; i < len(data); {
		pos := off + int64(i)
		po := int(pos & pageMask)
		chunk := min(pageSize-po, len(data)-i)
		p := c.page(pos>>pageShift, po+chunk)
		copy(p[po:], data[i:i+chunk])
		i += chunk
	}
	if end := off + int64(len(data)); end > c.size {
		c.size = end
	}
}

// page returns page pi with at least need bytes, zero-filling any newly exposed bytes.
func (c *content) page(pi int64, need int) []byte {
	if c.pages == nil {
		c.pages = make(map[int64][]byte)
	}
	p := c.pages[pi]
	if len(p) >= need {
		return p
	}
	if cap(p) >= need {
		old := len(p)
		p = p[:need]
		clear(p[old:])
	} else {
		np := make([]byte, need, max(need, min(2*cap(p), pageSize)))
		copy(np, p)
		p = np
	}
	c.pages[pi] = p
	return p
}

func (c *content) truncate(size int64) {
	if size < c.size {
		if size == 0 {
			c.pages = nil
		} else {
			last := (size - 1) >> pageShift
			for pi := range c.pages {
				if pi > last {
					delete(c.pages, pi)
				}
			}
			if p := c.pages[last]; len(p) > 0 {
				if keep := int(size - last<<pageShift); len(p) > keep {
					c.pages[last] = p[:keep]
				}
			}
		}
	}
	c.size = size
}

func (c *content) bytes() []byte {
	b := make([]byte, c.size)
	c.readAt(b, 0)
	return b
}

func (c *content) set(data []byte) {
	c.pages = nil
	c.size = 0
	c.writeAt(data, 0)
}

// node is a file or a directory (an inode).
type node struct {
	ino      uint64
	isDir    bool
	perm     fs.FileMode
	children map[string]*node // directories only
	subdirs  int              // directories only: how many children are directories (Nlink)
	data     content          // files only
	nlink    int              // directory entries naming this node: 1, or 0 once removed
	open     int              // open guest handles
	atim     int64
	mtim     int64
	ctim     int64
}

// Store is a thread-safe in-memory file tree capped at a byte budget. The host reaches it
// through ReadFile, WriteFile, List, Remove and Stats; guests through the views made by FS.
// The zero value is not usable; call NewStore.
type Store struct {
	mu      sync.Mutex
	root    *node
	max     int64
	used    int64 // sum of the sizes of live files (linked, or unlinked but open)
	files   int   // linked regular files
	entries int   // live nodes except the root
	nextIno uint64
	dev     uint64
}

var storeDevs atomic.Uint64

// NewStore returns an empty store whose files may total at most maxBytes bytes (a negative
// value is treated as 0).
func NewStore(maxBytes int64) *Store {
	s := &Store{max: max(maxBytes, 0), dev: 0x6572790000 + storeDevs.Add(1)}
	s.root = s.newNode(true)
	s.root.nlink = 1
	s.entries = 0
	return s
}

func now() int64 { return time.Now().UnixNano() }

func (s *Store) newNode(dir bool) *node {
	s.nextIno++
	t := now()
	n := &node{ino: s.nextIno, isDir: dir, perm: 0o644, atim: t, mtim: t, ctim: t}
	if dir {
		n.perm = 0o755
		n.children = make(map[string]*node)
	}
	s.entries++
	return n
}

func (s *Store) stat(n *node) sys.Stat_t {
	st := sys.Stat_t{Dev: s.dev, Ino: n.ino, Mode: n.perm, Nlink: uint64(n.nlink),
		Atim: n.atim, Mtim: n.mtim, Ctim: n.ctim}
	if n.isDir {
		st.Mode |= fs.ModeDir
		st.Nlink = 2 + uint64(n.subdirs)
		if n.nlink == 0 {
			st.Nlink = 0
		}
	} else {
		st.Size = n.data.size
	}
	return st
}

// walk resolves comps from the root. A missing entry is ENOENT, a file in the middle ENOTDIR.
func (s *Store) walk(comps []string) (*node, experimentalsys.Errno) {
	n := s.root
	for _, c := range comps {
		if !n.isDir {
			return nil, experimentalsys.ENOTDIR
		}
		next := n.children[c]
		if next == nil {
			return nil, experimentalsys.ENOENT
		}
		n = next
	}
	return n, 0
}

// walkParent resolves the directory holding the last component of comps (len(comps) > 0).
func (s *Store) walkParent(comps []string) (*node, string, experimentalsys.Errno) {
	parent, errno := s.walk(comps[:len(comps)-1])
	if errno != 0 {
		return nil, "", errno
	}
	if !parent.isDir {
		return nil, "", experimentalsys.ENOTDIR
	}
	return parent, comps[len(comps)-1], 0
}

// checkGrow reports whether a file may grow from oldSize to newSize.
func (s *Store) checkGrow(oldSize, newSize int64) experimentalsys.Errno {
	if newSize < 0 {
		return ErrnoNoSpace // overflow
	}
	if delta := newSize - oldSize; delta > 0 && delta > s.max-s.used {
		return ErrnoNoSpace
	}
	return 0
}

// resize sets a live file's size, charging or freeing the difference. The caller checked growth.
func (s *Store) resize(n *node, size int64) {
	s.used += size - n.data.size
	n.data.truncate(size)
}

// writeAt writes data at off into file n, all or nothing as far as the budget goes. The copy
// is done in chunks with poll (Options.Poll) before each, and the size and the budget follow
// each chunk, so a poll that panics leaves a consistent (shorter) write.
func (s *Store) writeAt(n *node, data []byte, off int64, poll func()) experimentalsys.Errno {
	if off < 0 {
		return experimentalsys.EINVAL
	}
	end := off + int64(len(data))
	if end < off {
		return ErrnoNoSpace
	}
	if end > n.data.size {
		if errno := s.checkGrow(n.data.size, end); errno != 0 {
			return errno
		}
	}
	for i := 0; i < len(data); i += ioChunk {
		poll()
		chunk := data[i:min(len(data), i+ioChunk)]
		at := off + int64(i)
		if e := at + int64(len(chunk)); e > n.data.size {
			s.used += e - n.data.size
		}
		n.data.writeAt(chunk, at)
	}
	t := now()
	n.mtim, n.ctim = t, t
	return 0
}

// link adds n to dir under name.
func (s *Store) link(dir *node, name string, n *node) {
	dir.children[name] = n
	n.nlink = 1
	if n.isDir {
		dir.subdirs++
	} else {
		s.files++
	}
	t := now()
	dir.mtim, dir.ctim = t, t
}

// unlink removes the entry name (naming n) from dir, freeing n if nothing holds it open.
func (s *Store) unlink(dir *node, name string, n *node) {
	delete(dir.children, name)
	n.nlink = 0
	if n.isDir {
		dir.subdirs--
	} else {
		s.files--
	}
	t := now()
	dir.mtim, dir.ctim = t, t
	n.ctim = t
	s.maybeFree(n)
}

func (s *Store) maybeFree(n *node) {
	if n.nlink == 0 && n.open == 0 {
		if !n.isDir {
			s.used -= n.data.size
			n.data = content{}
		}
		s.entries--
	}
}

func (s *Store) release(n *node) {
	n.open--
	s.maybeFree(n)
}

// ReadFile returns a copy of the file's contents. Errors: ErrInvalidPath, and fs.PathErrors
// wrapping syscall.ENOENT, EISDIR or ENOTDIR.
func (s *Store) ReadFile(path string) ([]byte, error) {
	comps, dirOnly, err := hostPath(path)
	if err != nil {
		return nil, err
	}
	if len(comps) == 0 {
		return nil, invalidPath(path, "empty file path")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, errno := s.walk(comps)
	if errno != 0 {
		return nil, hostErr("read", path, errno)
	}
	if n.isDir {
		return nil, hostErr("read", path, experimentalsys.EISDIR)
	}
	if dirOnly {
		return nil, hostErr("read", path, experimentalsys.ENOTDIR)
	}
	return n.data.bytes(), nil
}

// WriteFile creates or replaces the file at path with a copy of data, creating any missing
// parent directories. It is all or nothing: if the new size does not fit the budget (or the
// entries do not fit MaxEntries) it fails with syscall.ENOSPC and changes nothing. A replaced
// file keeps its identity, so guest handles open on it see the new contents.
func (s *Store) WriteFile(path string, data []byte) error {
	comps, dirOnly, err := hostPath(path)
	if err != nil {
		return err
	}
	if len(comps) == 0 {
		return invalidPath(path, "empty file path")
	}
	if dirOnly {
		return hostErr("write", path, experimentalsys.EISDIR)
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	// First pass: find what exists and check every limit before changing anything.
	n := s.root
	depth := 0
	for ; depth < len(comps)-1; depth++ {
		next := n.children[comps[depth]]
		if next == nil {
			break
		}
		if !next.isDir {
			return hostErr("write", path, experimentalsys.ENOTDIR)
		}
		n = next
	}
	var target *node
	newEntries := len(comps) - depth // missing directories plus the file
	if depth == len(comps)-1 {
		if target = n.children[comps[depth]]; target != nil {
			if target.isDir {
				return hostErr("write", path, experimentalsys.EISDIR)
			}
			newEntries = 0
		}
	}
	if s.entries+newEntries > MaxEntries {
		return hostErr("write", path, ErrnoNoSpace)
	}
	var oldSize int64
	if target != nil {
		oldSize = target.data.size
	}
	if errno := s.checkGrow(oldSize, int64(len(data))); errno != 0 {
		return hostErr("write", path, errno)
	}

	// Second pass: apply.
	for ; depth < len(comps)-1; depth++ {
		d := s.newNode(true)
		s.link(n, comps[depth], d)
		n = d
	}
	if target == nil {
		target = s.newNode(false)
		s.link(n, comps[depth], target)
	}
	s.used += int64(len(data)) - target.data.size
	target.data.set(data)
	t := now()
	target.mtim, target.ctim = t, t
	return nil
}

// List returns the sorted names in the directory at path ("" or "/" is the root), with a
// trailing "/" on subdirectories. Errors: ErrInvalidPath, ENOENT, ENOTDIR.
func (s *Store) List(path string) ([]string, error) {
	comps, _, err := hostPath(path)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, errno := s.walk(comps)
	if errno != 0 {
		return nil, hostErr("list", path, errno)
	}
	if !n.isDir {
		return nil, hostErr("list", path, experimentalsys.ENOTDIR)
	}
	names := make([]string, 0, len(n.children))
	for name, c := range n.children {
		if c.isDir {
			name += "/"
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// Remove removes the file or empty directory at path. Errors: ErrInvalidPath (also for the
// root), ENOENT, ENOTDIR (a trailing "/" on a file), ENOTEMPTY.
func (s *Store) Remove(path string) error {
	comps, dirOnly, err := hostPath(path)
	if err != nil {
		return err
	}
	if len(comps) == 0 {
		return invalidPath(path, "empty file path")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir, name, errno := s.walkParent(comps)
	if errno != 0 {
		return hostErr("remove", path, errno)
	}
	n := dir.children[name]
	switch {
	case n == nil:
		return hostErr("remove", path, experimentalsys.ENOENT)
	case !n.isDir && dirOnly:
		return hostErr("remove", path, experimentalsys.ENOTDIR)
	case n.isDir && len(n.children) > 0:
		return hostErr("remove", path, experimentalsys.ENOTEMPTY)
	}
	s.unlink(dir, name, n)
	return nil
}

// Stats returns the number of files, the bytes charged to the budget and the budget. Bytes of
// files that were removed while a guest still has them open stay charged until they are closed.
func (s *Store) Stats() (files int, usedBytes, maxBytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files, s.used, s.max
}
