package factory

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// The factory artifact (SandboxFactory.to_bytes, API.md §10):
//
//	magic (16 bytes) | u32 LE n | header: n bytes of JSON | u32 LE CRC-32C of the header |
//	section "image" | section "files"
//
// The header names the format, the goeryx version, the guest Python and the runtime (the
// cache key of the runtime's own image: the instrumented module, stdlib, driver and engine
// that the captured memory depends on), and each section's size and SHA-256. "image" is the
// interpreter memory with zero pages elided (imageEncode); "files" is an uncompressed tar of
// the private site-packages tree, written deterministically and read back through the same
// checks as any package archive. The same factory always encodes to the same bytes.

// Magic starts every factory file. "\r\n" catches a text-mode transfer.
const Magic = "GOERYX-FACTORY\r\n"

// FormatVersion is the artifact format; a file of another format is refused as incompatible.
const FormatVersion = 1

const (
	maxHeaderBytes = 1 << 20
	// MaxImageBytes bounds the interpreter memory a factory file may declare: a file of a few
	// kilobytes must not make a load allocate gigabytes.
	MaxImageBytes = 1 << 30
	imagePage     = 4096
)

// Header is the artifact's header.
type Header struct {
	Format      int       `json:"format"`
	Goeryx      string    `json:"goeryx"`
	GuestPython string    `json:"guest_python"`
	Runtime     string    `json:"runtime"`
	Imports     []string  `json:"imports"`
	ImageBytes  uint64    `json:"image_bytes"`
	Sections    []Section `json:"sections"`
	// Libraries are the extension modules (WebAssembly side modules) loaded in the image, in
	// load order, bound again at the same bases in every interpreter (goeryx/internal/dylink).
	Libraries []Library `json:"libraries,omitempty"`
}

// Library is an extension module of the image: a package file (Path is its guest path) and
// where the loader placed it.
type Library struct {
	Path      string `json:"path"`
	SHA256    string `json:"sha256"`
	MemBase   uint32 `json:"mem_base"`
	TableBase uint32 `json:"table_base"`
}

// Section is one payload after the header.
type Section struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrNotFactory: the data does not start with Magic.
var ErrNotFactory = errors.New("not a goeryx factory file")

// Encode builds the artifact from a header (Format, Goeryx, GuestPython, Runtime, Imports),
// the interpreter image and the private site-packages directory.
func Encode(h Header, image []byte, filesDir string) ([]byte, error) {
	img := imageEncode(image)
	files, err := tarTree(filesDir)
	if err != nil {
		return nil, err
	}
	h.ImageBytes = uint64(len(image))
	h.Sections = []Section{section("image", img), section("files", files)}
	hdr, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(Magic)+8+len(hdr)+len(img)+len(files))
	out = append(out, Magic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(hdr)))
	out = append(out, hdr...)
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(hdr, castagnoli))
	out = append(out, img...)
	out = append(out, files...)
	return out, nil
}

