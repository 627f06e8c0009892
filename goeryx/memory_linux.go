package goeryx

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// memfdBacking maps the image copy-on-write from a memfd: a fresh mapping costs no copy, and
// madvise(MADV_DONTNEED) on a used one drops the guest's private pages, so its content reverts
// to the image (file-backed part) and to zero (anonymous part).
type memfdBacking struct {
	fd      int
	imgSize uint64 // image length rounded up to the OS page size
}

func newImageBacking(image []byte) (imageBacking, error) {
	if len(image) == 0 {
		return &memfdBacking{fd: -1}, nil
	}
	fd, err := unix.MemfdCreate("goeryx-image", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	pg := uint64(unix.Getpagesize())
	size := (uint64(len(image)) + pg - 1) / pg * pg
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ftruncate: %w", err)
	}
	for off := 0; off < len(image); {
		n, err := unix.Pwrite(fd, image[off:], int64(off))
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("pwrite: %w", err)
		}
		off += n
	}
	return &memfdBacking{fd: fd, imgSize: size}, nil
}

func (b *memfdBacking) preloaded() bool { return b.fd >= 0 }

func (b *memfdBacking) mapMemory(limit uint64) ([]byte, error) {
	buf, err := unix.Mmap(-1, 0, int(limit), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	if b.fd >= 0 && b.imgSize <= limit {
		if _, err := unix.MmapPtr(b.fd, 0, unsafe.Pointer(&buf[0]), uintptr(b.imgSize),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
			_ = unix.Munmap(buf)
			return nil, err
		}
	}
	return buf, nil
}

func (b *memfdBacking) reset(buf []byte, used uint64) error {
	if used == 0 {
		return nil
	}
	pg := uint64(unix.Getpagesize())
	used = (used + pg - 1) / pg * pg
	if used > uint64(len(buf)) {
		used = uint64(len(buf))
	}
	return unix.Madvise(buf[:used], unix.MADV_DONTNEED)
}

func (b *memfdBacking) unmap(buf []byte) { _ = unix.Munmap(buf) }
