package goeryx

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/goeryx/goeryx/goeryx/internal/vfs"
)

// monoBase is the origin of the guest's monotonic clock, shared by every instance in the
// process so that absolute deadlines mean the same thing everywhere.
var monoBase = time.Now()

func monotonicNow() int64 { return int64(time.Since(monoBase)) }

// WASI constants (wasi_snapshot_preview1).
const (
	wasiClockRealtime  = 0
	wasiClockMonotonic = 1
	wasiEventClock     = 0
	wasiErrnoSuccess   = 0
	wasiErrnoInval     = 28
	wasiErrnoFault     = 21
	wasiAbstime        = 1
)

// instantiateWASI installs WASI with the vfs package's ENOSPC mapping and the engine's own
// poll_oneoff: wazero's refuses absolute clock subscriptions (CPython's time.sleep uses them)
// and its sleeps cannot be interrupted at the run's deadline.
func instantiateWASI(ctx context.Context, r wazero.Runtime) error {
	b, err := vfs.NewWASIBuilder(ctx, r)
	if err != nil {
		return err
	}
	i32 := api.ValueTypeI32
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(pollOneoff), []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("in", "out", "nsubscriptions", "result.nevents").
		Export("poll_oneoff")
	_, err = b.Instantiate(ctx)
	return err
}

// pollOneoff implements WASI poll_oneoff: clock subscriptions sleep (interruptibly, through
// the instance), fd subscriptions are reported ready at once (the guest has no blocking
// descriptors: stdin is empty and sockets go through the host protocol).
func pollOneoff(ctx context.Context, m api.Module, stack []uint64) {
	in, out, n, resultN := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	ret := func(errno uint64) { stack[0] = errno }
	if n == 0 {
		ret(wasiErrnoInval)
		return
	}
	mem := m.Memory()
	subs, ok1 := mem.Read(in, n*48)
	events, ok2 := mem.Read(out, n*32)
	if !ok1 || !ok2 {
		ret(wasiErrnoFault)
		return
	}
	clear(events)
	le := binary.LittleEndian
	var sleep time.Duration = -1
	fdReady := false
	for i := uint32(0); i < n; i++ {
		s := subs[i*48 : i*48+48]
		e := events[i*32 : i*32+32]
		copy(e[0:8], s[0:8]) // userdata
		e[10] = s[8]         // type
		if s[8] != wasiEventClock {
			fdReady = true
			continue
		}
		id, timeout, flags := le.Uint32(s[16:20]), le.Uint64(s[24:32]), le.Uint16(s[40:42])
		d := time.Duration(timeout)
		if flags&wasiAbstime != 0 {
			switch id {
			case wasiClockMonotonic:
				d = time.Duration(int64(timeout) - monotonicNow())
			case wasiClockRealtime:
				d = time.Until(time.Unix(0, int64(timeout)))
			default:
				le.PutUint16(e[8:10], wasiErrnoInval)
				continue
			}
		}
		if d < 0 {
			d = 0
		}
		if sleep < 0 || d < sleep {
			sleep = d
		}
	}
	if !mem.WriteUint32Le(resultN, n) {
		ret(wasiErrnoFault)
		return
	}
	if !fdReady && sleep > 0 {
		if inst := instanceFrom(ctx); inst != nil {
			inst.nanosleep(int64(sleep))
		} else {
			time.Sleep(sleep)
		}
	}
	ret(wasiErrnoSuccess)
}

// guestCPU measures an interpreter's CPU time: the time its requests ran, less the time they
// waited in the host (sleeps, event-loop waits). Used on the guest goroutine only. The guest's
// time.process_time reads it (OpCPUTime): wasi-libc's clock(), which CPython uses, is the
// monotonic clock since libc started, and libc started in the process that took the memory
// image (process_time came out negative).
type guestCPU struct {
	done   time.Duration // CPU time of finished requests
	start  time.Time     // of the request in progress; zero between requests
	waited time.Duration // waits of the request in progress
}

func (c *guestCPU) begin() { c.start, c.waited = time.Now(), 0 }

func (c *guestCPU) end() {
	if !c.start.IsZero() {
		c.done += time.Since(c.start) - c.waited
		c.start = time.Time{}
	}
}

// wait is called around host waits: wait() at the start, and the returned func at the end.
func (c *guestCPU) wait() func() {
	t := time.Now()
	return func() { c.waited += time.Since(t) }
}

func (c *guestCPU) now() time.Duration {
	if c.start.IsZero() {
		return c.done
	}
	return c.done + time.Since(c.start) - c.waited
}
