package vfs

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// WASI errno values (wasi_snapshot_preview1 "errno" enum; wasi-libc uses them as errno).
const (
	wasiERANGE = 68
	wasiENOSPC = 51
)

// spaceFuncs are the WASI functions that can reach a file system call running out of space.
// None of them can yield ERANGE otherwise (wazero v1.12 returns it only from path_readlink).
var spaceFuncs = []string{
	"fd_write", "fd_pwrite", "fd_filestat_set_size", "fd_allocate",
	"path_open", "path_create_directory",
}

// NewWASIBuilder returns a builder for the "wasi_snapshot_preview1" host module holding all of
// wazero's WASI functions, where the functions that can run out of space report ENOSPC for
// [ErrnoNoSpace]. Further functions may be overridden on it before it is instantiated.
func NewWASIBuilder(ctx context.Context, r wazero.Runtime) (wazero.HostModuleBuilder, error) {
	// Compile (never instantiate) a copy of wazero's WASI module to get at its Go functions.
	orig := r.NewHostModuleBuilder("goeryx_wasi_original")
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(orig)
	compiled, err := orig.Compile(ctx)
	if err != nil {
		return nil, err
	}
	defer compiled.Close(ctx)
	defs := compiled.ExportedFunctions()

	b := r.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	for _, name := range spaceFuncs {
		def, ok := defs[name]
		if !ok {
			return nil, fmt.Errorf("vfs: wazero's WASI has no %s", name)
		}
		fn, ok := def.GoFunction().(api.GoModuleFunction)
		if !ok {
			return nil, fmt.Errorf("vfs: wazero's WASI %s is a %T, not an api.GoModuleFunction", name, def.GoFunction())
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(noSpace{fn}, def.ParamTypes(), def.ResultTypes()).
			WithParameterNames(def.ParamNames()...).
			WithResultNames(def.ResultNames()...).
			Export(name)
	}
	return b, nil
}

// InstantiateWASI instantiates NewWASIBuilder's module in r, in place of
// wasi_snapshot_preview1.Instantiate.
func InstantiateWASI(ctx context.Context, r wazero.Runtime) (api.Closer, error) {
	b, err := NewWASIBuilder(ctx, r)
	if err != nil {
		return nil, err
	}
	return b.Instantiate(ctx)
}

type noSpace struct{ fn api.GoModuleFunction }

func (w noSpace) Call(ctx context.Context, mod api.Module, stack []uint64) {
	w.fn.Call(ctx, mod, stack)
	if stack[0] == wasiERANGE {
		stack[0] = wasiENOSPC
	}
}
