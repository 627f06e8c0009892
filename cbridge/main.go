// Command cbridge is the extension module eryx._eryx: built with -buildmode=c-shared, it is the
// bridge between the eryx Python package and the goeryx engine (docs/BRIDGE.md).
//
// module.c parses each call's arguments, releases the GIL and calls one of the go* functions
// exported here. Those run without the GIL: they look up handles, call the engine and return a
// "done" token (a cgo.Handle of a finish function). module.c takes the GIL back and calls
// goFinish, which runs the finish function to build the return value or raise the exception.
// Python objects are created only in finish functions and in the C helpers of bridge.h.
package main

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/goeryx/goeryx/goeryx"
)

func main() {}

// A finish function completes a call with the GIL held: it returns a new reference, or nil with
// a Python exception set. module is the extension module (for its exception type).
type finish func(module *C.PyObject) *C.PyObject

// done wraps f into the token module.c passes back to goFinish.
func done(f finish) C.uintptr_t { return C.uintptr_t(cgo.NewHandle(f)) }

//export goFinish
func goFinish(module *C.PyObject, token C.uintptr_t) *C.PyObject {
	h := cgo.Handle(token)
	f := h.Value().(finish)
	h.Delete()
	return f(module)
}

// shuttingDown is set by an atexit hook: the interpreter is about to finalise, and threads
// that are not Python's own must no longer try to take the GIL.
var shuttingDown atomic.Bool

//export goShutdown
func goShutdown() { shuttingDown.Store(true) }

// ---- Runtime ----

// theRuntime is the handle of the process's runtime (0 until opened).
var theRuntime struct {
	sync.Mutex
	handle int64
}

//export goOpenRuntime
func goOpenRuntime(dir *C.char, dirLen C.Py_ssize_t, cache *C.char, cacheLen C.Py_ssize_t) C.uintptr_t {
	theRuntime.Lock()
	defer theRuntime.Unlock()
	if theRuntime.handle == 0 {
		ready, err := goeryx.ReadyFromEnv()
		if err != nil {
			return done(raise(err))
		}
		rt, err := goeryx.OpenRuntime(goString(dir, dirLen), goeryx.RuntimeOptions{
			CacheDir:          goString(cache, cacheLen),
			ReadyInterpreters: &ready,
			// A slow first compile ("once per machine") is worth telling the user about.
			Logf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
		})
		if err != nil {
			return done(raise(err))
		}
		theRuntime.handle = register(rt, nil)
	}
	return done(returnInt(theRuntime.handle))
}

//export goGuestPythonVersion
func goGuestPythonVersion(h C.longlong) C.uintptr_t {
	return with(h, func(rt *goeryx.Runtime) finish { return returnStr(rt.GuestPythonVersion()) })
}

//export goReadyStats
func goReadyStats(h C.longlong) C.uintptr_t {
	return with(h, func(rt *goeryx.Runtime) finish {
		data, err := json.Marshal(rt.ReadyStats())
		if err != nil {
			return raise(err)
		}
		return returnStr(string(data))
	})
}

// ---- VFS ----

//export goVFSNew
func goVFSNew(maxBytes C.longlong) C.uintptr_t {
	return done(returnInt(register(goeryx.NewVFS(int64(maxBytes)), nil)))
}

//export goVFSRead
func goVFSRead(h C.longlong, path *C.char, n C.Py_ssize_t) C.uintptr_t {
	return with(h, func(v *goeryx.VFS) finish { return returnBytes(v.ReadFile(goString(path, n))) })
}

//export goVFSWrite
func goVFSWrite(h C.longlong, path *C.char, n C.Py_ssize_t, data *C.char, size C.Py_ssize_t) C.uintptr_t {
	return with(h, func(v *goeryx.VFS) finish {
		return returnNone(v.WriteFile(goString(path, n), goBytes(data, size)))
	})
}

//export goVFSList
func goVFSList(h C.longlong, path *C.char, n C.Py_ssize_t) C.uintptr_t {
	return with(h, func(v *goeryx.VFS) finish { return returnStrings(v.List(goString(path, n))) })
}

//export goVFSRemove
func goVFSRemove(h C.longlong, path *C.char, n C.Py_ssize_t) C.uintptr_t {
	return with(h, func(v *goeryx.VFS) finish { return returnNone(v.Remove(goString(path, n))) })
}

//export goVFSStats
func goVFSStats(h C.longlong) C.uintptr_t {
	return with(h, func(v *goeryx.VFS) finish {
		files, used, maxBytes := v.Stats()
		return func(*C.PyObject) *C.PyObject {
			return C.eryx_int_triple(C.longlong(files), C.longlong(used), C.longlong(maxBytes))
		}
	})
}

