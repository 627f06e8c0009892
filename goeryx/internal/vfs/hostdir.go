package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// Volume is a host directory or file exposed to the guest.
type Volume interface {
	experimentalsys.FS
	// Check reports an error wrapping fs.ErrNotExist when the host path no longer exists or
	// is no longer the object that was opened at construction (deleted, or replaced).
	Check() error
	// Close releases the host descriptor. Mounts of the volume must not be used afterwards.
	Close() error
	// View returns the volume as one guest sees it, with poll as its Options.Poll. Views
	// share the volume's host descriptor: only the volume itself is closed.
	View(poll func()) experimentalsys.FS
}

// OpenVolume returns HostDir or HostFile depending on what hostPath is (following symlinks).
// A missing path is an error wrapping fs.ErrNotExist.
func OpenVolume(hostPath string, opts Options) (Volume, error) {
	info, err := os.Stat(hostPath)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		return HostDir(hostPath, opts)
	}
	return HostFile(hostPath, opts)
}

// HostDir exposes the host directory dir. Every access goes through an os.Root opened on it,
// so ".." and symbolic links that leave the directory (and absolute ones) are refused (EACCES).
func HostDir(dir string, opts Options) (Volume, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	info, err := root.Stat(".")
	if err != nil {
		root.Close()
		return nil, err
	}
	return &hostDir{path: dir, root: root, info: info, opts: opts}, nil
}

type hostDir struct {
	experimentalsys.UnimplementedFS
	path string
	root *os.Root
	info fs.FileInfo
	opts Options
}

func (d *hostDir) String() string { return d.path }

func (d *hostDir) View(poll func()) experimentalsys.FS {
	v := *d
	v.opts.Poll = poll
	return &v
}

func (d *hostDir) Check() error {
	return checkSame(d.path, d.info, func() (fs.FileInfo, error) { return d.root.Stat(".") })
}

func checkSame(p string, opened fs.FileInfo, current func() (fs.FileInfo, error)) error {
	info, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return fmt.Errorf("%w: %v", fs.ErrNotExist, err)
	}
	if !os.SameFile(info, opened) {
		return &fs.PathError{Op: "check", Path: p, Err: fmt.Errorf("%w: replaced since the volume was opened", fs.ErrNotExist)}
	}
	if _, err := current(); err != nil {
		return &fs.PathError{Op: "check", Path: p, Err: fmt.Errorf("%w: %v", fs.ErrNotExist, err)}
	}
	return nil
}

func (d *hostDir) Close() error { return d.root.Close() }

// rel turns a guest path into a path for os.Root.
func (d *hostDir) rel(p string) (string, []string, bool, experimentalsys.Errno) {
	comps, dirOnly, errno := guestPath(p)
	return relPath(comps), comps, dirOnly, errno
}

func statT(info fs.FileInfo) sys.Stat_t { return sys.NewStat_t(info) }

func (d *hostDir) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	rel, comps, dirOnly, errno := d.rel(p)
	if errno != 0 {
		return nil, errno
	}
	probe := isProbe(comps, flag, perm)
	f, errno := d.open(rel, dirOnly, flag)
	if errno != 0 && probe {
		errno = experimentalsys.ENOENT // anything else makes wazero panic
	}
	return f, errno
}

