// Package ready keeps a few expensive objects made ahead of demand ("ready interpreters"):
// a bounded pool, refilled by one background goroutine that exists only while there is work
// and only when the process has spare CPU, and emptied when nobody has taken from it for a
// while.
//
// Objects are made for a key (what makes two of them interchangeable). The pool refills for
// the key last asked for: a caller that finds nothing ready for its key makes its object
// itself, as it would without a pool, and the pool switches to that key. Objects are also
// released through the pool (Discard), so that their release (resetting an interpreter's
// memory) happens off the caller's path too, before the next refill reuses what it frees.
package ready

import (
	"sync"
	"time"
)

// Options configure a Pool.
type Options[T any] struct {
	// Size is the most objects kept ready (0: the pool keeps none and releases inline).
	Size int
	// IdleRelease: ready objects are released once none was taken for this long.
	IdleRelease time.Duration
	// Spare reports whether the process has spare CPU now: refills wait for it, and releases
	// without it happen inline, on the caller's thread, as they would without a pool (a
	// background goroutine would only compete with the callers for the CPU). nil: always.
	Spare func() bool
	// Release frees an object the pool no longer needs.
	Release func(T)
}

// Stats are a Pool's counters.
type Stats struct {
	Size    int    // the most objects kept ready
	Ready   int    // objects ready now
	Hits    uint64 // Get calls served by a ready object
	Misses  uint64 // Get calls that found none for their key
	Made    uint64 // objects made by the background goroutine
	Expired uint64 // ready objects released unused (idle, or their key no longer asked for)
}

type item[T any] struct {
	key string
	obj T
}

// Pool is a pool of ready objects; its methods are safe for concurrent use.
type Pool[T any] struct {
	opt Options[T]

	mu       sync.Mutex
	ready    []item[T] // oldest first
	wantKey  string
	wantMake func() (T, error) // nil: nothing to refill
	failed   bool              // the last refill failed: none until the next Get
	release  []T               // objects to release
	working  bool              // the background goroutine runs
	stopped  sync.Cond         // signalled when it exits
	lastTake time.Time
	sweeping bool
	closed   bool
	stats    Stats
}

// New returns a pool (no goroutine runs until there is work).
func New[T any](opt Options[T]) *Pool[T] {
	if opt.Size < 0 {
		opt.Size = 0
	}
	p := &Pool[T]{opt: opt, stats: Stats{Size: opt.Size}}
	p.stopped.L = &p.mu
	return p
}

// Get takes an object ready for key. Whether or not there was one, the pool then refills for
// key with make (in the background, when the CPU is spare). ok is false when nothing was
// ready: the caller makes its own.
func (p *Pool[T]) Get(key string, mk func() (T, error)) (obj T, ok bool) {
	if p.opt.Size == 0 {
		return obj, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return obj, false
	}
	p.lastTake = time.Now()
	for i, it := range p.ready {
		if it.key == key {
			p.ready = append(p.ready[:i], p.ready[i+1:]...)
			obj, ok = it.obj, true
			break
		}
	}
	if ok {
		p.stats.Hits++
	} else {
		p.stats.Misses++
	}
	if p.wantKey != key {
		// Objects of the key asked before will not be taken any more: make room.
		keep := p.ready[:0]
		for _, it := range p.ready {
			if it.key == key {
				keep = append(keep, it)
			} else {
				p.release = append(p.release, it.obj)
				p.stats.Expired++
			}
		}
		clear(p.ready[len(keep):])
		p.ready = keep
	}
	p.wantKey, p.wantMake, p.failed = key, mk, false
	p.kick()
	return obj, ok
}

// Discard releases obj in the background, or inline when the pool keeps nothing or the CPU
// is not spare.
func (p *Pool[T]) Discard(obj T) {
	if p.opt.Spare != nil && !p.opt.Spare() {
		p.opt.Release(obj)
		return
	}
	p.mu.Lock()
	if p.opt.Size == 0 || p.closed {
		p.mu.Unlock()
		p.opt.Release(obj)
		return
	}
	p.release = append(p.release, obj)
	p.kick()
	p.mu.Unlock()
}

