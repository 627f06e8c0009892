package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// Root returns a read-only FS to mount at "/" next to the given directory mounts (absolute
// guest paths such as "/data" or "/usr/local/lib/python3.12"). It holds only the directories
// leading to the mount points, so listing "/" shows the first component of each mount point
// and nothing else. wasi-libc resolves every path by its longest preopen prefix, so paths at or
// below a mount point reach that mount, never this FS. Lookups of anything else fail with
// ENOENT, and changes with EACCES (PermissionError).
func Root(mounts []string) (experimentalsys.FS, error) {
	return RootWithFiles(mounts, nil)
}

// RootWithFiles is Root where fileMounts are single-file mounts (HostFile): they are listed as
// regular files in their parent directory.
func RootWithFiles(dirMounts, fileMounts []string) (experimentalsys.FS, error) {
	r := &rootFS{dev: 0x726f6f74}
	r.root = r.newNode(false)
	add := func(p string, file bool) error {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("mount path %q is not absolute", p)
		}
		comps, _, errno := guestPath(p)
		if errno != 0 || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
			return fmt.Errorf("invalid mount path %q", p)
		}
		if len(comps) == 0 {
			return fmt.Errorf("mount path %q is the root", p)
		}
		n := r.root
		for i, c := range comps {
			if n.file {
				return fmt.Errorf("mount path %q lies beneath the file mount %q", p, "/"+strings.Join(comps[:i], "/"))
			}
			next := n.children[c]
			last := i == len(comps)-1
			if next == nil {
				next = r.newNode(last && file)
				n.children[c] = next
			} else if last && next.file != file {
				return fmt.Errorf("mount path %q is both a file and a directory mount", p)
			} else if last && file {
				return fmt.Errorf("file mount %q is given twice", p)
			}
			n = next
		}
		if n.file && len(n.children) > 0 {
			return fmt.Errorf("file mount %q has mounts beneath it", p)
		}
		return nil
	}
	for _, p := range dirMounts {
		if err := add(p, false); err != nil {
			return nil, err
		}
	}
	for _, p := range fileMounts {
		if err := add(p, true); err != nil {
			return nil, err
		}
	}
	return r, nil
}

type rootNode struct {
	ino      uint64
	file     bool
	children map[string]*rootNode
}

type rootFS struct {
	experimentalsys.UnimplementedFS
	root *rootNode
	dev  uint64
	ino  uint64
}

func (r *rootFS) newNode(file bool) *rootNode {
	r.ino++
	n := &rootNode{ino: r.ino, file: file}
	if !file {
		n.children = map[string]*rootNode{}
	}
	return n
}

func (r *rootFS) lookup(p string) (*rootNode, experimentalsys.Errno) {
	comps, dirOnly, errno := guestPath(p)
	if errno != 0 {
		return nil, errno
	}
	n := r.root
	for _, c := range comps {
		if n.file {
			return nil, experimentalsys.ENOTDIR
		}
		if n = n.children[c]; n == nil {
			return nil, experimentalsys.ENOENT
		}
	}
	if dirOnly && n.file {
		return nil, experimentalsys.ENOTDIR
	}
	return n, 0
}

func (r *rootFS) stat(n *rootNode) sys.Stat_t {
	if n.file {
		return sys.Stat_t{Dev: r.dev, Ino: n.ino, Mode: 0o444, Nlink: 1}
	}
	return sys.Stat_t{Dev: r.dev, Ino: n.ino, Mode: fs.ModeDir | 0o555, Nlink: 2}
}

func (r *rootFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	_, write := accessMode(flag)
	if write || flag&(experimentalsys.O_CREAT|experimentalsys.O_TRUNC) != 0 {
		return nil, experimentalsys.EACCES
	}
	n, errno := r.lookup(p)
	if errno != 0 {
		if p == "." {
			errno = experimentalsys.ENOENT // never panic wazero's preopen probe
		}
		return nil, errno
	}
	if n.file {
		// A single-file mount reached through a directory descriptor of this FS: it belongs
		// to another mount.
		return nil, experimentalsys.EACCES
	}
	return &rootDir{fs: r, n: n}, 0
}

func (r *rootFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	n, errno := r.lookup(p)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return r.stat(n), 0
}

