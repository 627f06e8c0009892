package goeryx

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/goeryx/goeryx/goeryx/internal/dylink"
	"github.com/goeryx/goeryx/goeryx/internal/guard"
)

const wasmPageSize = 64 << 10

// maxWasm32Memory is the largest linear memory wasm32 can address.
const maxWasm32Memory = 4 << 30

// maxIdleMemories bounds the idle buffers a pool keeps per reservation size, and
// idleRelease is how long an idle buffer is kept before it is unmapped.
const (
	maxIdleMemories = 8
	idleRelease     = 30 * time.Second
)

// linearMemory backs one instance's linear memory with a mapping reserved up to the
// instance's cap, so growth never copies and the cap is enforced exactly: a Reallocate beyond
// it returns nil, which the guest sees as a failed memory.grow (MemoryError in Python).
//
// A linearMemory comes from a memoryPool holding the runtime's memory image. When handed out,
// its first len(image) bytes hold the image and the rest is zero; on Linux the image is mapped
// copy-on-write from a memfd, so nothing is copied and returning the buffer to the pool only
// discards the pages the guest wrote (docs/RATIONALE.md).
//
// In a guarded pool (guard.Available) the mapping is a guard.Reservation whose bytes beyond the
// current size are PROT_NONE: wazero's code then accesses the memory without bounds checks and
// an access beyond it faults into the guard's handler, which makes it the out-of-bounds trap
// (RATIONALE.md, "Why guest memory has guard regions instead of bounds checks").
type linearMemory struct {
	pool     *memoryPool
	reserved []byte // the whole mapping
	limit    uint64 // cap in bytes, a multiple of the page size
	guarded  bool
	guard    guard.Registration
	prot     uint64 // guarded: reserved[:prot] is accessible, the rest PROT_NONE
	size     atomic.Uint64
	high     uint64 // the largest size ever handed out: what a reset must clean
	// use is the accounting of the instance the memory serves (nil while pooled). It belongs
	// to the instance, not to the memory: a guest that exits closes its module, which returns
	// the memory to the pool in the middle of a run, and the run's classification (a refused
	// growth means a memory-limit error) and its peak must survive that.
	use   atomic.Pointer[memoryUse]
	freed bool      // returned to the pool (until get hands it out again)
	idle  time.Time // when it was returned to the pool
}

// Allocate implements experimental.MemoryAllocator: each linearMemory serves one instance.
func (m *linearMemory) Allocate(_, _ uint64) experimental.LinearMemory { return m }

// Reallocate implements experimental.LinearMemory.
func (m *linearMemory) Reallocate(size uint64) []byte {
	use := m.use.Load()
	if size > m.limit {
		if use != nil {
			use.refused.Store(true)
		}
		return nil
	}
	if m.guarded && size != m.prot {
		// Growth opens pages, a smaller start (a pooled memory handed to a new instance)
		// closes them again: nothing beyond size may be accessible to unchecked code.
		var err error
		if size > m.prot {
			err = protect(m.reserved[m.prot:size], true)
		} else {
			err = protect(m.reserved[size:m.prot], false)
		}
		if err != nil {
			return nil
		}
		m.prot = size
	}
	m.size.Store(size)
	if size > m.high {
		m.high = size
	}
	if use != nil {
		use.grew(size)
	}
	return m.reserved[:size:size]
}

// GuardReservation implements wazero's experimental.GuardedLinearMemory (patched wazero): the
// size of the reservation, 0 when the memory is not guarded.
func (m *linearMemory) GuardReservation() uint64 {
	if !m.guarded {
		return 0
	}
	return uint64(len(m.reserved))
}

// GuardSlot implements experimental.GuardedLinearMemory: where wazero publishes the execution
// context that the guard's handler exits through.
func (m *linearMemory) GuardSlot() *uintptr {
	if !m.guarded {
		return nil
	}
	return m.guard.Slot()
}

// memoryUse is what one instance's runs observed of its memory.
type memoryUse struct {
	peak    atomic.Uint64
	refused atomic.Bool // a growth beyond the cap was refused
}

func (u *memoryUse) grew(size uint64) {
	for {
		p := u.peak.Load()
		if size <= p || u.peak.CompareAndSwap(p, size) {
			return
		}
	}
}

// Free implements experimental.LinearMemory: wazero calls it when the instance closes.
func (m *linearMemory) Free() {
	if m.reserved != nil && !m.freed {
		m.freed = true
		m.use.Store(nil)
		m.pool.put(m)
	}
}

