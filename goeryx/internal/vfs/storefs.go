package vfs

import (
	"io"
	"io/fs"
	"sort"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// Options configure a guest view of a Store or a host volume.
type Options struct {
	// ReadOnly refuses every change with EACCES (PermissionError in the guest).
	ReadOnly bool
	// WriteFilter, when set, is applied to the bytes of every write (write and pwrite) before
	// they are stored; what it returns is stored instead, and the guest is told its whole
	// buffer was written. It receives guest memory: it must not modify or retain its argument,
	// and must be safe for concurrent use. A filter that changes lengths shifts the file
	// offsets the guest expects (the position advances by what was stored).
	WriteFilter func([]byte) []byte
	// Poll, when set, is called on the guest's goroutine at the start of every read and write
	// and between the chunks of ioChunk bytes that a large one is split into, so that the
	// engine can enforce the run's deadline and cancellation while the guest is in a long file
	// operation: one guest write of gigabytes is a single host call. Poll may panic to abort
	// the guest call; the file system's locks are released and its accounting stays
	// consistent (a write stopped between chunks leaves its first chunks written).
	Poll func()
}

// ioChunk is the most a view moves between two calls of Options.Poll: about a millisecond of
// copying, so a guest cannot outlive its deadline by more than that in one call.
const ioChunk = 4 << 20

func (o *Options) filter(b []byte) []byte {
	if o.WriteFilter == nil {
		return b
	}
	return o.WriteFilter(b)
}

func (o *Options) poll() {
	if o.Poll != nil {
		o.Poll()
	}
}

// chunked runs op on consecutive chunks of at most ioChunk bytes of buf (off is the chunk's
// offset in buf), calling Poll before each. It stops at the first error or short count and
// returns the bytes done.
func (o *Options) chunked(buf []byte, op func(chunk []byte, off int64) (int, error)) (int, error) {
	done := 0
	for done < len(buf) {
		o.poll()
		chunk := buf[done:min(len(buf), done+ioChunk)]
		n, err := op(chunk, int64(done))
		done += n
		if err != nil || n < len(chunk) {
			return done, err
		}
	}
	return done, nil
}

// FS returns a view of the store for mounting with sysfs.FSConfig.WithSysFSMount. Views are
// cheap; any number of them, with different options, may be mounted at once.
func (s *Store) FS(opts Options) experimentalsys.FS {
	return &storeFS{s: s, opts: opts}
}

type storeFS struct {
	experimentalsys.UnimplementedFS
	s    *Store
	opts Options
}

const accModeMask = experimentalsys.O_RDONLY | experimentalsys.O_RDWR | experimentalsys.O_WRONLY

func accessMode(flag experimentalsys.Oflag) (read, write bool) {
	switch flag & accModeMask {
	case experimentalsys.O_RDWR:
		return true, true
	case experimentalsys.O_WRONLY:
		return false, true
	default:
		return true, false
	}
}

// isProbe reports wazero's lazy open of a mount's root (see the package documentation).
func isProbe(comps []string, flag experimentalsys.Oflag, perm fs.FileMode) bool {
	return len(comps) == 0 && flag == experimentalsys.O_RDONLY && perm == 0
}

func (f *storeFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	comps, dirOnly, errno := guestPath(path)
	if errno != 0 {
		return nil, errno
	}
	read, write := accessMode(flag)
	creat := flag&experimentalsys.O_CREAT != 0
	trunc := flag&experimentalsys.O_TRUNC != 0
	wantDir := flag&experimentalsys.O_DIRECTORY != 0 || dirOnly
	if f.opts.ReadOnly && (write || creat || trunc) {
		return nil, experimentalsys.EACCES
	}
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()

	var n *node
	if len(comps) == 0 {
		n = s.root
	} else {
		dir, name, errno := s.walkParent(comps)
		if errno != 0 {
			return nil, errno
		}
		n = dir.children[name]
		if n == nil {
			if !creat {
				return nil, experimentalsys.ENOENT
			}
			if wantDir {
				return nil, experimentalsys.EISDIR
			}
			if s.entries >= MaxEntries {
				return nil, ErrnoNoSpace
			}
			n = s.newNode(false)
			if p := perm.Perm(); p != 0 {
				n.perm = p
			}
			s.link(dir, name, n)
		} else if creat && flag&experimentalsys.O_EXCL != 0 {
			return nil, experimentalsys.EEXIST
		}
	}
	if n.isDir {
		if write || creat || trunc {
			return nil, experimentalsys.EISDIR
		}
	} else {
		if wantDir {
			return nil, experimentalsys.ENOTDIR
		}
		if trunc && n.data.size > 0 {
			s.resize(n, 0)
			t := now()
			n.mtim, n.ctim = t, t
		}
	}
	n.open++
	return &storeFile{fs: f, n: n, read: read, write: write,
		append: flag&experimentalsys.O_APPEND != 0}, 0
}

func (f *storeFS) lookup(path string) (*node, experimentalsys.Errno) {
	comps, dirOnly, errno := guestPath(path)
	if errno != 0 {
		return nil, errno
	}
	n, errno := f.s.walk(comps)
	if errno != 0 {
		return nil, errno
	}
	if dirOnly && !n.isDir {
		return nil, experimentalsys.ENOTDIR
	}
	return n, 0
}

func (f *storeFS) Stat(path string) (sys.Stat_t, experimentalsys.Errno) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	n, errno := f.lookup(path)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return f.s.stat(n), 0
}