// ---- Sandbox and Session ----

// newInstance creates a sandbox or session. It owns the references to the two callables (NULL
// for None): the hooks keep them, and release them if creation fails.
func newInstance(rtHandle C.longlong, config *C.char, size C.Py_ssize_t, vfsHandle C.longlong,
	onOutput, onCallback *C.PyObject, create func(owner, *goeryx.Config, *goeryx.VFS, goeryx.Hooks) (any, error),
) C.uintptr_t {
	hooks := &pyHooks{output: onOutput, callback: onCallback}
	handle, err := func() (int64, error) {
		rt, err := lookupOwner(rtHandle, goBytes(config, size))
		if err != nil {
			return 0, err
		}
		var store *goeryx.VFS
		if vfsHandle != 0 {
			if store, err = lookup[*goeryx.VFS](vfsHandle); err != nil {
				return 0, err
			}
		}
		cfg, err := goeryx.ParseConfig(goBytes(config, size))
		if err != nil {
			return 0, err
		}
		hooks.hasCallbacks = len(cfg.Callbacks) > 0 && onCallback != nil
		obj, err := create(rt, cfg, store, hooks)
		if err != nil {
			return 0, err
		}
		return register(obj, hooks), nil
	}()
	if err != nil {
		return done(func(module *C.PyObject) *C.PyObject {
			hooks.close()
			return raise(err)(module)
		})
	}
	return done(returnInt(handle))
}

//export goSandboxNew
func goSandboxNew(rt C.longlong, config *C.char, size C.Py_ssize_t, vfs C.longlong, onOutput, onCallback *C.PyObject) C.uintptr_t {
	return newInstance(rt, config, size, vfs, onOutput, onCallback,
		func(o owner, cfg *goeryx.Config, store *goeryx.VFS, hooks goeryx.Hooks) (any, error) {
			if o.factory != nil {
				return o.factory.NewSandbox(cfg, store, hooks, o.sitePackages)
			}
			return o.rt.NewSandbox(cfg, store, hooks)
		})
}

//export goSandboxExecute
func goSandboxExecute(h C.longlong, code *C.char, n C.Py_ssize_t, token C.longlong, stdin *C.char, stdinLen C.Py_ssize_t, options *C.char, optionsLen C.Py_ssize_t) C.uintptr_t {
	ctx, err := runContext(token)
	if err != nil {
		return done(raise(err))
	}
	opts, err := runOptions(stdin, stdinLen, options, optionsLen)
	if err != nil {
		return done(raise(err))
	}
	src := goString(code, n)
	return with(h, func(s *goeryx.Sandbox) finish {
		return returnResult(runOffThread(ctx, hooksOf(h), func(ctx context.Context) (*goeryx.Result, error) {
			return s.ExecuteWith(ctx, src, opts)
		}))
	})
}

// runOptions are the options of an execute call: stdin (stdinLen < 0: none) and the JSON
// object of the others (optionsLen < 0: none): {"interactive", "filename", "argv"}.
func runOptions(stdin *C.char, stdinLen C.Py_ssize_t, options *C.char, optionsLen C.Py_ssize_t) (*goeryx.RunOptions, error) {
	if stdinLen < 0 && optionsLen < 0 {
		return nil, nil
	}
	opts := &goeryx.RunOptions{}
	if optionsLen >= 0 {
		var o struct {
			Interactive bool     `json:"interactive"`
			Filename    string   `json:"filename"`
			Argv        []string `json:"argv"`
		}
		if err := json.Unmarshal(goBytes(options, optionsLen), &o); err != nil {
			return nil, &goeryx.Error{Kind: goeryx.KindValue, Message: "invalid run options: " + err.Error()}
		}
		opts.Interactive, opts.Filename, opts.Argv = o.Interactive, o.Filename, o.Argv
	}
	if stdinLen >= 0 {
		opts.Stdin = goBytes(stdin, stdinLen)
	}
	return opts, nil
}

// cancelToken lets Python interrupt one execute call (execute_async cancellation).
type cancelToken struct {
	ctx    context.Context
	cancel context.CancelFunc
}

//export goTokenNew
func goTokenNew() C.uintptr_t {
	ctx, cancel := context.WithCancel(context.Background())
	return done(returnInt(register(&cancelToken{ctx, cancel}, nil)))
}

//export goTokenCancel
func goTokenCancel(h C.longlong) C.uintptr_t {
	return with(h, func(t *cancelToken) finish { t.cancel(); return returnNone(nil) })
}

// runTokenKey marks the context of an execute call made with a token (execute_async): its
// callbacks tell Python the token, which finds the caller's event loop by it.
type runTokenKey struct{}

