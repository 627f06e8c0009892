package factory

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"
)

// isNative says whether a file is a native extension module by its name.
func isNative(rel string) bool {
	l := strings.ToLower(rel)
	return strings.HasSuffix(l, ".so") || strings.HasSuffix(l, ".pyd") || strings.HasSuffix(l, ".dylib")
}

var cpythonTag = regexp.MustCompile(`\.cpython-(\d)(\d+)([a-z]*)-([^.]+)\.so$`)

// nativeProblem says why the extension module file name with content data cannot be loaded by
// the guest, or "" when it is a WebAssembly side module built for the guest's ABI. API.md §10:
// only side modules (a dylink.0 section) for cpython-<major><minor>-wasm32-wasi are loadable.
func (g Guest) nativeProblem(name string, data []byte) string {
	guest := fmt.Sprintf("CPython %d.%d", g.Major, g.Minor)
	if m := cpythonTag.FindStringSubmatch(name); m != nil {
		if tag := fmt.Sprintf("%d%d", g.Major, g.Minor); m[1]+m[2] != tag {
			return fmt.Sprintf("built for cp%s%s, the guest is %s", m[1], m[2], guest)
		}
		if m[4] != "wasm32-wasi" && !strings.HasPrefix(m[4], "wasm32-wasi") {
			return fmt.Sprintf("built for the platform '%s', not wasm32-wasi", m[4])
		}
	}
	if !bytes.HasPrefix(data, []byte("\x00asm")) {
		return "not a WebAssembly module"
	}
	if !hasDylink(data) {
		return "a WebAssembly module but not a side module (no dylink.0 section)"
	}
	if g.CheckSide == nil {
		return "this guest runtime does not load WebAssembly side modules"
	}
	if err := g.CheckSide(data); err != nil {
		return err.Error()
	}
	return ""
}

// hasDylink says whether a wasm binary's first section is the custom section "dylink.0".
func hasDylink(data []byte) bool {
	if len(data) < 9 || data[8] != 0 { // magic, version, then a custom section (id 0)
		return false
	}
	rest := data[9:]
	_, n := binary.Uvarint(rest) // section size
	if n <= 0 {
		return false
	}
	rest = rest[n:]
	nameLen, n := binary.Uvarint(rest)
	if n <= 0 || nameLen > uint64(len(rest)-n) {
		return false
	}
	return string(rest[n:n+int(nameLen)]) == "dylink.0"
}