// Lstat is Stat: a store has no symbolic links.
func (f *storeFS) Lstat(path string) (sys.Stat_t, experimentalsys.Errno) {
	return f.Stat(path)
}

func (f *storeFS) Mkdir(path string, perm fs.FileMode) experimentalsys.Errno {
	comps, _, errno := guestPath(path)
	if errno != 0 {
		return errno
	}
	if f.opts.ReadOnly {
		return experimentalsys.EACCES
	}
	if len(comps) == 0 {
		return experimentalsys.EEXIST
	}
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	dir, name, errno := s.walkParent(comps)
	if errno != 0 {
		return errno
	}
	if dir.children[name] != nil {
		return experimentalsys.EEXIST
	}
	if s.entries >= MaxEntries {
		return ErrnoNoSpace
	}
	d := s.newNode(true)
	if p := perm.Perm(); p != 0 {
		d.perm = p
	}
	s.link(dir, name, d)
	return 0
}

// Chmod stores the permission bits; nothing enforces them (WASI does not even report them).
func (f *storeFS) Chmod(path string, perm fs.FileMode) experimentalsys.Errno {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	n, errno := f.lookup(path)
	if errno != 0 {
		return errno
	}
	if f.opts.ReadOnly {
		return experimentalsys.EACCES
	}
	n.perm = perm.Perm()
	n.ctim = now()
	return 0
}

func (f *storeFS) Rename(from, to string) experimentalsys.Errno {
	fromComps, fromDirOnly, errno := guestPath(from)
	if errno != 0 {
		return errno
	}
	toComps, toDirOnly, errno := guestPath(to)
	if errno != 0 {
		return errno
	}
	if f.opts.ReadOnly {
		return experimentalsys.EACCES
	}
	if len(fromComps) == 0 || len(toComps) == 0 {
		return experimentalsys.EPERM // the mount point itself
	}
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	fromDir, fromName, errno := s.walkParent(fromComps)
	if errno != 0 {
		return errno
	}
	src := fromDir.children[fromName]
	if src == nil {
		return experimentalsys.ENOENT
	}
	toDir, toName, errno := s.walkParent(toComps)
	if errno != 0 {
		return errno
	}
	if !src.isDir && (fromDirOnly || toDirOnly) {
		return experimentalsys.ENOTDIR
	}
	dst := toDir.children[toName]
	if dst == src {
		return 0
	}
	if src.isDir && hasPrefix(toComps, fromComps) {
		return experimentalsys.EINVAL // into its own subtree
	}
	if dst != nil {
		if src.isDir {
			if !dst.isDir {
				return experimentalsys.ENOTDIR
			}
			if len(dst.children) > 0 {
				return experimentalsys.ENOTEMPTY
			}
		} else if dst.isDir {
			return experimentalsys.EISDIR
		}
		s.unlink(toDir, toName, dst)
	}
	delete(fromDir.children, fromName)
	if src.isDir {
		fromDir.subdirs-- // link counts it again, in toDir
	} else {
		s.files-- // link counts it again
	}
	t := now()
	fromDir.mtim, fromDir.ctim = t, t
	s.link(toDir, toName, src)
	src.ctim = t
	return 0
}

func (f *storeFS) Rmdir(path string) experimentalsys.Errno {
	return f.remove(path, func(n *node, _ bool) experimentalsys.Errno {
		switch {
		case !n.isDir:
			return experimentalsys.ENOTDIR
		case len(n.children) > 0:
			return experimentalsys.ENOTEMPTY
		}
		return 0
	})
}

