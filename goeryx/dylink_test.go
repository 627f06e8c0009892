package goeryx

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goeryx/goeryx/goeryx/internal/vfs"
)

// dlPackage writes a package directory dlpkg holding the test extension module
// (testdata/dylink/_dlhello.c, a WebAssembly side module).
func dlPackage(t *testing.T) string {
	t.Helper()
	so, err := os.ReadFile("testdata/dylink/_dlhello.cpython-313-wasm32-wasi.so")
	require.NoError(t, err)
	pkg := writePkg(t, t.TempDir(), "dlpkg", "from ._dlhello import *\n")
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "_dlhello.cpython-313-wasm32-wasi.so"), so, 0o644))
	return pkg
}

const dlCode = `import dlpkg
print(dlpkg.greet("wasm"))
c = dlpkg.Counter()
print(c.bump(), c.bump(), dlpkg.ANSWER)
print(dlpkg.sort_desc([3, 1, 2]))
del c
import gc; gc.collect()
`

const dlWant = "hello wasm (4 chars, ctor 7)\n1 2 42\n[3, 2, 1]"

// The extension module is loaded by import in a sandbox (dlopen → host → dylink), works, and
// the next sandbox (a fresh instance) loads it again.
func TestExtensionModuleImport(t *testing.T) {
	rt := runtimeForTest(t)
	f, err := rt.NewFactory(FactoryOptions{Packages: []string{dlPackage(t)}})
	require.NoError(t, err)
	defer f.Close()
	for i := 0; i < 2; i++ {
		sb, err := f.NewSandbox(&Config{}, nil, nil, "")
		require.NoError(t, err)
		res, err := sb.Execute(context.Background(), dlCode)
		require.NoError(t, err)
		require.Equal(t, dlWant, res.Stdout, res.Stderr)
		sb.Close()
	}
}

// A factory that pre-imported the extension captures it: sandboxes start with it loaded at
// the same bases, its constructor not run again (the state set before the capture stays).
func TestExtensionModuleInFactoryImage(t *testing.T) {
	rt := runtimeForTest(t)
	pkg := dlPackage(t)
	// the package's __init__ changes the C state at import: the image must keep the change
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "__init__.py"),
		[]byte("from ._dlhello import *\nset_ctor_value(99)\n"), 0o644))
	f, err := rt.NewFactory(FactoryOptions{Packages: []string{pkg}, Imports: []string{"dlpkg"}})
	require.NoError(t, err)
	defer f.Close()
	check := func(f *Factory) {
		sb, err := f.NewSandbox(&Config{}, nil, nil, "")
		require.NoError(t, err)
		defer sb.Close()
		res, err := sb.Execute(context.Background(), "import sys\nprint('dlpkg' in sys.modules)\n"+dlCode)
		require.NoError(t, err)
		require.Equal(t, "True\nhello wasm (4 chars, ctor 99)\n1 2 42\n[3, 2, 1]", res.Stdout, res.Stderr)
	}
	check(f)
	check(f)
	// and through the factory file
	data, err := f.Bytes()
	require.NoError(t, err)
	g, err := rt.FactoryFromBytes(data, "", false)
	require.NoError(t, err)
	defer g.Close()
	check(g)
}

// A side module importing a symbol the guest does not provide: the factory refuses the
// package, naming the file; loaded anyway (from a mount), the import is an ImportError.
func TestExtensionModuleUnknownImport(t *testing.T) {
	rt := runtimeForTest(t)
	so, err := os.ReadFile("testdata/dylink/_dlhello.cpython-313-wasm32-wasi.so")
	require.NoError(t, err)
	bad := []byte(string(so))
	i := indexBytes(bad, "PyNumber_Negative")
	require.Greater(t, i, 0)
	copy(bad[i:], "PyNumber_Nxgative")
	pkg := writePkg(t, t.TempDir(), "dlbad", "from ._dlhello import *\n")
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "_dlhello.cpython-313-wasm32-wasi.so"), bad, 0o644))
	_, err = rt.NewFactory(FactoryOptions{Packages: []string{pkg}})
	require.EqualError(t, err, pkg+": native extension module '_dlhello.cpython-313-wasm32-wasi.so' cannot be loaded by this "+
		"guest runtime: imports the function 'PyNumber_Nxgative', which this guest runtime does not provide")

	// written by the guest into its own file system (not checked by any factory): the
	// guest's import fails cleanly, and the interpreter goes on
	code := fmt.Sprintf(`import os, sys
os.makedirs("/data/dlbad")
open("/data/dlbad/__init__.py", "w").write("from ._dlhello import *")
open("/data/dlbad/_dlhello.cpython-313-wasm32-wasi.so", "wb").write(bytes.fromhex("%x"))
sys.path.insert(0, "/data")
try:
    import dlbad
except ImportError as e:
    print(type(e).__name__, e)
print(1 + 1)`, bad)
	out := runPython(t, code, e2eMount{fs: vfs.NewStore(16 << 20).FS(vfs.Options{}), guestPath: "/data"})
	require.Equal(t, "ImportError /data/dlbad/_dlhello.cpython-313-wasm32-wasi.so: cannot be loaded by this guest runtime: "+
		"imports the function 'PyNumber_Nxgative', which this guest runtime does not provide\n2", out)
}

func indexBytes(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

// A C loop in an extension module that never returns to Python: the side module is
// instrumented like the runtime, so the timeout stops it (a hard stop: C code cannot raise),
// and a session goes on.
func TestExtensionModuleLoopTimesOut(t *testing.T) {
	rt := runtimeForTest(t)
	pkg := dlPackage(t)
	for _, imports := range [][]string{{"dlpkg"}, nil} { // from the image; loaded by the sandbox
		f, err := rt.NewFactory(FactoryOptions{Packages: []string{pkg}, Imports: imports})
		require.NoError(t, err)
		defer f.Close()
		sb, err := f.NewSandbox(&Config{Limits: Limits{ExecutionTimeoutMS: i64(300)}}, nil, nil, "")
		require.NoError(t, err)
		start := time.Now()
		_, err = sb.Execute(context.Background(), "import dlpkg\ndlpkg.spin()")
		var e *Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, KindTimeout, e.Kind, e.Message)
		require.Less(t, time.Since(start), 5*time.Second)
		res, err := sb.Execute(context.Background(), "import dlpkg\nprint(dlpkg.greet('again'))")
		require.NoError(t, err)
		require.Contains(t, res.Stdout, "hello again")
		sb.Close()
	}
}
