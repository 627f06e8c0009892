package goeryx

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// memfdBacking maps the image copy-on-write from a memfd: a fresh mapping costs no copy.
//
// Resetting a used mapping must undo exactly what the guest wrote. /proc/self/pagemap tells
// which pages of the image part are still the memfd's (never written) and which became
// private copies: those are copied back from the image (they stay mapped, so the next run
// takes no page fault on them), or dropped with MADV_DONTNEED when there are many. The part
// beyond the image is dropped (it reads as zero again).
type memfdBacking struct {
	fd       int
	imgSize  uint64 // image length rounded up to the OS page size
	image    []byte
	pagemap  *os.File // nil if unreadable: then every reset drops the whole range
	pageSize uint64
	scratch  sync.Pool // *resetScratch: resets run concurrently, each needs its own
}

// resetScratch holds the buffers of one reset (tens of KB of pagemap entries per reset would
// otherwise be garbage).
type resetScratch struct {
	entries []byte
	dirty   []uint64
}

// Pages of the image that a reset copies back at most; beyond that it drops them.
const maxCopyBackPages = 1024

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
	b := &memfdBacking{fd: fd, imgSize: size, image: image, pageSize: pg}
	if f, err := os.Open("/proc/self/pagemap"); err == nil {
		b.pagemap = f
	}
	return b, nil
}

func (b *memfdBacking) preloaded() bool { return b.fd >= 0 }

func (b *memfdBacking) mapMemory(size uint64, guarded bool) ([]byte, error) {
	prot := unix.PROT_READ | unix.PROT_WRITE
	if guarded {
		prot = unix.PROT_NONE // linearMemory.Reallocate opens what the instance may use
	}
	buf, err := unix.Mmap(-1, 0, int(size), prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	if b.fd >= 0 && b.imgSize <= size {
		if _, err := unix.MmapPtr(b.fd, 0, unsafe.Pointer(&buf[0]), uintptr(b.imgSize),
			prot, unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
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
	pg := b.pageSize
	if pg == 0 {
		pg = uint64(unix.Getpagesize())
	}
	used = (used + pg - 1) / pg * pg
	if used > uint64(len(buf)) {
		used = uint64(len(buf))
	}
	img := min(b.imgSize, used)
	if b.fd < 0 || b.pagemap == nil || img == 0 {
		return unix.Madvise(buf[:used], unix.MADV_DONTNEED)
	}
	if used > img {
		if err := unix.Madvise(buf[img:used], unix.MADV_DONTNEED); err != nil {
			return err
		}
	}
	scratch, _ := b.scratch.Get().(*resetScratch)
	if scratch == nil {
		scratch = new(resetScratch)
	}
	defer b.scratch.Put(scratch)
	dirty, err := b.privatePages(buf[:img], scratch)
	if err != nil {
		return unix.Madvise(buf[:img], unix.MADV_DONTNEED)
	}
	if len(dirty) > maxCopyBackPages {
		for _, p := range dirty {
			if err := unix.Madvise(buf[p*pg:(p+1)*pg], unix.MADV_DONTNEED); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range dirty {
		start, end := p*pg, (p+1)*pg
		n := copy(buf[start:end], b.image[min(start, uint64(len(b.image))):min(end, uint64(len(b.image)))])
		clear(buf[start+uint64(n) : end])
	}
	return nil
}

// Bits of a /proc/self/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
const (
	pagemapPresent = 1 << 63
	pagemapFile    = 1 << 61 // file-backed or shared: for our private file mapping, never written
)

// privatePages returns the indices of the pages of mem that the guest has written (present,
// not file-backed), in s's buffers. Pages swapped out would also be private; treat them like
// present ones.
func (b *memfdBacking) privatePages(mem []byte, s *resetScratch) ([]uint64, error) {
	pg := b.pageSize
	n := uint64(len(mem)) / pg
	if uint64(cap(s.entries)) < n*8 {
		s.entries = make([]byte, n*8)
	}
	entries := s.entries[:n*8]
	off := int64(uintptr(unsafe.Pointer(&mem[0])) / uintptr(pg) * 8)
	if _, err := b.pagemap.ReadAt(entries, off); err != nil {
		return nil, err
	}
	s.dirty = s.dirty[:0]
	for i := uint64(0); i < n; i++ {
		e := binary.LittleEndian.Uint64(entries[i*8:])
		if e&(pagemapPresent|1<<62) != 0 && e&pagemapFile == 0 {
			s.dirty = append(s.dirty, i)
		}
	}
	return s.dirty, nil
}

func (b *memfdBacking) unmap(buf []byte) { _ = unix.Munmap(buf) }

func (b *memfdBacking) close() {
	if b.fd >= 0 {
		_ = unix.Close(b.fd)
		b.fd = -1
	}
	if b.pagemap != nil {
		_ = b.pagemap.Close()
		b.pagemap = nil
	}
}

// protect makes buf accessible (read and write) or not (a guard region).
func protect(buf []byte, accessible bool) error {
	if len(buf) == 0 {
		return nil
	}
	prot := unix.PROT_NONE
	if accessible {
		prot = unix.PROT_READ | unix.PROT_WRITE
	}
	return unix.Mprotect(buf, prot)
}
