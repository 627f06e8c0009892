package goeryx

import (
	"sync/atomic"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

const wasmPageSize = 64 << 10

// maxWasm32Memory is the largest linear memory wasm32 can address.
const maxWasm32Memory = 4 << 30

// linearMemory backs one instance's linear memory with an anonymous mapping reserved up to the
// instance's cap, so growth never copies and the cap is enforced exactly: a Reallocate beyond it
// returns nil, which the guest sees as a failed memory.grow (MemoryError in Python).
type linearMemory struct {
	reserved []byte // the whole mapping
	limit    uint64 // cap in bytes, a multiple of the page size
	size     atomic.Uint64
	peak     atomic.Uint64
	refused  atomic.Bool
}

// newLinearMemory reserves address space for limit bytes (0: the wasm32 maximum).
func newLinearMemory(limit uint64) (*linearMemory, error) {
	if limit == 0 || limit > maxWasm32Memory {
		limit = maxWasm32Memory
	}
	limit -= limit % wasmPageSize
	buf, err := syscall.Mmap(-1, 0, int(limit), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	return &linearMemory{reserved: buf, limit: limit}, nil
}

// Allocate implements experimental.MemoryAllocator: each linearMemory serves one instance.
func (m *linearMemory) Allocate(_, _ uint64) experimental.LinearMemory { return m }

// Reallocate implements experimental.LinearMemory.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.refused.Store(true)
		return nil
	}
	m.size.Store(size)
	for {
		p := m.peak.Load()
		if size <= p || m.peak.CompareAndSwap(p, size) {
			break
		}
	}
	return m.reserved[:size:size]
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() {
	if m.reserved != nil {
		_ = syscall.Munmap(m.reserved)
		m.reserved = nil
	}
}

// resetPeak starts peak tracking for a new run from the current size.
func (m *linearMemory) resetPeak() {
	m.peak.Store(m.size.Load())
	m.refused.Store(false)
}
