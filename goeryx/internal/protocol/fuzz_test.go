package protocol

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecode: any bytes the guest can put in a frame decode to an error or to a header and a
// payload that lies within the frame; Decode never panics.
func FuzzDecode(f *testing.F) {
	for _, seed := range [][]byte{
		nil, {0}, {0, 0, 0, 0}, {2, 0, 0, 0, '{', '}'}, {2, 0, 0, 0, '{', '}', 'x', 'y'},
		{0xff, 0xff, 0xff, 0xff, '{', '}'}, {3, 0, 0, 0, '{', '}'}, {2, 0, 0, 0, '[', ']'},
		[]byte("\x0d\x00\x00\x00{\"name\":\"f\"}{\"a\":1}"),
		[]byte("\x10\x00\x00\x00{\"timeout_ns\":-1}"),
		[]byte("\x0a\x00\x00\x00{\"id\":1e99}"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var h map[string]any
		payload, err := Decode(frame, &h)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			return
		}
		n := binary.LittleEndian.Uint32(frame)
		require.Equal(t, frame[4+n:], payload)
	})
}

// FuzzFrameRoundTrip: what Encode builds, Decode gives back.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add("run", int64(0), []byte("print(1)"))
	f.Add("", int64(-1), []byte{})
	f.Add("caf\u00e9 \"q\" \\", int64(1)<<62, []byte{0, 0xff, '{'})
	f.Fuzz(func(t *testing.T, op string, n int64, payload []byte) {
		type header struct {
			Op string `json:"op"`
			N  int64  `json:"n"`
		}
		frame, err := Encode(header{op, n}, payload)
		require.NoError(t, err)
		var got header
		p, err := Decode(frame, &got)
		require.NoError(t, err)
		require.True(t, bytes.Equal(payload, p))
		require.Equal(t, n, got.N)
		// encoding/json replaces invalid UTF-8 by U+FFFD: only valid strings survive as is.
		want, err := Encode(header{got.Op, n}, payload)
		require.NoError(t, err)
		var again header
		_, err = Decode(want, &again)
		require.NoError(t, err)
		require.Equal(t, got.Op, again.Op)
	})
}