// runContext is the context of an execute call: the token's, or the background (token 0).
func runContext(token C.longlong) (context.Context, error) {
	if token == 0 {
		return context.Background(), nil
	}
	t, err := lookup[*cancelToken](token)
	if err != nil {
		return nil, err
	}
	return context.WithValue(t.ctx, runTokenKey{}, int64(token)), nil
}

//export goSandboxClose
func goSandboxClose(h C.longlong) C.uintptr_t {
	return with(h, func(s *goeryx.Sandbox) finish { s.Close(); return returnNone(nil) })
}

//export goSessionNew
func goSessionNew(rt C.longlong, config *C.char, size C.Py_ssize_t, vfs C.longlong, onOutput, onCallback *C.PyObject) C.uintptr_t {
	return newInstance(rt, config, size, vfs, onOutput, onCallback,
		func(o owner, cfg *goeryx.Config, store *goeryx.VFS, hooks goeryx.Hooks) (any, error) {
			if o.factory != nil {
				return o.factory.NewSession(context.Background(), cfg, store, hooks, o.sitePackages)
			}
			return o.rt.NewSession(context.Background(), cfg, store, hooks)
		})
}

//export goSessionExecute
func goSessionExecute(h C.longlong, code *C.char, n C.Py_ssize_t, token C.longlong, stdin *C.char, stdinLen C.Py_ssize_t, options *C.char, optionsLen C.Py_ssize_t) C.uintptr_t {
	ctx, err := runContext(token)
	if err != nil {
		return done(raise(err))
	}
	opts, err := runOptions(stdin, stdinLen, options, optionsLen)
	if err != nil {
		return done(raise(err))
	}
	src := goString(code, n)
	return with(h, func(s *goeryx.Session) finish {
		return returnResult(runOffThread(ctx, hooksOf(h), func(ctx context.Context) (*goeryx.Result, error) {
			return s.ExecuteWith(ctx, src, opts)
		}))
	})
}

//export goSessionReset
func goSessionReset(h C.longlong) C.uintptr_t {
	return with(h, func(s *goeryx.Session) finish { return returnNone(s.Reset(context.Background())) })
}

//export goSessionClearState
func goSessionClearState(h C.longlong) C.uintptr_t {
	return with(h, func(s *goeryx.Session) finish { return returnNone(s.ClearState(context.Background())) })
}

//export goSessionSnapshot
func goSessionSnapshot(h C.longlong) C.uintptr_t {
	return with(h, func(s *goeryx.Session) finish {
		data, skipped, err := s.Snapshot(context.Background())
		if err != nil {
			return raise(err)
		}
		return func(module *C.PyObject) *C.PyObject {
			first := returnBytes(data, nil)(module)
			if first == nil {
				return nil
			}
			second := returnStrings(skipped, nil)(module)
			if second == nil {
				C.eryx_decref(first)
				return nil
			}
			return C.eryx_pair(first, second)
		}
	})
}

//export goSessionRestore
func goSessionRestore(h C.longlong, data *C.char, size C.Py_ssize_t) C.uintptr_t {
	return with(h, func(s *goeryx.Session) finish {
		return returnNone(s.Restore(context.Background(), goBytes(data, size)))
	})
}

//export goSessionSetLimits
func goSessionSetLimits(h C.longlong, hasTimeout C.int, timeoutMS C.longlong, hasFuel C.int, maxFuel C.longlong) C.uintptr_t {
	return with(h, func(s *goeryx.Session) finish {
		s.SetExecutionTimeoutMS(optional(hasTimeout, timeoutMS))
		s.SetMaxFuel(optional(hasFuel, maxFuel))
		return returnNone(nil)
	})
}

//export goSessionExecutionCount
func goSessionExecutionCount(h C.longlong) C.uintptr_t {
	return with(h, func(s *goeryx.Session) finish { return returnInt(s.ExecutionCount()) })
}

//export goSessionClose
func goSessionClose(h C.longlong) C.uintptr_t {
	return with(h, func(s *goeryx.Session) finish { s.Close(); return returnNone(nil) })
}

//export goHandleFree
func goHandleFree(h C.longlong) C.uintptr_t {
	e, err := unregister(int64(h))
	if err != nil {
		return done(raise(err))
	}
	switch obj := e.obj.(type) {
	case *goeryx.Sandbox:
		obj.Close()
	case *goeryx.Session:
		obj.Close()
	case *cancelToken:
		obj.cancel()
	case *goeryx.Factory:
		obj.Close()
	}
	return done(func(module *C.PyObject) *C.PyObject {
		if e.hooks != nil {
			e.hooks.close()
		}
		return C.eryx_none()
	})
}

