package vfs

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// HostFile exposes the single host file at file as a whole mount: mount it at the guest path of
// the file itself (WithSysFSMount(v, "/etc/app.json")). The mount's "." is the file, so open,
// stat, read, write, truncate and utime on the guest path work; nothing lies beneath it
// (ENOTDIR), and it cannot be removed or renamed (EPERM). The file is opened once, here, and
// every guest handle shares that descriptor with its own offset, so siblings are unreachable
// even if the host path is later replaced by a symbolic link.
//
// If the host file is not writable, a writable volume still opens, and writes fail with EACCES.
func HostFile(file string, opts Options) (Volume, error) {
	info, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		return nil, &fs.PathError{Op: "open", Path: file, Err: syscall.EISDIR}
	}
	if !info.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: file, Err: errors.New("not a regular file")}
	}
	// O_NONBLOCK: if the path is replaced by a FIFO after the Stat above, the open must not
	// wait for a writer (the check below then refuses it).
	var f *os.File
	writable := !opts.ReadOnly
	if writable {
		if f, err = os.OpenFile(file, os.O_RDWR|syscall.O_NONBLOCK, 0); err != nil {
			if !errors.Is(err, fs.ErrPermission) && !errors.Is(err, syscall.EROFS) {
				return nil, err
			}
			writable = false
		}
	}
	if f == nil {
		if f, err = os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
			return nil, err
		}
	}
	opened, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !os.SameFile(opened, info) {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: file, Err: errors.New("file changed while opening")}
	}
	st := statT(opened)
	return &hostFileVol{path: file, f: f, info: opened, opts: opts, writable: writable,
		dev: st.Dev, ino: st.Ino, mu: new(sync.Mutex)}, nil
}

type hostFileVol struct {
	experimentalsys.UnimplementedFS
	path     string
	f        *os.File
	info     fs.FileInfo
	opts     Options
	writable bool // the descriptor is open for writing
	dev      uint64
	ino      sys.Inode
	mu       *sync.Mutex // serialises appends, shared by the views
}

func (v *hostFileVol) String() string { return v.path }

func (v *hostFileVol) View(poll func()) experimentalsys.FS {
	c := *v
	c.opts.Poll = poll
	return &c
}

func (v *hostFileVol) options() *Options { return &v.opts }

func (v *hostFileVol) Check() error {
	return checkSame(v.path, v.info, func() (fs.FileInfo, error) { return v.f.Stat() })
}

func (v *hostFileVol) Close() error { return v.f.Close() }

func (v *hostFileVol) chtimes(a, m time.Time) experimentalsys.Errno {
	// Go has no futimens; change the path only while it still names the opened file.
	if err := v.Check(); err != nil {
		return experimentalsys.ENOENT
	}
	return osErrno(os.Chtimes(v.path, a, m))
}

// self resolves a guest path: "." (the file) is fine, anything beneath it is ENOTDIR.
func (v *hostFileVol) self(p string) ([]string, experimentalsys.Errno) {
	comps, dirOnly, errno := guestPath(p)
	if errno != 0 {
		return nil, errno
	}
	if len(comps) > 0 || dirOnly {
		return nil, experimentalsys.ENOTDIR
	}
	return comps, 0
}

func (v *hostFileVol) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	comps, errno := v.self(p)
	if errno != 0 {
		return nil, errno
	}
	if isProbe(comps, flag, perm) {
		// wazero's preopen of the mount: it must be a directory, or every path under the
		// mount (including the mount's own ".") fails with ENOTDIR before reaching us.
		return &mountDir{dev: v.dev, ino: v.ino}, 0
	}
	read, write := accessMode(flag)
	creat := flag&experimentalsys.O_CREAT != 0
	trunc := flag&experimentalsys.O_TRUNC != 0
	switch {
	case flag&experimentalsys.O_DIRECTORY != 0:
		return nil, experimentalsys.ENOTDIR
	case creat && flag&experimentalsys.O_EXCL != 0:
		return nil, experimentalsys.EEXIST
	case (write || trunc) && !v.writable:
		return nil, experimentalsys.EACCES
	}
	if trunc {
		if err := v.f.Truncate(0); err != nil {
			return nil, osErrno(err)
		}
	}
	var pos int64
	return &hostFile{vol: v, f: v.f, rel: ".", read: read, write: write,
		append: flag&experimentalsys.O_APPEND != 0, dev: v.dev, ino: v.ino, mu: v.mu, pos: &pos}, 0
}