func section(name string, data []byte) Section {
	sum := sha256.Sum256(data)
	return Section{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// DecodeHeader reads the header: ErrNotFactory when data is no factory file at all, another
// error when it is damaged. It checks nothing about compatibility (the caller compares the
// fields) nor the sections' content (Payload does).
func DecodeHeader(data []byte) (*Header, []byte, error) {
	if len(data) < len(Magic) || string(data[:len(Magic)]) != Magic {
		return nil, nil, ErrNotFactory
	}
	rest := data[len(Magic):]
	if len(rest) < 4 {
		return nil, nil, errors.New("truncated header")
	}
	n := binary.LittleEndian.Uint32(rest)
	if n > maxHeaderBytes {
		return nil, nil, fmt.Errorf("header of %d bytes is too large", n)
	}
	if uint64(len(rest)) < 8+uint64(n) {
		return nil, nil, errors.New("truncated header")
	}
	raw := rest[4 : 4+n]
	if binary.LittleEndian.Uint32(rest[4+n:]) != crc32.Checksum(raw, castagnoli) {
		return nil, nil, errors.New("header checksum mismatch")
	}
	var h Header
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, nil, fmt.Errorf("malformed header: %v", err)
	}
	return &h, rest[8+n:], nil
}

// Payload checks the sections' sizes and checksums against the header and returns the
// decoded image and the files section (a tar for ExtractFiles).
func (h *Header) Payload(body []byte) (image, files []byte, err error) {
	if len(h.Sections) != 2 || h.Sections[0].Name != "image" || h.Sections[1].Name != "files" {
		return nil, nil, errors.New("malformed header: unexpected sections")
	}
	var parts [][]byte
	off := int64(0)
	for _, s := range h.Sections {
		if s.Size < 0 || s.Size > int64(len(body))-off {
			return nil, nil, fmt.Errorf("truncated (section %s)", s.Name)
		}
		part := body[off : off+s.Size]
		sum := sha256.Sum256(part)
		if hex.EncodeToString(sum[:]) != s.SHA256 {
			return nil, nil, fmt.Errorf("checksum mismatch in section %s", s.Name)
		}
		parts = append(parts, part)
		off += s.Size
	}
	if off != int64(len(body)) {
		return nil, nil, fmt.Errorf("%d unexpected bytes after the last section", int64(len(body))-off)
	}
	if h.ImageBytes == 0 || h.ImageBytes > MaxImageBytes || h.ImageBytes%imagePage != 0 {
		return nil, nil, fmt.Errorf("invalid image size %d", h.ImageBytes)
	}
	img, err := imageDecode(parts[0], h.ImageBytes)
	if err != nil {
		return nil, nil, err
	}
	return img, parts[1], nil
}

// imageEncode elides zero pages: a bitmap of the pages present, then those pages.
func imageEncode(image []byte) []byte {
	pages := (len(image) + imagePage - 1) / imagePage
	bitmap := make([]byte, (pages+7)/8)
	var data []byte
	zero := make([]byte, imagePage)
	for i := 0; i < pages; i++ {
		page := image[i*imagePage : min((i+1)*imagePage, len(image))]
		if bytes.Equal(page, zero[:len(page)]) {
			continue
		}
		bitmap[i/8] |= 1 << (i % 8)
		data = append(data, page...)
	}
	return append(bitmap, data...)
}

func imageDecode(enc []byte, size uint64) ([]byte, error) {
	pages := int(size / imagePage)
	bm := (pages + 7) / 8
	if len(enc) < bm {
		return nil, errors.New("truncated image")
	}
	present := 0
	for _, b := range enc[:bm] {
		for ; b != 0; b &= b - 1 {
			present++
		}
	}
	if len(enc) != bm+present*imagePage {
		return nil, errors.New("malformed image")
	}
	img := make([]byte, size)
	data := enc[bm:]
	for i := 0; i < pages; i++ {
		if enc[i/8]&(1<<(i%8)) != 0 {
			copy(img[i*imagePage:], data[:imagePage])
			data = data[imagePage:]
		}
	}
	return img, nil
}

// tarTree writes dir as a deterministic tar: sorted paths, fixed modes and times.
func tarTree(dir string) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case info.IsDir():
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
		case info.Mode().IsRegular():
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, info.Size()
		default:
			return nil, fmt.Errorf("%s is not a regular file", p)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ExtractFiles stages the files section of an artifact under root, with the same checks as a
// package archive, and returns the private directory. The directory is named by the section's
// SHA-256 (key, already checked against the content): loading the same file again finds it
// extracted.
func ExtractFiles(root string, files []byte, key, label string, guest Guest, lim Limits) (dir string, lease *Lease, fresh bool, err error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", nil, false, fmt.Errorf("cannot create %s: %v", root, err)
	}
	final := filepath.Join(root, "f-"+key[:min(len(key), 32)])
	if l, ok := Acquire(final); ok {
		return final, l, false, nil
	}
	tmp, err := os.MkdirTemp(root, "tmp-")
	if err != nil {
		return "", nil, false, err
	}
	defer os.RemoveAll(tmp)
	s := &staging{dir: tmp, lim: lim, guest: guest}
	if err := s.addTar(label, bytes.NewReader(files)); err != nil {
		return "", nil, false, err
	}
	l, err := publishLeased(tmp, final)
	if err != nil {
		return "", nil, false, err
	}
	return final, l, true, nil
}

// FilesKey is the key ExtractFiles names a files section by.
func (h *Header) FilesKey() string {
	if len(h.Sections) != 2 {
		return ""
	}
	return h.Sections[1].SHA256
}
