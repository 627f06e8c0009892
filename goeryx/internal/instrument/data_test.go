package instrument

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
)

// A module with one page of memory, two active segments and a passive one.
func dataModule() []byte {
	mem := sec(secMemory, vec([]byte{0x00, 0x01}))
	exp := sec(secExport, vec(cat(str("memory"), []byte{0x02, 0x00})))
	seg0 := cat([]byte{0x00, opI32Const}, s32(16), []byte{opEnd}, vec(bytesOf("hello")...))
	seg1 := cat([]byte{0x02, 0x00, opI32Const}, s32(1000), []byte{opEnd}, vec(bytesOf("world")...))
	seg2 := cat([]byte{0x01}, vec(bytesOf("passive")...))
	data := sec(secData, vec(seg0, seg1, seg2))
	return cat(header, mem, exp, data)
}

func bytesOf(s string) [][]byte {
	out := make([][]byte, len(s))
	for i := range s {
		out[i] = []byte{s[i]}
	}
	return out
}

func TestStripData(t *testing.T) {
	stripped, segs, err := StripData(dataModule())
	require.NoError(t, err)
	require.Equal(t, []DataSegment{{16, []byte("hello")}, {1000, []byte("world")}}, segs)

	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, stripped)
	require.NoError(t, err)
	got, ok := mod.Memory().Read(0, 1100)
	require.True(t, ok)
	require.Equal(t, make([]byte, 1100), got, "stripped segments must write nothing")

	// The stripped segments are empty passive ones (wazero evaluates no offset for them at
	// instantiation); the passive segment is kept, so every index is unchanged.
	rd := reader{b: sectionPayload(t, stripped, secData)}
	n, err := rd.u32()
	require.NoError(t, err)
	require.Equal(t, uint32(3), n)
	for i := 0; i < 2; i++ {
		flags, err := rd.u32()
		require.NoError(t, err)
		require.Equal(t, uint32(1), flags, "segment %d", i)
		size, err := rd.u32()
		require.NoError(t, err)
		require.Zero(t, size, "segment %d", i)
	}

	// The original still writes them: the test module is what we think it is.
	orig, err := r.InstantiateWithConfig(ctx, dataModule(), wazero.NewModuleConfig().WithName("orig"))
	require.NoError(t, err)
	got, _ = orig.Memory().Read(16, 5)
	require.Equal(t, "hello", string(got))
}

func TestStripDataRejectsBadModules(t *testing.T) {
	_, _, err := StripData([]byte("nope"))
	require.Error(t, err)
	m := dataModule()
	_, _, err = StripData(m[:len(m)-3])
	require.Error(t, err)
}

// sectionPayload is the payload of the module's section id.
func sectionPayload(t *testing.T, module []byte, id byte) []byte {
	t.Helper()
	secs, err := parseSections(module)
	require.NoError(t, err)
	for _, s := range secs {
		if s.id == id {
			return s.payload
		}
	}
	t.Fatalf("no section %d", id)
	return nil
}