// beginRun starts the accounting of a new run from the memory's current size.
func (u *memoryUse) beginRun(m *linearMemory) {
	u.refused.Store(false)
	u.peak.Store(0)
	if m != nil && !m.freed {
		u.peak.Store(m.size.Load())
	}
}

// memoryPool hands out linear memories that start as the image, reusing released ones.
type memoryPool struct {
	image   []byte
	backing imageBacking
	guarded bool // memories are guard reservations (guard.Available when the pool was made)
	// libs are the side modules loaded when the image was taken (goeryx/dylink.go).
	libs []dylink.Record

	mu       sync.Mutex
	idle     map[uint64][]*linearMemory // by mapping size, oldest first
	closed   bool                       // memories released after close are unmapped
	sweeping bool                       // a sweep is scheduled
}

// imageBacking is the platform's way of presenting the image in a fresh mapping.
type imageBacking interface {
	// mapMemory reserves size bytes whose prefix holds the image, accessible or (guarded)
	// PROT_NONE.
	mapMemory(size uint64, guarded bool) ([]byte, error)
	// reset makes buf[:used] hold the image again (and zeros after it).
	reset(buf []byte, used uint64) error
	unmap(buf []byte)
	// preloaded says whether mapMemory's buffers already hold the image.
	preloaded() bool
	// close releases what the backing holds (mappings made from it stay valid).
	close()
}

func newMemoryPool(image []byte) (*memoryPool, error) {
	b, err := newImageBacking(image)
	if err != nil {
		return nil, err
	}
	return &memoryPool{image: image, backing: b, guarded: guard.Available(), idle: map[uint64][]*linearMemory{}}, nil
}

// reservation rounds a cap (0: none) to the size of the mapping that serves it.
func reservation(limit uint64) uint64 {
	if limit == 0 || limit > maxWasm32Memory {
		limit = maxWasm32Memory
	}
	return limit - limit%wasmPageSize
}

// get returns a memory whose cap is limit (0: the wasm32 maximum).
func (p *memoryPool) get(limit uint64) (*linearMemory, error) {
	r := reservation(limit)
	size := r
	if p.guarded {
		size = guard.Reservation // any cap: Reallocate enforces it
	}
	p.mu.Lock()
	if list := p.idle[size]; len(list) > 0 {
		m := list[len(list)-1]
		p.idle[size] = list[:len(list)-1]
		p.mu.Unlock()
		m.freed = false
		m.limit = r
		return m, nil
	}
	p.mu.Unlock()
	buf, err := p.backing.mapMemory(size, p.guarded)
	if err != nil {
		return nil, err
	}
	m := &linearMemory{pool: p, reserved: buf, limit: r}
	if p.guarded {
		if m.guard, err = guard.Register(buf); err != nil {
			p.backing.unmap(buf)
			return nil, err
		}
		m.guarded = true
	}
	return m, nil
}

// unmap releases m's mapping (forgetting it in the guard's table first).
func (p *memoryPool) unmap(m *linearMemory) {
	if m.guarded {
		m.guard.Unregister()
	}
	p.backing.unmap(m.reserved)
	m.reserved = nil
}

// put resets m to the image and keeps it for reuse, or unmaps it.
func (p *memoryPool) put(m *linearMemory) {
	if err := p.backing.reset(m.reserved, m.high); err == nil {
		m.size.Store(0)
		p.mu.Lock()
		size := uint64(len(m.reserved))
		if !p.closed && len(p.idle[size]) < maxIdleMemories {
			m.idle = time.Now()
			p.idle[size] = append(p.idle[size], m)
			if !p.sweeping {
				p.sweeping = true
				time.AfterFunc(idleRelease, p.sweep)
			}
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	p.unmap(m)
}

// sweep unmaps the memories idle for idleRelease, so a process that stops making
// interpreters gives their memory back.
func (p *memoryPool) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweeping = false
	if p.closed {
		return
	}
	cutoff := time.Now().Add(-idleRelease)
	remaining := false
	for r, list := range p.idle {
		keep := list[:0]
		for _, m := range list {
			if m.idle.Before(cutoff) {
				p.unmap(m)
			} else {
				keep = append(keep, m)
			}
		}
		p.idle[r] = keep
		remaining = remaining || len(keep) > 0
	}
	if remaining {
		p.sweeping = true
		time.AfterFunc(idleRelease, p.sweep)
	}
}

// close unmaps the idle memories and releases the image; memories in use are unmapped when
// their instances close.
func (p *memoryPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, list := range p.idle {
		for _, m := range list {
			p.unmap(m)
		}
	}
	p.idle = nil
	p.backing.close()
}