func (f *storeFS) Unlink(path string) experimentalsys.Errno {
	return f.remove(path, func(n *node, dirOnly bool) experimentalsys.Errno {
		switch {
		case n.isDir:
			return experimentalsys.EISDIR
		case dirOnly:
			return experimentalsys.ENOTDIR
		}
		return 0
	})
}

// remove unlinks the entry at path once check accepts it (Rmdir, Unlink); dirOnly says the
// path ended with "/". The mount point itself cannot be removed.
func (f *storeFS) remove(path string, check func(n *node, dirOnly bool) experimentalsys.Errno) experimentalsys.Errno {
	comps, dirOnly, errno := guestPath(path)
	if errno != 0 {
		return errno
	}
	if f.opts.ReadOnly {
		return experimentalsys.EACCES
	}
	if len(comps) == 0 {
		return experimentalsys.EPERM
	}
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	dir, name, errno := s.walkParent(comps)
	if errno != 0 {
		return errno
	}
	n := dir.children[name]
	if n == nil {
		return experimentalsys.ENOENT
	}
	if errno := check(n, dirOnly); errno != 0 {
		return errno
	}
	s.unlink(dir, name, n)
	return 0
}

// Link is refused: a store has no links (EPERM, as on a file system without hard links).
func (f *storeFS) Link(_, _ string) experimentalsys.Errno { return experimentalsys.EPERM }

// Symlink is refused: a store has no links.
func (f *storeFS) Symlink(_, _ string) experimentalsys.Errno { return experimentalsys.EPERM }

// Readlink fails with EINVAL for an existing path (it is not a symbolic link).
func (f *storeFS) Readlink(path string) (string, experimentalsys.Errno) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if _, errno := f.lookup(path); errno != 0 {
		return "", errno
	}
	return "", experimentalsys.EINVAL
}

func (f *storeFS) Utimens(path string, atim, mtim int64) experimentalsys.Errno {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	n, errno := f.lookup(path)
	if errno != 0 {
		return errno
	}
	if f.opts.ReadOnly {
		return experimentalsys.EACCES
	}
	setTimes(n, atim, mtim)
	return 0
}

func setTimes(n *node, atim, mtim int64) {
	if atim != experimentalsys.UTIME_OMIT {
		n.atim = atim
	}
	if mtim != experimentalsys.UTIME_OMIT {
		n.mtim = mtim
	}
	n.ctim = now()
}

// storeFile is an open file or directory of a Store view.
type storeFile struct {
	experimentalsys.UnimplementedFile
	fs     *storeFS
	n      *node
	read   bool
	write  bool
	append bool
	closed bool
	pos    int64

	// directories: the listing taken at the first Readdir after opening or rewinding.
	dirents []experimentalsys.Dirent
	listed  bool
}

func (h *storeFile) lock() func() {
	h.fs.s.mu.Lock()
	return h.fs.s.mu.Unlock
}

func (h *storeFile) Dev() (uint64, experimentalsys.Errno) { return h.fs.s.dev, 0 }

func (h *storeFile) Ino() (sys.Inode, experimentalsys.Errno) { return h.n.ino, 0 }

func (h *storeFile) IsDir() (bool, experimentalsys.Errno) { return h.n.isDir, 0 }

func (h *storeFile) IsAppend() bool { return h.append }

func (h *storeFile) SetAppend(enable bool) experimentalsys.Errno {
	if h.closed {
		return experimentalsys.EBADF
	}
	if h.n.isDir {
		return experimentalsys.EISDIR
	}
	h.append = enable
	return 0
}

func (h *storeFile) Stat() (sys.Stat_t, experimentalsys.Errno) {
	if h.closed {
		return sys.Stat_t{}, experimentalsys.EBADF
	}
	defer h.lock()()
	return h.fs.s.stat(h.n), 0
}

func (h *storeFile) readable() experimentalsys.Errno {
	switch {
	case h.closed:
		return experimentalsys.EBADF
	case h.n.isDir:
		return experimentalsys.EISDIR
	case !h.read:
		return experimentalsys.EBADF
	}
	return 0
}

func (h *storeFile) writable() experimentalsys.Errno {
	switch {
	case h.closed:
		return experimentalsys.EBADF
	case h.n.isDir:
		return experimentalsys.EISDIR
	case !h.write:
		return experimentalsys.EBADF
	}
	return 0
}

func (h *storeFile) Read(buf []byte) (int, experimentalsys.Errno) {
	if errno := h.readable(); errno != 0 {
		return 0, errno
	}
	defer h.lock()()
	n := h.readAt(buf, h.pos)
	h.pos += int64(n)
	return n, 0
}

