package protocol

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFrameRoundTrip(t *testing.T) {
	frame, err := Encode(map[string]any{"op": ReqRun}, []byte("print(1)"))
	require.NoError(t, err)
	var h struct{ Op string }
	payload, err := Decode(frame, &h)
	require.NoError(t, err)
	require.Equal(t, ReqRun, h.Op)
	require.Equal(t, "print(1)", string(payload))
}

func TestDecodeRejectsBadFrames(t *testing.T) {
	var h map[string]any
	for _, f := range [][]byte{nil, {1, 0, 0}, {9, 0, 0, 0, '{', '}'}, {2, 0, 0, 0, '{', 'x'}} {
		_, err := Decode(f, &h)
		require.ErrorIs(t, err, ErrMalformed, "%q", f)
	}
}

func TestPreludeIsPython(t *testing.T) {
	p := Prelude()
	require.Contains(t, p, "OP_WAIT = 2\n")
	require.Contains(t, p, `REQ_RUN = "run"`)
}
