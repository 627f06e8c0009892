package factory

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecodeArtifact: any bytes given to load decode to an error or to a header, an image of
// the declared size and a files section; nothing panics, and nothing is allocated beyond
// MaxImageBytes.
func FuzzDecodeArtifact(f *testing.F) {
	dir := f.TempDir()
	tree := filepath.Join(dir, "tree")
	require.NoError(f, os.MkdirAll(filepath.Join(tree, "p"), 0o755))
	require.NoError(f, os.WriteFile(filepath.Join(tree, "p", "m.py"), []byte("x = 1\n"), 0o644))
	image := make([]byte, 4*imagePage)
	image[imagePage+3] = 9
	good, err := Encode(Header{Format: 1, Goeryx: "0.1.0", GuestPython: "3.13.5", Runtime: "r"}, image, tree)
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
		img, files, err := h.Payload(body)
		if err != nil {
			return
		}
		require.Equal(t, h.ImageBytes, uint64(len(img)))
		require.LessOrEqual(t, len(img), MaxImageBytes)
		root := filepath.Join(t.TempDir(), "root")
		if out, err := ExtractFiles(root, files, h.FilesKey()+"00000000", "f", guest, Limits{MaxFiles: 100, MaxTotalBytes: 1 << 20, MaxFileBytes: 1 << 20}); err == nil {
			_, err := TreeHash(out) // only regular files and directories were written
			require.NoError(t, err)
		}
	})
}

// FuzzTarMembers: an archive of arbitrary member names and types extracts only inside its
// directory, or fails.
func FuzzTarMembers(f *testing.F) {
	f.Add("a/b.py", byte(tar.TypeReg), "")
	f.Add("../x", byte(tar.TypeReg), "")
	f.Add("l", byte(tar.TypeSymlink), "/etc/passwd")
	f.Add("d/", byte(tar.TypeDir), "")
	f.Fuzz(func(t *testing.T, name string, typ byte, link string) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		size := int64(0)
		if typ == tar.TypeReg {
			size = 3
		}
		if tw.WriteHeader(&tar.Header{Name: name, Typeflag: typ, Linkname: link, Size: size, Mode: 0o644}) != nil {
			return
		}
		if size > 0 {
			_, _ = tw.Write([]byte("abc"))
		}
		_ = tw.Close()
		dir := t.TempDir()
		root := filepath.Join(dir, "root")
		out, err := ExtractFiles(root, buf.Bytes(), "0123456789abcdef0123456789abcdef", "f", guest, DefaultLimits)
		entries, _ := os.ReadDir(dir)
		require.Len(t, entries, 1, "nothing is written beside the root")
		if err != nil {
			return
		}
		_, err = TreeHash(out)
		require.NoError(t, err)
	})
}
