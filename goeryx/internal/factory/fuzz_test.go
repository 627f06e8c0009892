package factory

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fuzz targets stay in memory: build.sh runs each for 5 s, and a target whose executions
// touch the disk is slow enough for the fuzzing engine to miss its own deadline. Extraction on
// disk is covered by the unit tests and tests/adversarial.

// FuzzDecodeArtifact: any bytes given to load decode to an error or to a header, an image of
// the declared size and a files section; nothing panics, and nothing is allocated beyond
// MaxImageBytes.
func FuzzDecodeArtifact(f *testing.F) {
	dir := f.TempDir()
	require.NoError(f, os.MkdirAll(filepath.Join(dir, "p"), 0o755))
	require.NoError(f, os.WriteFile(filepath.Join(dir, "p", "m.py"), []byte("x = 1\n"), 0o644))
	image := make([]byte, 2*imagePage)
	image[imagePage+3] = 9
	good, err := Encode(Header{Format: 1, Goeryx: "0.1.0", GuestPython: "3.13.5", Runtime: "r"}, image, dir)
	require.NoError(f, err)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(Magic))
	f.Add([]byte(Magic + "\x02\x00\x00\x00{}\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, body, err := DecodeHeader(data)
		if err != nil {
			return
		}
		img, _, err := h.Payload(body)
		if err != nil {
			return
		}
		require.Equal(t, h.ImageBytes, uint64(len(img)))
		require.LessOrEqual(t, len(img), MaxImageBytes)
	})
}

// FuzzMemberPath: an archive member name is refused, or names a place inside the target.
func FuzzMemberPath(f *testing.F) {
	for _, s := range []string{"a/b.py", "../x", "/etc/passwd", "a/../../b", "./", "c:/x", "a\\b", "a/./b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rel, err := memberPath("in", name)
		if err != nil {
			require.True(t, IsError(err))
			return
		}
		if rel == "" {
			return
		}
		require.True(t, filepath.IsLocal(rel), "%q -> %q", name, rel)
		require.Equal(t, path.Clean(rel), rel)
		require.False(t, strings.HasPrefix(rel, "../") || rel == "..")
	})
}
