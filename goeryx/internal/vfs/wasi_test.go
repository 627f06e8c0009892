package vfs

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

type fixedErrno uint64

func (e fixedErrno) Call(_ context.Context, _ api.Module, stack []uint64) { stack[0] = uint64(e) }

func TestNoSpaceWrapper(t *testing.T) {
	for in, want := range map[uint64]uint64{0: 0, wasiERANGE: wasiENOSPC, 29: 29, 8: 8} {
		stack := []uint64{0, 0, 0, 0}
		noSpace{fixedErrno(in)}.Call(context.Background(), nil, stack)
		require.Equal(t, want, stack[0])
	}
}

func TestInstantiateWASI(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mod, err := InstantiateWASI(ctx, r)
	require.NoError(t, err)
	m := r.Module(wasi_snapshot_preview1.ModuleName)
	require.NotNil(t, m)
	defs := m.ExportedFunctionDefinitions()
	require.Contains(t, defs, "proc_exit")
	for _, name := range spaceFuncs {
		def := defs[name]
		require.NotNil(t, def, name)
		_, wrapped := def.GoFunction().(noSpace)
		require.True(t, wrapped, name)
	}
	_, wrapped := defs["fd_read"].GoFunction().(noSpace)
	require.False(t, wrapped)
	require.NoError(t, mod.Close(ctx))
	require.Nil(t, r.Module("goeryx_wasi_original"), "the copy is never instantiated")
}
