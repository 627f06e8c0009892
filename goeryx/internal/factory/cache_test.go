package factory

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func makeEntry(t *testing.T, root, name string, bytes int, age time.Duration) string {
	t.Helper()
	p := filepath.Join(root, name)
	require.NoError(t, os.MkdirAll(filepath.Join(p, "pkg"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(p, "pkg", "__init__.py"), make([]byte, bytes), 0o644))
	when := time.Now().Add(-age)
	require.NoError(t, os.Chtimes(p, when, when))
	return p
}

func TestPruneEvictsLeastRecentlyUsedButNotLeased(t *testing.T) {
	if !canLock {
		t.Skip("no flock on this platform: Prune evicts nothing")
	}
	root := t.TempDir()
	oldest := makeEntry(t, root, "p1-aaa", 100, 3*time.Hour)
	leased := makeEntry(t, root, "p1-bbb", 100, 2*time.Hour)
	older := makeEntry(t, root, "f-ccc", 100, time.Hour)
	recent := makeEntry(t, root, "p1-ddd", 100, time.Second)
	other := filepath.Join(root, "unrelated")
	require.NoError(t, os.Mkdir(other, 0o755))
	l, ok := Acquire(leased)
	require.True(t, ok)
	// Acquire records the use: put the lease's tree back among the old ones.
	when := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(leased, when, when))

	Prune(root, CacheLimits{MaxBytes: 1 << 30, MaxEntries: 1, Grace: time.Minute})
	require.NoDirExists(t, oldest)
	require.NoDirExists(t, older)
	require.DirExists(t, leased, "a leased tree is in use by a factory")
	require.DirExists(t, recent, "a tree used within the grace period stays")
	require.DirExists(t, other, "only cache entries are touched")
	entries, _ := os.ReadDir(root)
	require.Len(t, entries, 3, "no temporary left behind")

	// Released, the tree can go; a lease taken after eviction fails.
	l.Release()
	Prune(root, CacheLimits{MaxBytes: 150, MaxEntries: 100, Grace: time.Minute})
	require.NoDirExists(t, leased)
	require.DirExists(t, recent)
	_, ok = Acquire(leased)
	require.False(t, ok)
	// Within the limits, nothing goes.
	Prune(root, CacheLimits{MaxBytes: 150, MaxEntries: 100})
	require.DirExists(t, recent)
}

func TestImageCacheRoundTripAndDamage(t *testing.T) {
	root := t.TempDir()
	image := make([]byte, 8*imagePage)
	copy(image[3*imagePage:], "captured state")
	key := "0123456789abcdef0123456789abcdef"
	require.Nil(t, LoadImage(root, key), "nothing stored yet")
	require.NoError(t, SaveImage(root, key, image))
	require.Equal(t, image, LoadImage(root, key))
	require.Nil(t, LoadImage(root, "f"+key[1:]), "another key")

	p := imagePath(root, key)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	data[len(data)-1] ^= 1
	require.NoError(t, os.WriteFile(p, data, 0o644))
	require.Nil(t, LoadImage(root, key), "damaged")
	require.NoFileExists(t, p, "a damaged image is removed")
	entries, _ := os.ReadDir(root)
	require.Empty(t, entries)

	// Images are cache entries like trees: evicted when old and over the limits.
	require.NoError(t, SaveImage(root, key, image))
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(p, old, old))
	Prune(root, CacheLimits{MaxBytes: 0, MaxEntries: 100, Grace: time.Minute})
	if canLock {
		require.NoFileExists(t, p)
	}
}