func (r *rootFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) { return r.Stat(p) }

func (r *rootFS) Mkdir(p string, _ fs.FileMode) experimentalsys.Errno {
	if _, errno := r.lookup(p); errno == 0 {
		return experimentalsys.EEXIST
	}
	return experimentalsys.EACCES
}

func (r *rootFS) Chmod(string, fs.FileMode) experimentalsys.Errno { return experimentalsys.EACCES }
func (r *rootFS) Rename(_, _ string) experimentalsys.Errno        { return experimentalsys.EACCES }
func (r *rootFS) Rmdir(string) experimentalsys.Errno              { return experimentalsys.EACCES }
func (r *rootFS) Unlink(string) experimentalsys.Errno             { return experimentalsys.EACCES }
func (r *rootFS) Link(_, _ string) experimentalsys.Errno          { return experimentalsys.EPERM }
func (r *rootFS) Symlink(_, _ string) experimentalsys.Errno       { return experimentalsys.EPERM }
func (r *rootFS) Utimens(string, int64, int64) experimentalsys.Errno {
	return experimentalsys.EACCES
}

func (r *rootFS) Readlink(p string) (string, experimentalsys.Errno) {
	if _, errno := r.lookup(p); errno != 0 {
		return "", errno
	}
	return "", experimentalsys.EINVAL
}

type rootDir struct {
	experimentalsys.UnimplementedFile
	fs      *rootFS
	n       *rootNode
	dirents []experimentalsys.Dirent
	listed  bool
	closed  bool
}

func (d *rootDir) Dev() (uint64, experimentalsys.Errno)    { return d.fs.dev, 0 }
func (d *rootDir) Ino() (sys.Inode, experimentalsys.Errno) { return d.n.ino, 0 }
func (d *rootDir) IsDir() (bool, experimentalsys.Errno)    { return true, 0 }
func (d *rootDir) SetAppend(bool) experimentalsys.Errno    { return experimentalsys.EISDIR }

func (d *rootDir) Stat() (sys.Stat_t, experimentalsys.Errno) {
	if d.closed {
		return sys.Stat_t{}, experimentalsys.EBADF
	}
	return d.fs.stat(d.n), 0
}

func (d *rootDir) Read([]byte) (int, experimentalsys.Errno)          { return 0, experimentalsys.EISDIR }
func (d *rootDir) Pread([]byte, int64) (int, experimentalsys.Errno)  { return 0, experimentalsys.EISDIR }
func (d *rootDir) Write([]byte) (int, experimentalsys.Errno)         { return 0, experimentalsys.EBADF }
func (d *rootDir) Pwrite([]byte, int64) (int, experimentalsys.Errno) { return 0, experimentalsys.EBADF }
func (d *rootDir) Truncate(int64) experimentalsys.Errno              { return experimentalsys.EISDIR }
func (d *rootDir) Utimens(int64, int64) experimentalsys.Errno        { return experimentalsys.EACCES }

func (d *rootDir) Seek(offset int64, whence int) (int64, experimentalsys.Errno) {
	if offset != 0 || whence != io.SeekStart {
		return 0, experimentalsys.EISDIR
	}
	d.dirents, d.listed = nil, false
	return 0, 0
}

func (d *rootDir) Readdir(n int) ([]experimentalsys.Dirent, experimentalsys.Errno) {
	if d.closed {
		return nil, experimentalsys.EBADF
	}
	if !d.listed {
		names := make([]string, 0, len(d.n.children))
		for name := range d.n.children {
			names = append(names, name)
		}
		sort.Strings(names)
		d.dirents = make([]experimentalsys.Dirent, len(names))
		for i, name := range names {
			c := d.n.children[name]
			d.dirents[i] = experimentalsys.Dirent{Name: name, Ino: c.ino}
			if !c.file {
				d.dirents[i].Type = fs.ModeDir
			}
		}
		d.listed = true
	}
	k := len(d.dirents)
	if n > 0 && n < k {
		k = n
	}
	out := d.dirents[:k:k]
	d.dirents = d.dirents[k:]
	return out, 0
}

func (d *rootDir) Close() experimentalsys.Errno {
	d.closed = true
	return 0
}