func (v *hostFileVol) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	if _, errno := v.self(p); errno != 0 {
		return sys.Stat_t{}, errno
	}
	info, err := v.f.Stat()
	if err != nil {
		return sys.Stat_t{}, osErrno(err)
	}
	return statT(info), 0
}

func (v *hostFileVol) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) { return v.Stat(p) }

func (v *hostFileVol) refuse(p string, selfErr experimentalsys.Errno) experimentalsys.Errno {
	if _, errno := v.self(p); errno != 0 {
		return errno
	}
	if v.opts.ReadOnly {
		return experimentalsys.EACCES
	}
	return selfErr
}

func (v *hostFileVol) Mkdir(p string, _ fs.FileMode) experimentalsys.Errno {
	return v.refuse(p, experimentalsys.EEXIST)
}

// Chmod is accepted and does nothing (see hostDir.Chmod).
func (v *hostFileVol) Chmod(p string, _ fs.FileMode) experimentalsys.Errno { return v.refuse(p, 0) }

func (v *hostFileVol) Rename(from, to string) experimentalsys.Errno {
	if _, errno := v.self(to); errno != 0 {
		return errno
	}
	return v.refuse(from, experimentalsys.EPERM)
}

func (v *hostFileVol) Rmdir(p string) experimentalsys.Errno {
	return v.refuse(p, experimentalsys.ENOTDIR)
}

func (v *hostFileVol) Unlink(p string) experimentalsys.Errno {
	return v.refuse(p, experimentalsys.EPERM)
}

func (v *hostFileVol) Link(_, _ string) experimentalsys.Errno { return experimentalsys.EPERM }

func (v *hostFileVol) Symlink(_, _ string) experimentalsys.Errno { return experimentalsys.EPERM }

func (v *hostFileVol) Readlink(p string) (string, experimentalsys.Errno) {
	if _, errno := v.self(p); errno != 0 {
		return "", errno
	}
	return "", experimentalsys.EINVAL
}

func (v *hostFileVol) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	if errno := v.refuse(p, 0); errno != 0 {
		return errno
	}
	st, errno := v.Stat(p)
	if errno != 0 {
		return errno
	}
	a, m := utimes(st, atim, mtim)
	return v.chtimes(a, m)
}

// mountDir is what wazero's preopen of a single-file mount sees: an empty directory.
type mountDir struct {
	experimentalsys.UnimplementedFile
	dev uint64
	ino sys.Inode
}

func (d *mountDir) Dev() (uint64, experimentalsys.Errno)    { return d.dev, 0 }
func (d *mountDir) Ino() (sys.Inode, experimentalsys.Errno) { return d.ino, 0 }
func (d *mountDir) IsDir() (bool, experimentalsys.Errno)    { return true, 0 }
func (d *mountDir) IsAppend() bool                          { return false }
func (d *mountDir) SetAppend(bool) experimentalsys.Errno    { return experimentalsys.EISDIR }
func (d *mountDir) Stat() (sys.Stat_t, experimentalsys.Errno) {
	return sys.Stat_t{Dev: d.dev, Ino: d.ino, Mode: fs.ModeDir | 0o555, Nlink: 2}, 0
}
func (d *mountDir) Read([]byte) (int, experimentalsys.Errno) { return 0, experimentalsys.EISDIR }
func (d *mountDir) Pread([]byte, int64) (int, experimentalsys.Errno) {
	return 0, experimentalsys.EISDIR
}
func (d *mountDir) Write([]byte) (int, experimentalsys.Errno) { return 0, experimentalsys.EISDIR }
func (d *mountDir) Pwrite([]byte, int64) (int, experimentalsys.Errno) {
	return 0, experimentalsys.EISDIR
}
func (d *mountDir) Truncate(int64) experimentalsys.Errno { return experimentalsys.EISDIR }
func (d *mountDir) Seek(offset int64, whence int) (int64, experimentalsys.Errno) {
	if offset != 0 || whence != 0 {
		return 0, experimentalsys.EISDIR
	}
	return 0, 0
}
func (d *mountDir) Readdir(int) ([]experimentalsys.Dirent, experimentalsys.Errno) { return nil, 0 }
