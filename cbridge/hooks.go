package main

/*
#include <stdlib.h>
#include "bridge.h"
*/
import "C"

import (
	"context"
	"sync"
	"unsafe"

	"github.com/goeryx/goeryx/goeryx"
)

// pyHooks implements goeryx.Hooks with the on_output and on_callback callables of a sandbox or
// session. It owns a reference to each (nil for None) until close has been called and no call
// is in flight; the last one out releases them. The engine calls it without the GIL; the C
// helpers take the GIL for the Python call only, and mu is never held while waiting for it.
type pyHooks struct {
	output, callback *C.PyObject

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
