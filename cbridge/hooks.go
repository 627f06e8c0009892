package main

/*
#include <stdlib.h>
#include "bridge.h"
*/
import "C"

import (
	"context"
	"sync"
	"time"
	"unsafe"

	"github.com/goeryx/goeryx/goeryx"
)

// pyHooks implements goeryx.Hooks with the on_output and on_callback callables of a sandbox or
// session. It owns a reference to each (nil for None) until close has been called and no call
// is in flight; the last one out releases them. The engine calls it without the GIL; the C
// helpers take the GIL for the Python call only, and mu is never held while waiting for it.
type pyHooks struct {
	output, callback *C.PyObject
	// hasCallbacks: the configuration has callbacks (and on_callback is set): runs go off the
	// calling thread (runOffThread).
	hasCallbacks bool

	mu       sync.Mutex
	inFlight int  // Python calls in progress
	closed   bool // the handle was freed, or creation failed
}

// enter reports whether Python may be called, and counts the call in.
func (h *pyHooks) enter() bool {
	if shuttingDown.Load() {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.inFlight++
	return true
}

// leave counts a call out, releasing the callables if it was the last after close.
func (h *pyHooks) leave() {
	h.mu.Lock()
	h.inFlight--
	last := h.closed && h.inFlight == 0
	h.mu.Unlock()
	// Past the atexit hook it is too late to take the GIL from here: leak instead.
	if last && !shuttingDown.Load() {
		C.eryx_release_hooks(h.output, h.callback)
	}
}

// close stops further calls into Python. Called with the GIL held.
func (h *pyHooks) close() {
	h.mu.Lock()
	first := !h.closed
	h.closed = true
	idle := h.inFlight == 0
	h.mu.Unlock()
	if first && idle {
		C.eryx_release_hooks(h.output, h.callback)
	}
}

// Output implements goeryx.Hooks.
func (h *pyHooks) Output(stream int, chunk string) {
	if h.output == nil || !h.enter() {
		return
	}
	defer h.leave()
	C.eryx_call_output(h.output, C.int(stream), cstr(chunk), clen(chunk))
}

// WatchSignals implements goeryx.SignalWatcher: when the run is called from Python's main
// thread (module.c, call_execute), the engine lets Python run its signal handlers during it.
func (h *pyHooks) WatchSignals() func() bool {
	if C.eryx_signals_watched() == 0 {
		return nil
	}
	return func() bool { return C.eryx_run_signal_handlers() != 0 }
}

type callbackReply struct {
	result string
	err    error
}

// Callback implements goeryx.Hooks. The Python call cannot be interrupted, so Callback
// returns when it does, even after ctx ended (the engine has delivered the timeout or dropped
// the call by then): the engine counts a callback in flight until Callback returns, and that
// count is what bounds the OS threads that calls left running can hold.
func (h *pyHooks) Callback(ctx context.Context, index int, argsJSON string, timeoutMS int64) (string, error) {
	if h.callback == nil {
		return goeryx.NoHooks{}.Callback(ctx, index, argsJSON, timeoutMS)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if !h.enter() {
		msg := "RuntimeError: the sandbox is closed"
		if shuttingDown.Load() {
			msg = "RuntimeError: the Python interpreter is shutting down"
		}
		return "", &goeryx.CallbackFailure{Kind: "raised", Message: msg}
	}
	defer h.leave()
	token, _ := ctx.Value(runTokenKey{}).(int64)
	r := h.call(index, argsJSON, timeoutMS, token)
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return r.result, r.err
}

func (h *pyHooks) call(index int, argsJSON string, timeoutMS, token int64) callbackReply {
	var reply C.eryx_reply
	if C.eryx_call_callback(h.callback, C.longlong(index), cstr(argsJSON), clen(argsJSON), C.longlong(timeoutMS), C.longlong(token), &reply) < 0 {
		return callbackReply{err: &goeryx.CallbackFailure{Kind: "raised", Message: "MemoryError: out of memory"}}
	}
	data := goString(reply.data, reply.len)
	C.free(unsafe.Pointer(reply.data))
	switch reply.kind {
	case C.ERYX_REPLY_OK:
		return callbackReply{result: data}
	case C.ERYX_REPLY_NOT_JSON:
		return callbackReply{err: &goeryx.CallbackFailure{Kind: "not_json", Message: data}}
	case C.ERYX_REPLY_TIMEOUT:
		return callbackReply{err: &goeryx.CallbackFailure{Kind: "timeout", Message: data}}
	default:
		return callbackReply{err: &goeryx.CallbackFailure{Kind: "raised", Message: data}}
	}
}

// signalPollInterval is how often a caller waiting for a run off its thread lets Python run
// its signal handlers (as the engine does for a run on the thread: goeryx.SignalWatcher).
const signalPollInterval = 10 * time.Millisecond

// runOffThread runs one execute of a sandbox or session that has callbacks on a goroutine of
// its own, and waits for it. The goroutine that called into Go is locked to the caller's thread
// (cgo): a guest running on it hands its P to another thread each time it waits for a callback
// and needs an OS thread switch to get it back, twice per callback (14-60 µs on a loaded
// 2-core machine). An unlocked guest goroutine parks instead, and the callback's goroutine runs
// on the same thread, calls into Python there and readies the guest again without a switch.
// The cost is two switches per execute, hence only when the configuration has callbacks.
//
// While it waits on Python's main thread (the engine's SignalWatcher sees no watched thread
// in the run's goroutine), the caller runs the signal handlers every signalPollInterval; one
// that raises (Ctrl-C) interrupts the run through its context, as the engine would.
func runOffThread(ctx context.Context, hooks *pyHooks, run func(context.Context) (*goeryx.Result, error)) (*goeryx.Result, error) {
	if hooks == nil || !hooks.hasCallbacks {
		return run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		res *goeryx.Result
		err error
	}
	out := make(chan outcome, 1)
	go func() {
		res, err := run(ctx)
		out <- outcome{res, err}
	}()
	var tick <-chan time.Time
	if C.eryx_signals_watched() != 0 {
		t := time.NewTicker(signalPollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case o := <-out:
			return o.res, o.err
		case <-tick:
			if C.eryx_run_signal_handlers() != 0 {
				cancel() // the run stops cooperatively; call_execute raises the handler's exception
				tick = nil
			}
		}
	}
}
