package factory

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var guest = Guest{Major: 3, Minor: 13}

func writeZip(t *testing.T, path string, members map[string]string) string {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	zw := zip.NewWriter(f)
	for name, data := range members {
		w, err := zw.Create(name)
		require.NoError(t, err)
		_, err = w.Write([]byte(data))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	require.NoError(t, f.Close())
	return path
}

func writeTgz(t *testing.T, path string, headers ...*tar.Header) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range headers {
		require.NoError(t, tw.WriteHeader(h))
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	return path
}

func stage(t *testing.T, site string, pkgs ...string) (string, string, error) {
	t.Helper()
	dir, hash, lease, _, err := Stage(filepath.Join(t.TempDir(), "root"), site, pkgs, guest, DefaultLimits, nil)
	lease.Release()
	return dir, hash, err
}

func TestStageWheelMapsDataSchemesAndIsContentAddressed(t *testing.T) {
	dir := t.TempDir()
	whl := writeZip(t, filepath.Join(dir, "demo-1.0-py2.py3-none-any.whl"), map[string]string{
		"demo/__init__.py":                  "X = 1\n",
		"demo-1.0.dist-info/METADATA":       "Name: demo\n",
		"demo-1.0.data/purelib/extra.py":    "Y = 2\n",
		"demo-1.0.data/scripts/demo-script": "#!/bin/sh\n",
	})
	root := filepath.Join(dir, "root")
	prepared := 0
	prepare := func(dir string) error {
		prepared++
		return os.WriteFile(filepath.Join(dir, "compiled.marker"), nil, 0o644)
	}
	out, hash, lease, fresh, err := Stage(root, "", []string{whl}, guest, DefaultLimits, prepare)
	require.NoError(t, err)
	require.True(t, fresh)
	lease.Release()
	require.Equal(t, filepath.Join(root, stagedPrefix+hash), out)
	b, err := os.ReadFile(filepath.Join(out, "extra.py"))
	require.NoError(t, err)
	require.Equal(t, "Y = 2\n", string(b))
	require.NoFileExists(t, filepath.Join(out, "demo-script"))
	require.NoDirExists(t, filepath.Join(out, "demo-1.0.data"))
	require.FileExists(t, filepath.Join(out, "compiled.marker"))
	// The same inputs stage to the same directory, prepared once, and no temporary is left.
	out2, hash2, lease, fresh, err := Stage(root, "", []string{whl}, guest, DefaultLimits, prepare)
	require.NoError(t, err)
	require.False(t, fresh)
	lease.Release()
	require.Equal(t, out, out2)
	require.Equal(t, hash, hash2)
	require.Equal(t, 1, prepared)
	// A failed preparation publishes nothing.
	_, _, _, _, err = Stage(filepath.Join(dir, "root2"), "", []string{whl}, guest, DefaultLimits, func(string) error { return os.ErrDeadlineExceeded })
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	entries2, err := os.ReadDir(filepath.Join(dir, "root2"))
	require.NoError(t, err)
	require.Empty(t, entries2)
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	require.Len(t, entries, 1)
}

func TestStageDirectoryKinds(t *testing.T) {
	dir := t.TempDir()
	pkg := filepath.Join(dir, "src", "mypkg")
	require.NoError(t, os.MkdirAll(pkg, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "__init__.py"), nil, 0o644))
	tree := filepath.Join(dir, "tree")
	require.NoError(t, os.MkdirAll(tree, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "mod.py"), []byte("Z = 3"), 0o644))
	out, _, err := stage(t, "", pkg, tree)
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(out, "mypkg", "__init__.py"))
	require.FileExists(t, filepath.Join(out, "mod.py"))
}

