package vfs

import (
	"strings"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// guestPath splits a path handed over by wazero (relative to the mount, already cleaned by
// wazero's WASI layer, possibly with a leading "/" or a trailing "/") into its components.
// dirOnly reports a trailing slash: the path must then name a directory. ".." is resolved
// lexically and may not climb above the mount (EPERM, as wazero itself answers).
func guestPath(p string) (comps []string, dirOnly bool, errno experimentalsys.Errno) {
	if len(p) > MaxPathLen {
		return nil, false, experimentalsys.ENAMETOOLONG
	}
	if strings.IndexByte(p, 0) >= 0 {
		return nil, false, experimentalsys.EINVAL
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			if len(comps) == 0 {
				return nil, false, experimentalsys.EPERM
			}
			comps = comps[:len(comps)-1]
			continue
		}
		if len(c) > MaxNameLen {
			return nil, false, experimentalsys.ENAMETOOLONG
		}
		comps = append(comps, c)
	}
	dirOnly = len(comps) > 0 && strings.HasSuffix(p, "/")
	return comps, dirOnly, 0
}

// relPath joins components into a path for os.Root ("." for the root).
func relPath(comps []string) string {
	if len(comps) == 0 {
		return "."
	}
	return strings.Join(comps, "/")
}

// hostPath splits a path of the Store host API. It is relative to the store root, and a leading
// "/" means the root. "..", NUL and (checked by the callers that need a file) an empty path are
// invalid. Empty components and "." are ignored.
func hostPath(p string) (comps []string, dirOnly bool, err error) {
	if strings.IndexByte(p, 0) >= 0 {
		return nil, false, invalidPath(p, "path contains NUL")
	}
	if len(p) > MaxPathLen {
		return nil, false, hostErr("open", p, experimentalsys.ENAMETOOLONG)
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, false, invalidPath(p, "'..' is not allowed")
		}
		if len(c) > MaxNameLen {
			return nil, false, hostErr("open", p, experimentalsys.ENAMETOOLONG)
		}
		comps = append(comps, c)
	}
	dirOnly = len(comps) > 0 && strings.HasSuffix(p, "/")
	return comps, dirOnly, nil
}

func hasPrefix(comps, prefix []string) bool {
	if len(prefix) > len(comps) {
		return false
	}
	for i, c := range prefix {
		if comps[i] != c {
			return false
		}
	}
	return true
}