func (d *hostDir) open(rel string, dirOnly bool, flag experimentalsys.Oflag) (experimentalsys.File, experimentalsys.Errno) {
	read, write := accessMode(flag)
	creat := flag&experimentalsys.O_CREAT != 0
	trunc := flag&experimentalsys.O_TRUNC != 0
	wantDir := flag&experimentalsys.O_DIRECTORY != 0 || dirOnly
	if d.opts.ReadOnly && (write || creat || trunc) {
		return nil, experimentalsys.EACCES
	}
	if wantDir && (write || creat) {
		return nil, experimentalsys.EISDIR
	}
	if flag&experimentalsys.O_NOFOLLOW != 0 {
		if info, err := d.root.Lstat(rel); err == nil && info.Mode()&fs.ModeSymlink != 0 {
			return nil, experimentalsys.ELOOP
		}
	}
	oflag := os.O_RDONLY
	switch {
	case read && write:
		oflag = os.O_RDWR
	case write:
		oflag = os.O_WRONLY
	}
	if creat {
		oflag |= os.O_CREATE
		if flag&experimentalsys.O_EXCL != 0 {
			oflag |= os.O_EXCL
		}
	}
	if trunc {
		oflag |= os.O_TRUNC
	}
	// Only regular files and directories are opened. Opening a FIFO blocks until a peer
	// opens it (forever, beyond the run's deadline: the guest is in a host call), and opening
	// a device can block or have effects. Stat first, so that such a file is never opened;
	// O_NONBLOCK and the fstat below close the race with a file replaced in between.
	if info, err := d.root.Stat(rel); err == nil && !openable(info.Mode()) {
		if creat && flag&experimentalsys.O_EXCL != 0 {
			return nil, experimentalsys.EEXIST
		}
		return nil, experimentalsys.EACCES
	}
	f, err := d.root.OpenFile(rel, oflag|syscall.O_NONBLOCK, 0o666)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) {
			return nil, experimentalsys.EACCES // a FIFO without reader, or a socket
		}
		return nil, osErrno(err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, osErrno(err)
	}
	if !openable(info.Mode()) {
		f.Close()
		return nil, experimentalsys.EACCES
	}
	if wantDir && !info.IsDir() {
		f.Close()
		return nil, experimentalsys.ENOTDIR
	}
	st := statT(info)
	return &hostFile{vol: d, f: f, rel: rel, read: read, write: write,
		append: flag&experimentalsys.O_APPEND != 0, isDir: info.IsDir(), dev: st.Dev, ino: st.Ino}, 0
}

// openable reports the kinds of host file a guest may open: regular files and directories.
// On Linux O_NONBLOCK changes nothing for them.
func openable(m fs.FileMode) bool { return m.IsRegular() || m.IsDir() }

func (d *hostDir) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	rel, _, dirOnly, errno := d.rel(p)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	info, err := d.root.Stat(rel)
	if err != nil {
		return sys.Stat_t{}, osErrno(err)
	}
	if dirOnly && !info.IsDir() {
		return sys.Stat_t{}, experimentalsys.ENOTDIR
	}
	return statT(info), 0
}

func (d *hostDir) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	rel, _, dirOnly, errno := d.rel(p)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	if dirOnly {
		return d.Stat(p)
	}
	info, err := d.root.Lstat(rel)
	if err != nil {
		return sys.Stat_t{}, osErrno(err)
	}
	return statT(info), 0
}

func (d *hostDir) mutable() experimentalsys.Errno {
	if d.opts.ReadOnly {
		return experimentalsys.EACCES
	}
	return 0
}

func (d *hostDir) Mkdir(p string, _ fs.FileMode) experimentalsys.Errno {
	rel, comps, _, errno := d.rel(p)
	if errno != 0 {
		return errno
	}
	if errno := d.mutable(); errno != 0 {
		return errno
	}
	if len(comps) == 0 {
		return experimentalsys.EEXIST
	}
	return osErrno(d.root.Mkdir(rel, 0o777))
}

// Chmod checks that the path exists and does nothing else: a guest must not change host
// permissions (e.g. make a file it wrote executable).
func (d *hostDir) Chmod(p string, _ fs.FileMode) experimentalsys.Errno {
	if _, errno := d.Stat(p); errno != 0 {
		return errno
	}
	return d.mutable()
}

