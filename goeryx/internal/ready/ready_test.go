package ready

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type obj struct {
	key      string
	released atomic.Bool
}

// fixture is a pool of *obj whose releases are recorded.
type fixture struct {
	p        *Pool[*obj]
	mu       sync.Mutex
	released []*obj
	made     atomic.Int64
	spare    atomic.Bool
}

func newFixture(size int, idle time.Duration) *fixture {
	f := &fixture{}
	f.spare.Store(true)
	f.p = New(Options[*obj]{Size: size, IdleRelease: idle, Spare: f.spare.Load, Release: func(o *obj) {
		if o.released.Swap(true) {
			panic("released twice")
		}
		f.mu.Lock()
		f.released = append(f.released, o)
		f.mu.Unlock()
	}})
	return f
}

func (f *fixture) maker(key string) func() (*obj, error) {
	return func() (*obj, error) { f.made.Add(1); return &obj{key: key}, nil }
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestRefillsForTheKeyAskedFor(t *testing.T) {
	f := newFixture(2, time.Minute)
	defer f.p.Close()
	if _, ok := f.p.Get("a", f.maker("a")); ok {
		t.Fatal("an empty pool served a Get")
	}
	eventually(t, "two ready", func() bool { return f.p.Stats().Ready == 2 })
	o, ok := f.p.Get("a", f.maker("a"))
	if !ok || o.key != "a" {
		t.Fatalf("Get = %v, %v", o, ok)
	}
	eventually(t, "refilled", func() bool { return f.p.Stats().Ready == 2 })
	s := f.p.Stats()
	if s.Hits != 1 || s.Misses != 1 || s.Made != 3 || s.Size != 2 {
		t.Fatalf("stats %+v", s)
	}
	// Another key: the ready objects of "a" are released, refills are for "b".
	if _, ok := f.p.Get("b", f.maker("b")); ok {
		t.Fatal("served another key's object")
	}
	eventually(t, "b ready", func() bool { return f.p.Stats().Ready == 2 })
	if o, ok := f.p.Get("b", f.maker("b")); !ok || o.key != "b" {
		t.Fatalf("Get(b) = %v, %v", o, ok)
	}
	eventually(t, "a's released", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.released) == 2 })
}

func TestNoRefillWithoutSpareCPU(t *testing.T) {
	f := newFixture(2, time.Minute)
	defer f.p.Close()
	f.spare.Store(false)
	f.p.Get("a", f.maker("a"))
	time.Sleep(50 * time.Millisecond)
	if n := f.made.Load(); n != 0 {
		t.Fatalf("made %d objects while the CPU was busy", n)
	}
	// Releases happen inline, on the caller's thread.
	o := &obj{}
	f.p.Discard(o)
	if !o.released.Load() {
		t.Fatal("Discard without spare CPU must release inline")
	}
	f.spare.Store(true)
	f.p.Kick()
	eventually(t, "refill after Kick", func() bool { return f.p.Stats().Ready == 2 })
}

func TestIdleRelease(t *testing.T) {
	f := newFixture(3, 50*time.Millisecond)
	defer f.p.Close()
	f.p.Get("a", f.maker("a"))
	eventually(t, "ready", func() bool { return f.p.Stats().Ready == 3 })
	eventually(t, "idle release", func() bool { return f.p.Stats().Ready == 0 })
	made := f.made.Load()
	time.Sleep(150 * time.Millisecond)
	if f.made.Load() != made {
		t.Fatal("the pool made objects after it went idle")
	}
	if s := f.p.Stats(); s.Expired != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSizeZeroKeepsNothing(t *testing.T) {
	f := newFixture(0, time.Minute)
	if _, ok := f.p.Get("a", f.maker("a")); ok {
		t.Fatal("served")
	}
	o := &obj{}
	f.p.Discard(o)
	if !o.released.Load() {
		t.Fatal("Discard with size 0 must release inline")
	}
	time.Sleep(20 * time.Millisecond)
	if f.made.Load() != 0 {
		t.Fatal("a pool of size 0 made objects")
	}
}

func TestFailedRefillStops(t *testing.T) {
	f := newFixture(2, time.Minute)
	defer f.p.Close()
	var calls atomic.Int64
	f.p.Get("a", func() (*obj, error) { calls.Add(1); return nil, errors.New("no") })
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("a failing maker was called %d times (once, then not until the next Get)", n)
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	f := newFixture(4, time.Minute)
	f.p.Get("a", f.maker("a"))
	eventually(t, "ready", func() bool { return f.p.Stats().Ready == 4 })
	f.p.Close()
	f.mu.Lock()
	n := len(f.released)
	f.mu.Unlock()
	if n != 4 {
		t.Fatalf("released %d of 4", n)
	}
	if _, ok := f.p.Get("a", f.maker("a")); ok {
		t.Fatal("a closed pool served")
	}
	o := &obj{}
	f.p.Discard(o)
	if !o.released.Load() {
		t.Fatal("Discard after Close must release inline")
	}
}

func TestConcurrentUse(t *testing.T) {
	f := newFixture(2, time.Minute)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				o, ok := f.p.Get("a", f.maker("a"))
				if !ok {
					o, _ = f.maker("a")()
				}
				f.p.Discard(o)
			}
		}()
	}
	wg.Wait()
	f.p.Close()
	// Every object made was released exactly once (Release panics on a second release).
	eventually(t, "all released", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return int64(len(f.released)) == f.made.Load()
	})
}