// readAt copies the file's bytes at off into buf, in chunks (Options.Poll). The caller holds the
// store's lock.
func (h *storeFile) readAt(buf []byte, off int64) int {
	n, _ := h.fs.opts.chunked(buf, func(chunk []byte, at int64) (int, error) {
		return h.n.data.readAt(chunk, off+at), nil
	})
	return n
}

func (h *storeFile) Pread(buf []byte, off int64) (int, experimentalsys.Errno) {
	if errno := h.readable(); errno != 0 {
		return 0, errno
	}
	if off < 0 {
		return 0, experimentalsys.EINVAL
	}
	defer h.lock()()
	return h.readAt(buf, off), 0
}

func (h *storeFile) Seek(offset int64, whence int) (int64, experimentalsys.Errno) {
	if h.closed {
		return 0, experimentalsys.EBADF
	}
	if h.n.isDir {
		if offset != 0 || whence != io.SeekStart {
			return 0, experimentalsys.EISDIR
		}
		h.dirents, h.listed = nil, false
		return 0, 0
	}
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = h.pos
	case io.SeekEnd:
		unlock := h.lock()
		base = h.n.data.size
		unlock()
	default:
		return 0, experimentalsys.EINVAL
	}
	pos := base + offset
	if (offset > 0 && pos < base) || pos < 0 {
		return 0, experimentalsys.EINVAL
	}
	h.pos = pos
	return pos, 0
}

func (h *storeFile) Readdir(n int) ([]experimentalsys.Dirent, experimentalsys.Errno) {
	if h.closed || !h.n.isDir {
		return nil, experimentalsys.EBADF
	}
	if !h.listed {
		unlock := h.lock()
		names := make([]string, 0, len(h.n.children))
		for name := range h.n.children {
			names = append(names, name)
		}
		sort.Strings(names)
		h.dirents = make([]experimentalsys.Dirent, len(names))
		for i, name := range names {
			c := h.n.children[name]
			d := experimentalsys.Dirent{Name: name, Ino: c.ino}
			if c.isDir {
				d.Type = fs.ModeDir
			}
			h.dirents[i] = d
		}
		unlock()
		h.listed = true
	}
	k := len(h.dirents)
	if n > 0 && n < k {
		k = n
	}
	out := h.dirents[:k:k]
	h.dirents = h.dirents[k:]
	return out, 0
}

func (h *storeFile) Write(buf []byte) (int, experimentalsys.Errno) {
	if errno := h.writable(); errno != 0 {
		return 0, errno
	}
	if len(buf) == 0 {
		return 0, 0
	}
	data := h.fs.opts.filter(buf)
	defer h.lock()()
	if h.append {
		h.pos = h.n.data.size
	}
	if errno := h.fs.s.writeAt(h.n, data, h.pos, h.fs.opts.poll); errno != 0 {
		return 0, errno
	}
	h.pos += int64(len(data))
	return len(buf), 0
}

func (h *storeFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	if errno := h.writable(); errno != 0 {
		return 0, errno
	}
	if off < 0 {
		return 0, experimentalsys.EINVAL
	}
	if len(buf) == 0 {
		return 0, 0
	}
	data := h.fs.opts.filter(buf)
	defer h.lock()()
	if errno := h.fs.s.writeAt(h.n, data, off, h.fs.opts.poll); errno != 0 {
		return 0, errno
	}
	return len(buf), 0
}

func (h *storeFile) Truncate(size int64) experimentalsys.Errno {
	if errno := h.writable(); errno != 0 {
		return errno
	}
	if size < 0 {
		return experimentalsys.EINVAL
	}
	defer h.lock()()
	s := h.fs.s
	if errno := s.checkGrow(h.n.data.size, size); errno != 0 {
		return errno
	}
	s.resize(h.n, size)
	t := now()
	h.n.mtim, h.n.ctim = t, t
	return 0
}

func (h *storeFile) Sync() experimentalsys.Errno {
	if h.closed {
		return experimentalsys.EBADF
	}
	return 0
}

func (h *storeFile) Datasync() experimentalsys.Errno { return h.Sync() }

func (h *storeFile) Utimens(atim, mtim int64) experimentalsys.Errno {
	if h.closed {
		return experimentalsys.EBADF
	}
	if h.fs.opts.ReadOnly {
		return experimentalsys.EACCES
	}
	defer h.lock()()
	setTimes(h.n, atim, mtim)
	return 0
}

func (h *storeFile) Close() experimentalsys.Errno {
	if h.closed {
		return 0
	}
	h.closed = true
	defer h.lock()()
	h.fs.s.release(h.n)
	return 0
}