// Kick lets the pool resume a refill it put off for want of spare CPU (call it when CPU is
// freed, e.g. at the end of a run).
func (p *Pool[T]) Kick() {
	if p.opt.Size == 0 {
		return
	}
	p.mu.Lock()
	p.kick()
	p.mu.Unlock()
}

// kick starts the background goroutine if there is work for it now; p.mu is held. A refill
// without spare CPU is not work for now: a goroutine started only to find that would cost a
// thread wake-up, and take a Go P from a caller, at the end of every run of a busy process.
func (p *Pool[T]) kick() {
	if p.working || (len(p.release) == 0 && (!p.refillDue() || (p.opt.Spare != nil && !p.opt.Spare()))) {
		return
	}
	p.working = true
	go p.work()
}

// refillDue says whether a refill is wanted; p.mu is held.
func (p *Pool[T]) refillDue() bool {
	return !p.closed && p.wantMake != nil && !p.failed && len(p.ready) < p.opt.Size
}

// work releases what was discarded, then refills while the CPU is spare, and exits when there
// is nothing more to do (or the CPU is busy: a later Get, Discard or Kick resumes).
func (p *Pool[T]) work() {
	for {
		p.mu.Lock()
		if n := len(p.release); n > 0 {
			objs := p.release
			p.release = nil
			p.mu.Unlock()
			for _, o := range objs {
				p.opt.Release(o)
			}
			continue
		}
		if !p.refillDue() || (p.opt.Spare != nil && !p.opt.Spare()) {
			p.working = false
			p.stopped.Broadcast()
			p.mu.Unlock()
			return
		}
		key, mk := p.wantKey, p.wantMake
		p.mu.Unlock()

		obj, err := mk()

		p.mu.Lock()
		if err != nil {
			p.failed = true // the caller's own attempt will report the error
			p.mu.Unlock()
			continue
		}
		if p.closed || key != p.wantKey || len(p.ready) >= p.opt.Size {
			p.release = append(p.release, obj)
			p.stats.Expired++
		} else {
			p.ready = append(p.ready, item[T]{key, obj})
			p.stats.Made++
			if !p.sweeping && p.opt.IdleRelease > 0 {
				p.sweeping = true
				time.AfterFunc(p.opt.IdleRelease, p.sweep)
			}
		}
		p.mu.Unlock()
	}
}

// sweep releases the ready objects once none was taken for IdleRelease, and forgets the key,
// so that a process that stops asking keeps nothing and does nothing.
func (p *Pool[T]) sweep() {
	p.mu.Lock()
	p.sweeping = false
	if p.closed || len(p.ready) == 0 {
		p.mu.Unlock()
		return
	}
	if idle := time.Since(p.lastTake); idle < p.opt.IdleRelease {
		p.sweeping = true
		time.AfterFunc(p.opt.IdleRelease-idle, p.sweep)
		p.mu.Unlock()
		return
	}
	objs := p.drain()
	p.mu.Unlock()
	for _, o := range objs {
		p.opt.Release(o)
	}
}

// drain empties the pool and forgets the key; p.mu is held.
func (p *Pool[T]) drain() []T {
	var objs []T
	for _, it := range p.ready {
		objs = append(objs, it.obj)
	}
	p.stats.Expired += uint64(len(p.ready))
	p.ready = nil
	p.wantKey, p.wantMake = "", nil
	return objs
}

// Close releases the ready objects, after the background goroutine is done; objects
// discarded later are released inline.
func (p *Pool[T]) Close() {
	p.mu.Lock()
	p.closed = true
	for p.working {
		p.stopped.Wait() // it finishes the object it is making, then releases it
	}
	objs := append(p.drain(), p.release...)
	p.release = nil
	p.mu.Unlock()
	for _, o := range objs {
		p.opt.Release(o)
	}
}

// Stats returns the pool's counters.
func (p *Pool[T]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Ready = len(p.ready)
	return s
}
