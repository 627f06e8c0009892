package goeryx

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func writePkg(t *testing.T, dir, name, body string) string {
	t.Helper()
	pkg := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(pkg, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "__init__.py"), []byte(body), 0o644))
	return pkg
}

func TestFactoryImageHoldsPreImports(t *testing.T) {
	rt := runtimeForTest(t)
	pkg := writePkg(t, t.TempDir(), "facpkg", "import os\nTOKEN = os.urandom(4).hex()\n")
	f, err := rt.NewFactory(FactoryOptions{Packages: []string{pkg}, Imports: []string{"facpkg"}})
	require.NoError(t, err)
	require.Greater(t, f.ImageBytes(), rt.ImageBytes())
	// The staged copy holds the modules compiled by the guest; the caller's directory is as it was.
	require.FileExists(t, filepath.Join(f.img.pkgDir, "facpkg", "__pycache__", "__init__.cpython-313.pyc"))
	require.NoDirExists(t, filepath.Join(pkg, "__pycache__"))
	ctx := context.Background()
	code := "import sys\nprint('facpkg' in sys.modules)\nimport facpkg\nprint(facpkg.TOKEN)"

	sb, err := f.NewSandbox(&Config{}, nil, nil, "")
	require.NoError(t, err)
	first, err := sb.Execute(ctx, code)
	require.NoError(t, err)
	second, err := sb.Execute(ctx, code)
	require.NoError(t, err)
	// Imported once, at build: every interpreter starts with the same module state.
	require.Equal(t, first.Stdout, second.Stdout)
	require.Contains(t, first.Stdout, "True\n")

	// A loaded copy starts from the same state; closing the factories leaves sandboxes working.
	data, err := f.Bytes()
	require.NoError(t, err)
	g, err := rt.FactoryFromBytes(data, "", false)
	require.NoError(t, err)
	sb2, err := g.NewSandbox(&Config{}, nil, nil, "")
	require.NoError(t, err)
	f.Close()
	g.Close()
	_, err = f.NewSandbox(&Config{}, nil, nil, "")
	require.ErrorIs(t, err, errFactoryClosed)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := sb2.Execute(ctx, code)
			if err == nil {
				require.Equal(t, first.Stdout, res.Stdout)
			}
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	sb.Close()
	sb2.Close()
}

func TestFactorySessionResetReturnsToImage(t *testing.T) {
	rt := runtimeForTest(t)
	pkg := writePkg(t, t.TempDir(), "sesspkg", "COUNT = [0]\n")
	f, err := rt.NewFactory(FactoryOptions{Packages: []string{pkg}, Imports: []string{"sesspkg"}})
	require.NoError(t, err)
	defer f.Close()
	ctx := context.Background()
	s, err := f.NewSession(ctx, &Config{}, nil, nil, "")
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Execute(ctx, "import sesspkg\nsesspkg.COUNT[0] += 5")
	require.NoError(t, err)
	require.NoError(t, s.Reset(ctx))
	res, err := s.Execute(ctx, "import sys\nprint(sys.modules['sesspkg'].COUNT[0])")
	require.NoError(t, err)
	require.Equal(t, "0", res.Stdout)
}

func TestFactoryPreImportTimeoutAndFailure(t *testing.T) {
	rt := runtimeForTest(t)
	pkg := writePkg(t, t.TempDir(), "failpkg", "raise KeyError('k')\n")
	_, err := rt.NewFactory(FactoryOptions{Packages: []string{pkg}, Imports: []string{"failpkg"}})
	require.EqualError(t, err, "pre-import of 'failpkg' failed: KeyError: 'k'")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, KindInitialization, e.Kind)
}

func TestPackagesRootFallbackMustBePrivate(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	rt := &Runtime{} // no cache directory: staging falls back to the temporary directory
	dir, err := rt.packagesRoot()
	require.NoError(t, err)
	require.Equal(t, tmp, filepath.Dir(dir))
	require.NoError(t, os.Chmod(dir, 0o755))
	_, err = rt.packagesRoot()
	require.ErrorContains(t, err, "is not a private directory")
	require.NoError(t, os.Remove(dir))
	other := filepath.Join(tmp, "elsewhere")
	require.NoError(t, os.Mkdir(other, 0o700))
	require.NoError(t, os.Symlink(other, dir))
	_, err = rt.packagesRoot()
	require.ErrorContains(t, err, "is not a private directory")
}
