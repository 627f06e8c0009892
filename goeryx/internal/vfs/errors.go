package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// ErrInvalidPath is returned (wrapped) by the host API of a [Store] for a path containing "..",
// a NUL byte, or, for file operations, no file name at all. The engine maps it to ValueError.
var ErrInvalidPath = errors.New("invalid path")

// ErrnoNoSpace is the errno the guest views return when a change would exceed a Store's byte
// budget or entry cap, or a host volume's disk is full. wazero v1.12 has no ENOSPC, so this is
// ERANGE; the WASI functions installed by [NewWASIBuilder] turn it into WASI's ENOSPC.
const ErrnoNoSpace = experimentalsys.ERANGE

// Limits that bound what a guest can make the host store, independent of the byte budget.
const (
	// MaxEntries caps the number of files and directories in one Store (the root excluded).
	// Exceeding it is ENOSPC, like running out of inodes.
	MaxEntries = 100000
	// MaxNameLen caps one path component, in bytes (ENAMETOOLONG).
	MaxNameLen = 255
	// MaxPathLen caps a whole path, in bytes (ENAMETOOLONG).
	MaxPathLen = 4096
)

// hostErrno converts an errno of the guest views into the syscall.Errno the host API reports.
func hostErrno(e experimentalsys.Errno) syscall.Errno {
	if e == ErrnoNoSpace {
		return syscall.ENOSPC
	}
	if se, ok := e.Unwrap().(syscall.Errno); ok {
		return se
	}
	return syscall.EIO
}

func hostErr(op, path string, e experimentalsys.Errno) error {
	return &fs.PathError{Op: op, Path: path, Err: hostErrno(e)}
}

func invalidPath(path, reason string) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidPath, path, reason)
}

// osErrno maps an error of the os package (host volumes) to an errno for the guest.
func osErrno(err error) experimentalsys.Errno {
	if err == nil || err == io.EOF {
		return 0
	}
	var se syscall.Errno
	if errors.As(err, &se) {
		switch se {
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
			return ErrnoNoSpace
		}
		return experimentalsys.UnwrapOSError(se)
	}
	if strings.Contains(err.Error(), "path escapes from parent") {
		return experimentalsys.EACCES
	}
	if e := experimentalsys.UnwrapOSError(err); e != 0 {
		return e
	}
	return experimentalsys.EIO
}