func (d *hostDir) Rename(from, to string) experimentalsys.Errno {
	fromRel, fromComps, fromDirOnly, errno := d.rel(from)
	if errno != 0 {
		return errno
	}
	toRel, toComps, toDirOnly, errno := d.rel(to)
	if errno != 0 {
		return errno
	}
	if errno := d.mutable(); errno != 0 {
		return errno
	}
	if len(fromComps) == 0 || len(toComps) == 0 {
		return experimentalsys.EPERM
	}
	src, err := d.root.Lstat(fromRel)
	if err != nil {
		return osErrno(err)
	}
	if (fromDirOnly || toDirOnly) && !src.IsDir() {
		return experimentalsys.ENOTDIR
	}
	if src.IsDir() && hasPrefix(toComps, fromComps) {
		if len(toComps) == len(fromComps) {
			return 0
		}
		return experimentalsys.EINVAL // into its own subtree
	}
	// os.Root.Rename refuses any existing directory as the target (EEXIST), like os.Rename.
	// POSIX lets a directory replace an empty directory, and says EISDIR for a file.
	if dst, err := d.root.Lstat(toRel); err == nil && dst.IsDir() {
		if os.SameFile(src, dst) {
			return 0
		}
		if !src.IsDir() {
			return experimentalsys.EISDIR
		}
		if err := d.root.Remove(toRel); err != nil {
			if errno := osErrno(err); errno != experimentalsys.EEXIST {
				return errno
			}
			return experimentalsys.ENOTEMPTY
		}
	}
	return osErrno(d.root.Rename(fromRel, toRel))
}

func (d *hostDir) Rmdir(p string) experimentalsys.Errno {
	rel, comps, _, errno := d.rel(p)
	if errno != 0 {
		return errno
	}
	if errno := d.mutable(); errno != 0 {
		return errno
	}
	if len(comps) == 0 {
		return experimentalsys.EPERM
	}
	info, err := d.root.Lstat(rel)
	if err != nil {
		return osErrno(err)
	}
	if !info.IsDir() {
		return experimentalsys.ENOTDIR
	}
	return osErrno(d.root.Remove(rel))
}

func (d *hostDir) Unlink(p string) experimentalsys.Errno {
	rel, comps, dirOnly, errno := d.rel(p)
	if errno != 0 {
		return errno
	}
	if errno := d.mutable(); errno != 0 {
		return errno
	}
	if len(comps) == 0 {
		return experimentalsys.EPERM
	}
	info, err := d.root.Lstat(rel)
	if err != nil {
		return osErrno(err)
	}
	if info.IsDir() {
		return experimentalsys.EISDIR
	}
	if dirOnly {
		return experimentalsys.ENOTDIR
	}
	return osErrno(d.root.Remove(rel))
}

// Link is refused (EPERM): the guest cannot create links on the host.
func (d *hostDir) Link(_, _ string) experimentalsys.Errno { return experimentalsys.EPERM }

// Symlink is refused (EPERM): the guest cannot create links on the host.
func (d *hostDir) Symlink(_, _ string) experimentalsys.Errno { return experimentalsys.EPERM }

// Readlink returns the target of a symbolic link that is relative and stays inside the
// directory; other links are refused with EACCES, and a path that is not a link is EINVAL.
func (d *hostDir) Readlink(p string) (string, experimentalsys.Errno) {
	rel, comps, _, errno := d.rel(p)
	if errno != 0 {
		return "", errno
	}
	info, err := d.root.Lstat(rel)
	if err != nil {
		return "", osErrno(err)
	}
	if info.Mode()&fs.ModeSymlink == 0 {
		return "", experimentalsys.EINVAL
	}
	target, err := d.root.Readlink(rel)
	if err != nil {
		return "", osErrno(err)
	}
	if path.IsAbs(target) || strings.ContainsRune(target, '\\') {
		return "", experimentalsys.EACCES
	}
	resolved := path.Join(path.Dir(strings.Join(comps, "/")), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return "", experimentalsys.EACCES
	}
	return target, 0
}

func (d *hostDir) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	rel, _, _, errno := d.rel(p)
	if errno != 0 {
		return errno
	}
	info, err := d.root.Stat(rel)
	if err != nil {
		return osErrno(err)
	}
	if errno := d.mutable(); errno != 0 {
		return errno
	}
	a, m := utimes(statT(info), atim, mtim)
	return osErrno(d.root.Chtimes(rel, a, m))
}