func TestMemberPath(t *testing.T) {
	for _, bad := range []string{"", "/etc/passwd", "../x", "a/../../x", "a\\b", "c:/x", "a\x00b", strings.Repeat("a", 5000)} {
		_, err := memberPath("in", bad)
		require.Error(t, err, "%q", bad)
		require.True(t, IsError(err))
	}
	for name, want := range map[string]string{"a/b.py": "a/b.py", "./a//b": "a/b", "a/./b/": "a/b", "./": ""} {
		got, err := memberPath("in", name)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
}

func TestTarRefusesLinksDevicesAndEscapes(t *testing.T) {
	dir := t.TempDir()
	for i, h := range []*tar.Header{
		{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		{Name: "h", Typeflag: tar.TypeLink, Linkname: "x"},
		{Name: "c", Typeflag: tar.TypeChar},
		{Name: "f", Typeflag: tar.TypeFifo},
		{Name: "../x", Typeflag: tar.TypeReg, Size: 1},
	} {
		p := writeTgz(t, filepath.Join(dir, "bad"+string(rune('a'+i))+".tgz"), h)
		_, _, err := stage(t, "", p)
		require.EqualError(t, err, p+": unsafe archive member '"+h.Name+"'")
	}
}

func TestTarSizeLimits(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	lim := Limits{MaxFiles: 3, MaxTotalBytes: 100, MaxFileBytes: 60}
	p := writeTgz(t, filepath.Join(dir, "big.tgz"), &tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 61})
	_, _, _, _, err := Stage(root, "", []string{p}, guest, lim, nil)
	require.ErrorContains(t, err, "is too large (61 bytes, the limit is 60)")
	p = writeTgz(t, filepath.Join(dir, "total.tgz"),
		&tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 60}, &tar.Header{Name: "b", Typeflag: tar.TypeReg, Size: 41})
	_, _, _, _, err = Stage(root, "", []string{p}, guest, lim, nil)
	require.ErrorContains(t, err, "expand beyond the limit of 100 bytes")
	p = writeTgz(t, filepath.Join(dir, "many.tgz"), &tar.Header{Name: "a/", Typeflag: tar.TypeDir},
		&tar.Header{Name: "b/", Typeflag: tar.TypeDir}, &tar.Header{Name: "c/", Typeflag: tar.TypeDir}, &tar.Header{Name: "d/", Typeflag: tar.TypeDir})
	_, _, _, _, err = Stage(root, "", []string{p}, guest, lim, nil)
	require.ErrorContains(t, err, "too many files (more than 3)")
	entries, _ := os.ReadDir(root)
	require.Empty(t, entries, "failed builds leave nothing behind")
}

func TestGzipBombStopsEarly(t *testing.T) {
	dir := t.TempDir()
	p := writeTgz(t, filepath.Join(dir, "bomb.tgz"), &tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Size: 200 << 20})
	// writeTgz writes 'x' bytes: highly compressible, like zeros.
	_, _, err := stage(t, "", p)
	require.ErrorContains(t, err, "unsafe archive: it expands to more than")
}

func TestZipBombDeclaredSizes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bomb-1.0-py3-none-any.whl")
	f, err := os.Create(p)
	require.NoError(t, err)
	zw := zip.NewWriter(f)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "zeros", Method: zip.Deflate})
	require.NoError(t, err)
	_, err = w.Write(make([]byte, 100<<20))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.NoError(t, f.Close())
	_, _, err = stage(t, "", p)
	require.ErrorContains(t, err, "unsafe archive: it expands to more than")
}

