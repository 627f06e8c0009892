//go:build unix

package goeryx

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// inUse says whether some factory (of any process) leases dir: eviction from the packages
// cache needs the exclusive lock that a lease's shared one excludes.
func inUse(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open(dir)
	require.NoError(t, err)
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
}

func TestFactoryLeasesItsPackagesUntilTheLastUser(t *testing.T) {
	rt := runtimeForTest(t)
	pkg := writePkg(t, t.TempDir(), "leasepkg", "X = 1\n")
	f, err := rt.NewFactory(FactoryOptions{Packages: []string{pkg}, Imports: []string{"leasepkg"}})
	require.NoError(t, err)
	dir := f.img.pkgDir
	require.True(t, inUse(t, dir))
	sb, err := f.NewSandbox(&Config{}, nil, nil, "")
	require.NoError(t, err)
	f.Close()
	require.True(t, inUse(t, dir), "a sandbox of a closed factory still imports from the tree")
	res, err := sb.Execute(context.Background(), "import leasepkg\nprint(leasepkg.X)")
	require.NoError(t, err)
	require.Equal(t, "1", res.Stdout)
	sb.Close()
	require.False(t, inUse(t, dir), "released with the last user")

	// A loaded factory leases the tree extracted from its file.
	g, err := rt.NewFactory(FactoryOptions{Packages: []string{pkg}})
	require.NoError(t, err)
	data, err := g.Bytes()
	require.NoError(t, err)
	g.Close()
	h, err := rt.FactoryFromBytes(data, "", false)
	require.NoError(t, err)
	require.True(t, inUse(t, h.img.pkgDir))
	h.Close()
	require.False(t, inUse(t, h.img.pkgDir))
}