// ---- Helpers ----

// with looks up handle h, which must refer to a T, and runs f on it.
func with[T any](h C.longlong, f func(T) finish) C.uintptr_t {
	obj, err := lookup[T](h)
	if err != nil {
		return done(raise(err))
	}
	return done(f(obj))
}

// goString copies a C string of n bytes.
func goString(p *C.char, n C.Py_ssize_t) string {
	if n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
}

// goBytes copies a C buffer of n bytes.
func goBytes(p *C.char, n C.Py_ssize_t) []byte {
	if n == 0 {
		return []byte{}
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))...)
}

// cstr and clen pass a Go string to C for the duration of one call.
func cstr(s string) *C.char {
	if s == "" {
		return nil
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s)))
}

func clen(s string) C.Py_ssize_t { return C.Py_ssize_t(len(s)) }

// optlen is clen, with "" standing for None.
func optlen(s string) C.Py_ssize_t {
	if s == "" {
		return -1
	}
	return clen(s)
}

// optStr passes an optional string (nil for None).
func optStr(s *string) (*C.char, C.Py_ssize_t) {
	if s == nil {
		return nil, -1
	}
	return cstr(*s), clen(*s)
}

func optional(has C.int, v C.longlong) *int64 {
	if has == 0 {
		return nil
	}
	x := int64(v)
	return &x
}

func returnNone(err error) finish {
	if err != nil {
		return raise(err)
	}
	return func(*C.PyObject) *C.PyObject { return C.eryx_none() }
}

func returnInt(v int64) finish {
	return func(*C.PyObject) *C.PyObject { return C.eryx_int(C.longlong(v)) }
}

func returnStr(s string) finish {
	return func(*C.PyObject) *C.PyObject { return C.eryx_str(cstr(s), clen(s)) }
}

func returnBytes(b []byte, err error) finish {
	if err != nil {
		return raise(err)
	}
	return func(*C.PyObject) *C.PyObject {
		var p *C.char
		if len(b) > 0 {
			p = (*C.char)(unsafe.Pointer(unsafe.SliceData(b)))
		}
		return C.eryx_bytes(p, C.Py_ssize_t(len(b)))
	}
}

func returnStrings(ss []string, err error) finish {
	if err != nil {
		return raise(err)
	}
	return func(*C.PyObject) *C.PyObject {
		list := C.eryx_list(C.Py_ssize_t(len(ss)))
		if list == nil {
			return nil
		}
		for i, s := range ss {
			if C.eryx_list_set_str(list, C.Py_ssize_t(i), cstr(s), clen(s)) < 0 {
				C.eryx_decref(list)
				return nil
			}
		}
		return list
	}
}

func returnResult(r *goeryx.Result, err error) finish {
	if err != nil {
		return raise(err)
	}
	return func(*C.PyObject) *C.PyObject {
		var fuel C.ulonglong
		if r.FuelConsumed != nil {
			fuel = C.ulonglong(*r.FuelConsumed)
		}
		json, jsonLen := optStr(r.ResultJSON)
		jsonErr, jsonErrLen := optStr(r.ResultError)
		return C.eryx_result(
			cstr(r.Stdout), clen(r.Stdout),
			cstr(r.Stderr), clen(r.Stderr),
			C.double(float64(r.Duration.Nanoseconds())/1e6),
			C.longlong(r.CallbackInvocations),
			C.ulonglong(r.PeakMemoryBytes),
			cbool(r.FuelConsumed != nil), fuel,
			json, jsonLen,
			jsonErr, jsonErrLen)
	}
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// raise makes a finish function raising err: ValueError for a bad handle, _eryx.Error for
// anything else (an error that is not a *goeryx.Error has kind "eryx").
func raise(err error) finish {
	return func(module *C.PyObject) *C.PyObject {
		if errors.Is(err, errInvalidHandle) {
			C.eryx_raise_invalid_handle()
			return nil
		}
		var e *goeryx.Error
		if !errors.As(err, &e) {
			e = &goeryx.Error{Kind: goeryx.KindEryx, Message: err.Error()}
		}
		kind := e.Kind.String()
		C.eryx_raise_error(module,
			cstr(kind), clen(kind),
			cstr(e.Message), clen(e.Message),
			cstr(e.ExcType), optlen(e.ExcType),
			cstr(e.Stdout), clen(e.Stdout),
			cstr(e.Stderr), clen(e.Stderr),
			cstr(e.Limit), optlen(e.Limit),
			cbool(e.StateLost), C.longlong(e.Errno))
		return nil
	}
}