func TestWheelTags(t *testing.T) {
	require.Equal(t, "py3-none-any", WheelTags("/x/a-1.0-py3-none-any.whl"))
	require.Equal(t, "cp313-cp313-wasi_0_0_0_wasm32", WheelTags("a-1.0-1build-cp313-cp313-wasi_0_0_0_wasm32.whl"))
	require.Equal(t, "", WheelTags("a.whl"))
	require.NoError(t, checkWheelTags("a-1-py3-none-any.whl"))
	require.NoError(t, checkWheelTags("a-1-cp313-cp313-wasm32_wasi.whl"))
	require.EqualError(t, checkWheelTags("a-1-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
		"a-1-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl: wheel is built for 'cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64', not for pure Python or WASI")
}

func TestNativeProblem(t *testing.T) {
	side := []byte("\x00asm\x01\x00\x00\x00\x00\x0f\x08dylink.0\x01\x02\x03\x04\x05\x06")
	require.Equal(t, "built for cp312, the guest is CPython 3.13", guest.nativeProblem("m.cpython-312-wasm32-wasi.so", side))
	require.Equal(t, "not a WebAssembly module", guest.nativeProblem("m.so", []byte("\x7fELF")))
	require.Equal(t, "a WebAssembly module but not a side module (no dylink.0 section)", guest.nativeProblem("m.so", []byte("\x00asm\x01\x00\x00\x00")))
	require.True(t, hasDylink(side))
	require.Equal(t, "this guest runtime does not load WebAssembly side modules", guest.nativeProblem("m.cpython-313-wasm32-wasi.so", side))
	checking := guest
	checking.CheckSide = func([]byte) error {
		return errors.New("imports the function 'f', which this guest runtime does not provide")
	}
	require.Equal(t, "imports the function 'f', which this guest runtime does not provide", checking.nativeProblem("m.so", side))
	checking.CheckSide = func([]byte) error { return nil }
	require.Equal(t, "", checking.nativeProblem("m.cpython-313-wasm32-wasi.so", side))
	require.False(t, hasDylink([]byte("\x00asm\x01\x00\x00\x00\x00\xff\xff\xff\xff\x0f")))
}

func TestArtifactRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "pkg"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "pkg", "__init__.py"), []byte("A = 1\n"), 0o644))
	image := make([]byte, 64*imagePage)
	copy(image[5*imagePage:], "hello")
	image[len(image)-1] = 7
	h := Header{Format: FormatVersion, Goeryx: "0.1.0", GuestPython: "3.13.5", Runtime: "r", Imports: []string{"pkg"}}
	data, err := Encode(h, image, tree)
	require.NoError(t, err)
	again, err := Encode(h, image, tree)
	require.NoError(t, err)
	require.Equal(t, data, again, "deterministic")
	require.Less(t, len(data), len(image)/4, "zero pages are elided")

	got, body, err := DecodeHeader(data)
	require.NoError(t, err)
	require.Equal(t, []string{"pkg"}, got.Imports)
	img, files, err := got.Payload(body)
	require.NoError(t, err)
	require.Equal(t, image, img)
	out, lease, _, err := ExtractFiles(filepath.Join(dir, "root"), files, got.FilesKey(), "f", guest, DefaultLimits)
	require.NoError(t, err)
	defer lease.Release()
	treeHash, err := TreeHash(tree)
	require.NoError(t, err)
	outHash, err := TreeHash(out)
	require.NoError(t, err)
	require.Equal(t, treeHash, outHash)
	require.FileExists(t, filepath.Join(out, "pkg", "__init__.py"))

	_, _, err = DecodeHeader([]byte("PK\x03\x04"))
	require.ErrorIs(t, err, ErrNotFactory)
	for i := len(Magic); i < len(data); i += 97 {
		bad := bytes.Clone(data)
		bad[i] ^= 0x40
		h, body, err := DecodeHeader(bad)
		if err == nil {
			_, _, err = h.Payload(body)
		}
		require.Error(t, err, "flipped byte %d", i)
	}
	for _, n := range []int{len(Magic) + 2, len(Magic) + 30, len(data) - 1} {
		h, body, err := DecodeHeader(data[:n])
		if err == nil {
			_, _, err = h.Payload(body)
		}
		require.Error(t, err, "truncated at %d", n)
	}
}

func TestImageDecodeBounds(t *testing.T) {
	_, err := imageDecode([]byte{0xff}, 8*imagePage) // claims 8 pages, holds none
	require.Error(t, err)
	h := &Header{ImageBytes: MaxImageBytes + imagePage, Sections: []Section{{Name: "image"}, {Name: "files"}}}
	h.Sections[0].SHA256 = section("image", nil).SHA256
	h.Sections[1].SHA256 = section("files", nil).SHA256
	_, _, err = h.Payload(nil)
	require.ErrorContains(t, err, "invalid image size")
}

func TestStagePrunesAbandonedTemporaries(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	old, fresh := filepath.Join(root, "tmp-old"), filepath.Join(root, "tmp-fresh")
	require.NoError(t, os.MkdirAll(old, 0o755))
	require.NoError(t, os.MkdirAll(fresh, 0o755))
	long := time.Now().Add(-2 * abandonedAfter)
	require.NoError(t, os.Chtimes(old, long, long))
	tree := filepath.Join(dir, "tree")
	require.NoError(t, os.MkdirAll(tree, 0o755))
	_, _, lease, _, err := Stage(root, tree, nil, guest, DefaultLimits, nil)
	lease.Release()
	require.NoError(t, err)
	require.NoDirExists(t, old)
	require.DirExists(t, fresh, "a build in progress elsewhere keeps its directory")
}
