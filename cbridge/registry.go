package main

import "C"

import (
	"errors"
	"sync"

	"github.com/goeryx/goeryx/goeryx"
)

// errInvalidHandle becomes ValueError("invalid or closed eryx handle").
var errInvalidHandle = errors.New("invalid or closed eryx handle")

// An entry is one live handle. Its kind is the dynamic type of obj: *goeryx.Runtime,
// *goeryx.VFS, *goeryx.Sandbox or *goeryx.Session.
type entry struct {
	obj   any
	hooks *pyHooks // sandboxes and sessions
}

// handles maps handles to Go objects. Handles start at 1 and are never reused.
var handles = struct {
	sync.Mutex
	last    int64
	entries map[int64]*entry
}{entries: map[int64]*entry{}}

func register(obj any, hooks *pyHooks) int64 {
	handles.Lock()
	defer handles.Unlock()
	handles.last++
	handles.entries[handles.last] = &entry{obj: obj, hooks: hooks}
	return handles.last
}

// lookup returns the object behind h, which must be a T.
func lookup[T any](h C.longlong) (T, error) {
	handles.Lock()
	e := handles.entries[int64(h)]
	handles.Unlock()
	if e != nil {
		if obj, ok := e.obj.(T); ok {
			return obj, nil
		}
	}
	var zero T
	return zero, errInvalidHandle
}

// hooksOf returns the hooks of sandbox or session h (nil if none).
func hooksOf(h C.longlong) *pyHooks {
	handles.Lock()
	defer handles.Unlock()
	if e := handles.entries[int64(h)]; e != nil {
		return e.hooks
	}
	return nil
}

// unregister removes h. Only VFS, sandbox, session, factory and cancel-token handles can be freed: the
// runtime is opened once per process and lives as long as it.
func unregister(h int64) (*entry, error) {
	handles.Lock()
	defer handles.Unlock()
	e := handles.entries[h]
	if e == nil {
		return nil, errInvalidHandle
	}
	switch e.obj.(type) {
	case *goeryx.VFS, *goeryx.Sandbox, *goeryx.Session, *goeryx.Factory, *cancelToken:
	default:
		return nil, errInvalidHandle
	}
	delete(handles.entries, h)
	return e, nil
}