// utimes resolves UTIME_OMIT against the current times.
func utimes(st sys.Stat_t, atim, mtim int64) (time.Time, time.Time) {
	if atim == experimentalsys.UTIME_OMIT {
		atim = st.Atim
	}
	if mtim == experimentalsys.UTIME_OMIT {
		mtim = st.Mtim
	}
	return time.Unix(0, atim), time.Unix(0, mtim)
}

// hostFile is an open file or directory of a host volume. Appends are emulated (the host file
// is never opened with O_APPEND) so that pwrite works on every handle and SetAppend needs no
// reopen.
type hostFile struct {
	experimentalsys.UnimplementedFile
	vol    interface{ options() *Options }
	f      *os.File
	rel    string
	read   bool
	write  bool
	append bool
	isDir  bool
	closed bool
	dev    uint64
	ino    sys.Inode
	mu     *sync.Mutex // serialises appends on a shared descriptor (HostFile); nil otherwise
	pos    *int64      // own position on a shared descriptor (HostFile); nil: the OS offset
}

func (d *hostDir) options() *Options { return &d.opts }

func (h *hostFile) Dev() (uint64, experimentalsys.Errno) { return h.dev, 0 }

func (h *hostFile) Ino() (sys.Inode, experimentalsys.Errno) { return h.ino, 0 }

func (h *hostFile) IsDir() (bool, experimentalsys.Errno) { return h.isDir, 0 }

func (h *hostFile) IsAppend() bool { return h.append }

func (h *hostFile) SetAppend(enable bool) experimentalsys.Errno {
	if h.closed {
		return experimentalsys.EBADF
	}
	if h.isDir {
		return experimentalsys.EISDIR
	}
	h.append = enable
	return 0
}

func (h *hostFile) Stat() (sys.Stat_t, experimentalsys.Errno) {
	if h.closed {
		return sys.Stat_t{}, experimentalsys.EBADF
	}
	info, err := h.f.Stat()
	if err != nil {
		return sys.Stat_t{}, osErrno(err)
	}
	return statT(info), 0
}

func (h *hostFile) check(want bool) experimentalsys.Errno {
	switch {
	case h.closed:
		return experimentalsys.EBADF
	case h.isDir:
		return experimentalsys.EISDIR
	case !want:
		return experimentalsys.EBADF
	}
	return 0
}

func (h *hostFile) Read(buf []byte) (int, experimentalsys.Errno) {
	if errno := h.check(h.read); errno != 0 {
		return 0, errno
	}
	opts := h.vol.options()
	if h.pos != nil {
		n, err := opts.chunked(buf, func(chunk []byte, _ int64) (int, error) {
			n, err := h.f.ReadAt(chunk, *h.pos)
			*h.pos += int64(n)
			return n, err
		})
		return n, osErrno(err)
	}
	n, err := opts.chunked(buf, func(chunk []byte, _ int64) (int, error) { return h.f.Read(chunk) })
	return n, osErrno(err)
}

func (h *hostFile) Pread(buf []byte, off int64) (int, experimentalsys.Errno) {
	if errno := h.check(h.read); errno != 0 {
		return 0, errno
	}
	if off < 0 {
		return 0, experimentalsys.EINVAL
	}
	n, err := h.vol.options().chunked(buf, func(chunk []byte, at int64) (int, error) {
		return h.f.ReadAt(chunk, off+at)
	})
	return n, osErrno(err)
}

func (h *hostFile) Seek(offset int64, whence int) (int64, experimentalsys.Errno) {
	if h.closed {
		return 0, experimentalsys.EBADF
	}
	if h.isDir {
		if offset != 0 || whence != io.SeekStart {
			return 0, experimentalsys.EISDIR
		}
		// os.File forgets its directory read state on a seek to 0.
		_, err := h.f.Seek(0, io.SeekStart)
		return 0, osErrno(err)
	}
	if uint(whence) > io.SeekEnd {
		return 0, experimentalsys.EINVAL
	}
	if h.pos != nil {
		base := int64(0)
		switch whence {
		case io.SeekCurrent:
			base = *h.pos
		case io.SeekEnd:
			info, err := h.f.Stat()
			if err != nil {
				return 0, osErrno(err)
			}
			base = info.Size()
		}
		pos := base + offset
		if pos < 0 || (offset > 0 && pos < base) {
			return 0, experimentalsys.EINVAL
		}
		*h.pos = pos
		return pos, 0
	}
	pos, err := h.f.Seek(offset, whence)
	return pos, osErrno(err)
}

