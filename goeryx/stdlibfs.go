package goeryx

import (
	"archive/zip"
	"bytes"
	"io"
	"io/fs"
)

// stdlibFS serves the runtime's stdlib.zip read-only. Opened files are decompressed into
// memory so the guest can seek them (zoneinfo and importlib.resources do); directories come
// from archive/zip's synthesised tree.
type stdlibFS struct{ zr *zip.Reader }

func (s stdlibFS) Open(name string) (fs.File, error) {
	f, err := s.zr.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		return f, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, st.Size()))
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &memFile{Reader: bytes.NewReader(data), info: st}, nil
}

// memFile is a seekable read-only file.
type memFile struct {
	*bytes.Reader
	info fs.FileInfo
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }
