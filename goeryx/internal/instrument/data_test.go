package instrument

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
)

// A module with one page of memory, two active segments and a passive one (index 2), a data
// count section, and an exported function "f" whose body is code (nil: no functions).
func dataModule(code ...byte) []byte {
	mem := sec(secMemory, vec([]byte{0x00, 0x01}))
	exports := [][]byte{cat(str("memory"), []byte{0x02, 0x00})}
	seg0 := cat([]byte{0x00, opI32Const}, s32(16), []byte{opEnd}, vec(bytesOf("hello")...))
	seg1 := cat([]byte{0x02, 0x00, opI32Const}, s32(1000), []byte{opEnd}, vec(bytesOf("world")...))
	seg2 := cat([]byte{0x01}, vec(bytesOf("passive")...))
	data := sec(secData, vec(seg0, seg1, seg2))
	count := sec(secDataCount, u32(3))
	if code == nil {
		return cat(header, mem, sec(secExport, vec(exports...)), count, data)
	}
	types := sec(secType, vec(functype(nil, nil)))
	funcs := sec(secFunction, vec(u32(0)))
	exports = append(exports, exportFunc("f", 0))
	body := sec(secCode, vec(fbody(nil, code...)))
	return cat(header, types, funcs, mem, sec(secExport, vec(exports...)), count, body, data)
}

// memoryInitPassive copies the passive segment (index 2) to offset 2000, then drops it.
var memoryInitPassive = cat(
	[]byte{oI32Const}, s32(2000), []byte{oI32Const}, s32(0), []byte{oI32Const}, s32(7),
	[]byte{opPrefixMisc}, u32(miscMemoryInit), u32(2), []byte{0x00},
	[]byte{opPrefixMisc}, u32(miscDataDrop), u32(2))

func bytesOf(s string) [][]byte {
	out := make([][]byte, len(s))
	for i := range s {
		out[i] = []byte{s[i]}
	}
	return out
}

// dataSegmentFlags lists the flags of the module's data segments and checks that the stripped
// ones hold no bytes.
func dataSegmentFlags(t *testing.T, module []byte) []uint32 {
	t.Helper()
	rd := reader{b: sectionPayload(t, module, secData)}
	n, err := rd.u32()
	require.NoError(t, err)
	var flags []uint32
	for i := uint32(0); i < n; i++ {
		f, err := rd.u32()
		require.NoError(t, err)
		require.NotEqual(t, uint32(0), f, "segment %d is still active", i)
		size, err := rd.u32()
		require.NoError(t, err)
		_, err = rd.bytes(int(size))
		require.NoError(t, err)
		if i < n-1 {
			require.Zero(t, size, "segment %d", i)
		}
		flags = append(flags, f)
	}
	count, err := (&reader{b: sectionPayload(t, module, secDataCount)}).u32()
	require.NoError(t, err)
	require.Equal(t, n, count, "the data count section matches")
	return flags
}

func TestStripData(t *testing.T) {
	for _, tc := range []struct {
		name string
		code []byte // of function f; nil: no function
		// flags of the data segments left: the stripped ones are removed unless a body names
		// a segment, then they are empty passive ones, so every index stays.
		flags []uint32
	}{
		{"no code", nil, []uint32{1}},
		{"code naming no segment", []byte{oI32Const, 1, oDrop}, []uint32{1}},
		{"memory.init and data.drop", memoryInitPassive, []uint32{1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			module := dataModule(tc.code...)
			stripped, segs, err := StripData(module)
			require.NoError(t, err)
			require.Equal(t, []DataSegment{{16, []byte("hello")}, {1000, []byte("world")}}, segs)
			require.Equal(t, tc.flags, dataSegmentFlags(t, stripped))

			ctx := context.Background()
			r := wazero.NewRuntime(ctx)
			defer r.Close(ctx)
			mod, err := r.Instantiate(ctx, stripped)
			require.NoError(t, err)
			got, ok := mod.Memory().Read(0, 1100)
			require.True(t, ok)
			require.Equal(t, make([]byte, 1100), got, "stripped segments must write nothing")
			if tc.code != nil {
				_, err = mod.ExportedFunction("f").Call(ctx)
				require.NoError(t, err)
			}
			if bytes.Equal(tc.code, memoryInitPassive) {
				got, _ = mod.Memory().Read(2000, 7)
				require.Equal(t, "passive", string(got), "memory.init still names the passive segment")
			}

			// The original still writes them: the test module is what we think it is.
			orig, err := r.InstantiateWithConfig(ctx, module, wazero.NewModuleConfig().WithName("orig"))
			require.NoError(t, err)
			got, _ = orig.Memory().Read(16, 5)
			require.Equal(t, "hello", string(got))
		})
	}
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