func (h *hostFile) Readdir(n int) ([]experimentalsys.Dirent, experimentalsys.Errno) {
	if h.closed || !h.isDir {
		return nil, experimentalsys.EBADF
	}
	infos, err := h.f.Readdir(n)
	if err != nil && err != io.EOF {
		return nil, osErrno(err)
	}
	dirents := make([]experimentalsys.Dirent, len(infos))
	for i, info := range infos {
		dirents[i] = experimentalsys.Dirent{Name: info.Name(), Ino: statT(info).Ino, Type: info.Mode().Type()}
	}
	return dirents, 0
}

func (h *hostFile) Write(buf []byte) (int, experimentalsys.Errno) {
	if errno := h.check(h.write); errno != 0 {
		return 0, errno
	}
	if len(buf) == 0 {
		return 0, 0
	}
	opts := h.vol.options()
	data := opts.filter(buf)
	if h.mu != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
	}
	if h.pos != nil {
		if h.append {
			info, err := h.f.Stat()
			if err != nil {
				return 0, osErrno(err)
			}
			*h.pos = info.Size()
		}
		_, err := opts.chunked(data, func(chunk []byte, _ int64) (int, error) {
			n, err := h.f.WriteAt(chunk, *h.pos)
			*h.pos += int64(n)
			return n, err
		})
		if err != nil {
			return 0, osErrno(err)
		}
		return len(buf), 0
	}
	if h.append {
		if _, err := h.f.Seek(0, io.SeekEnd); err != nil {
			return 0, osErrno(err)
		}
	}
	if _, err := opts.chunked(data, func(chunk []byte, _ int64) (int, error) { return h.f.Write(chunk) }); err != nil {
		return 0, osErrno(err)
	}
	return len(buf), 0
}

func (h *hostFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	if errno := h.check(h.write); errno != 0 {
		return 0, errno
	}
	if off < 0 {
		return 0, experimentalsys.EINVAL
	}
	if len(buf) == 0 {
		return 0, 0
	}
	opts := h.vol.options()
	_, err := opts.chunked(opts.filter(buf), func(chunk []byte, at int64) (int, error) {
		return h.f.WriteAt(chunk, off+at)
	})
	if err != nil {
		return 0, osErrno(err)
	}
	return len(buf), 0
}

func (h *hostFile) Truncate(size int64) experimentalsys.Errno {
	if errno := h.check(h.write); errno != 0 {
		return errno
	}
	if size < 0 {
		return experimentalsys.EINVAL
	}
	return osErrno(h.f.Truncate(size))
}

func (h *hostFile) Sync() experimentalsys.Errno {
	if h.closed {
		return experimentalsys.EBADF
	}
	if err := h.f.Sync(); err != nil && !h.isDir && !errors.Is(err, syscall.EINVAL) {
		return osErrno(err)
	}
	return 0
}

func (h *hostFile) Datasync() experimentalsys.Errno { return h.Sync() }

func (h *hostFile) Utimens(atim, mtim int64) experimentalsys.Errno {
	if h.closed {
		return experimentalsys.EBADF
	}
	if h.vol.options().ReadOnly {
		return experimentalsys.EACCES
	}
	st, errno := h.Stat()
	if errno != 0 {
		return errno
	}
	a, m := utimes(st, atim, mtim)
	switch v := h.vol.(type) {
	case *hostDir:
		return osErrno(v.root.Chtimes(h.rel, a, m))
	case *hostFileVol:
		return v.chtimes(a, m)
	}
	return experimentalsys.ENOSYS
}

func (h *hostFile) Close() experimentalsys.Errno {
	if h.closed {
		return 0
	}
	h.closed = true
	if h.pos != nil {
		return 0 // the shared descriptor belongs to the volume
	}
	return osErrno(h.f.Close())
}
