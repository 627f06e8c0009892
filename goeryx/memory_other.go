//go:build !linux

package goeryx

import (
	"errors"
	"syscall"
)

// copyBacking maps anonymous memory and copies the image into it (no copy-on-write images
// outside Linux yet).
type copyBacking struct{ image []byte }

func newImageBacking(image []byte) (imageBacking, error) { return &copyBacking{image: image}, nil }

func (b *copyBacking) preloaded() bool { return len(b.image) > 0 }

func (b *copyBacking) mapMemory(limit uint64, _ bool) ([]byte, error) {
	buf, err := syscall.Mmap(-1, 0, int(limit), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, err
	}
	if uint64(len(b.image)) <= limit {
		copy(buf, b.image)
	}
	return buf, nil
}

func (b *copyBacking) reset(buf []byte, used uint64) error {
	n := copy(buf, b.image)
	if used > uint64(n) {
		clear(buf[n:used])
	}
	return nil
}

func (b *copyBacking) unmap(buf []byte) { _ = syscall.Munmap(buf) }

func (b *copyBacking) close() {}

// protect is never called here: there is no memory guard outside Linux.
func protect([]byte, bool) error { return errors.New("no memory guard on this platform") }
