package goeryx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
	"github.com/goeryx/goeryx/goeryx/internal/vfs"
)

// VFS is a thread-safe in-memory file store that sandboxes, sessions and the host share
// (eryx.VfsStorage). Paths are relative to the store root; a leading "/" means the root.
type VFS struct {
	store *vfs.Store
}

// NewVFS makes an empty store capped at maxBytes.
func NewVFS(maxBytes int64) *VFS { return &VFS{store: vfs.NewStore(maxBytes)} }

// ReadFile returns a file's contents.
func (v *VFS) ReadFile(p string) ([]byte, error) {
	b, err := v.store.ReadFile(p)
	return b, vfsError(err)
}

// WriteFile creates or replaces a file, making missing parent directories.
func (v *VFS) WriteFile(p string, data []byte) error { return vfsError(v.store.WriteFile(p, data)) }

// List returns the sorted entry names of a directory, subdirectories with a trailing "/".
func (v *VFS) List(p string) ([]string, error) {
	names, err := v.store.List(p)
	return names, vfsError(err)
}

// Remove removes a file or an empty directory.
func (v *VFS) Remove(p string) error { return vfsError(v.store.Remove(p)) }

// Stats returns the number of files, the bytes used and the cap.
func (v *VFS) Stats() (files int, usedBytes, maxBytes int64) { return v.store.Stats() }

// vfsError turns store errors into the Errors the bridge maps to Python exceptions.
func vfsError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, vfs.ErrInvalidPath) {
		return &Error{Kind: KindValue, Message: err.Error()}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		msg := errno.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = errno.Error() + ": '" + pe.Path + "'"
		}
		return &Error{Kind: KindOS, Errno: errno, Message: msg}
	}
	return &Error{Kind: KindEryx, Message: err.Error()}
}

// validateMounts checks the guest paths of the configuration: the VFS mount path and every
// volume's guest path must be absolute, not "/", without "..", and must keep clear of the
// guest's Python installation: a mount at, above or below abi.GuestPrefix would shadow the
// stdlib (or the interpreter's own files) and break the interpreter.
func validateMounts(cfg *Config) error {
	if cfg.VFSMountPath != "" {
		if err := checkGuestPath("vfs_mount_path", cfg.VFSMountPath); err != nil {
			return err
		}
	}
	for _, v := range cfg.Volumes {
		if err := checkGuestPath("volume guest_path", v.GuestPath); err != nil {
			return err
		}
	}
	return nil
}

func checkGuestPath(name, p string) error {
	bad := func(format string, args ...any) error {
		return &Error{Kind: KindValue, Message: fmt.Sprintf(name+" "+format, args...)}
	}
	switch {
	case strings.IndexByte(p, 0) >= 0:
		return bad("contains NUL characters")
	case !strings.HasPrefix(p, "/"):
		return bad("must be an absolute path, got '%s'", p)
	case strings.Contains("/"+p+"/", "/../"):
		return bad("must not contain '..', got '%s'", p)
	}
	clean := path.Clean(p)
	if clean == "/" {
		return bad("must not be '/'")
	}
	if pathsOverlap(clean, abi.GuestPrefix) {
		return bad("'%s' overlaps the guest's Python installation under '%s'", clean, abi.GuestPrefix)
	}
	return nil
}

// pathsOverlap reports whether two clean absolute paths are equal or one contains the other.
func pathsOverlap(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// ScratchDir is the guest's private writable scratch directory: its cwd, TMPDIR and HOME
// (API.md §5.5). Each interpreter gets a new in-memory one, capped like a private /data: a
// Sandbox run's is gone after the run, a Session's lasts until reset. It is not mounted when
// a volume or the VFS mount path claims the path.
const ScratchDir = "/scratch"

// GuestUser is the user name the guest sees (USER, LOGNAME: getpass.getuser()).
const GuestUser = "sandbox"

// mounts are the file systems of a new interpreter besides the stdlib: "/" (listing only the
// mount points), /data (the shared store or a private one), the scratch directory and the
// volumes.
func (b *box) mounts() ([]mount, error) {
	store := b.store
	if store == nil {
		store = b.newPrivateStore()
	}
	storeView := func(poll func()) experimentalsys.FS {
		o := b.fileOptions(false)
		o.Poll = poll
		return store.store.FS(o)
	}
	ms := []mount{{view: fixedView(b.root), guestPath: "/"}, {view: storeView, guestPath: b.mountPath}}
	if b.pkgs != nil { // a factory's packages (factory.go)
		if err := b.pkgs.Check(); err != nil {
			return nil, initError("the factory's packages are gone: %v", err)
		}
		ms = append(ms, mount{view: b.pkgs.View, guestPath: SitePackagesPath})
	}
	if b.scratch {
		scratch := b.newPrivateStore()
		ms = append(ms, mount{view: func(poll func()) experimentalsys.FS {
			o := b.fileOptions(false)
			o.Poll = poll
			return scratch.store.FS(o)
		}, guestPath: ScratchDir})
	}
	for i, vol := range b.volumes {
		if err := vol.Check(); err != nil {
			return nil, initError("volume host path does not exist: %s", b.cfg.Volumes[i].HostPath)
		}
		ms = append(ms, mount{view: vol.View, guestPath: path.Clean(b.cfg.Volumes[i].GuestPath)})
	}
	return ms, nil
}

// newPrivateStore is the /data of a Sandbox run or of a Session without a shared store.
func (b *box) newPrivateStore() *VFS {
	max := int64(DefaultMaxVFSBytes)
	if m := b.cfg.Limits.MaxVFSBytes; m != nil {
		max = *m
	}
	return NewVFS(max)
}

// openFilesystems opens the volumes (once per Sandbox or Session; each run checks they are
// still there) and builds the root listing.
func (b *box) openFilesystems() error {
	dirs := []string{abi.GuestStdlibDir, b.mountPath}
	if b.pkgs != nil {
		dirs = append(dirs, SitePackagesPath)
	}
	var files []string
	for _, v := range b.cfg.Volumes {
		vol, err := vfs.OpenVolume(v.HostPath, b.fileOptions(v.ReadOnly))
		if err != nil {
			b.closeFilesystems()
			if errors.Is(err, fs.ErrNotExist) {
				return initError("volume host path does not exist: %s", v.HostPath)
			}
			// E.g. a FIFO or a device: only regular files and directories are mounted.
			return initError("volume host path cannot be mounted: %v", err)
		}
		b.volumes = append(b.volumes, vol)
		if st, err := os.Stat(v.HostPath); err == nil && !st.IsDir() {
			files = append(files, path.Clean(v.GuestPath))
		} else {
			dirs = append(dirs, path.Clean(v.GuestPath))
		}
	}
	b.scratch = !pathsOverlap(path.Clean(b.mountPath), ScratchDir)
	for _, d := range append(dirs[2:], files...) {
		b.scratch = b.scratch && !pathsOverlap(d, ScratchDir)
	}
	if b.scratch {
		dirs = append(dirs, ScratchDir)
	}
	root, err := vfs.RootWithFiles(dirs, files)
	if err != nil {
		b.closeFilesystems()
		return initError("invalid mounts: %v", err)
	}
	b.root = root
	return nil
}

// closeFilesystems releases the volumes' host descriptors.
func (b *box) closeFilesystems() {
	for _, v := range b.volumes {
		_ = v.Close()
	}
	b.volumes = nil
	b.closeFactory()
}

// closeFactory releases the factory's packages and image (once).
func (b *box) closeFactory() {
	if b.pkgs != nil {
		_ = b.pkgs.Close()
		b.pkgs = nil
	}
	if b.ownsImage {
		b.ownsImage = false
		b.fac.release()
	}
}
