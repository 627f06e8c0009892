package goeryx

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

// FuzzDecodeSnapshot: restore_state input is the caller's bytes. Decoding never panics and
// fails with an ExecutionError or InitializationError; an encoded snapshot decodes to its
// payload, and every truncation of it fails.
func FuzzDecodeSnapshot(f *testing.F) {
	f.Add([]byte(nil), []byte{})
	f.Add([]byte("GOERYXSN"), []byte("payload"))
	f.Add(encodeSnapshot([]byte("x"), "3.13"), []byte{0})
	f.Add([]byte("GOERYXSN\x01\x00\xff\xff"), []byte{})
	f.Fuzz(func(t *testing.T, data, payload []byte) {
		if _, err := decodeSnapshot(data, "3.13"); err != nil {
			require.Contains(t, []ErrorKind{KindExecution, KindInitialization, KindResourceLimit}, err.Kind)
		}
		enc := encodeSnapshot(payload, "3.13")
		got, err := decodeSnapshot(enc, "3.13")
		require.Nil(t, err)
		require.Equal(t, string(payload), string(got))
		for _, n := range []int{0, 1, len(snapshotMagic), len(snapshotMagic) + 3, len(enc) - len(payload) - 1, len(enc) - 1} {
			if n >= 0 && n < len(enc) {
				_, err := decodeSnapshot(enc[:n], "3.13")
				require.NotNil(t, err, "truncated to %d", n)
				require.Equal(t, KindExecution, err.Kind)
			}
		}
		_, err = decodeSnapshot(enc, "3.12")
		require.NotNil(t, err)
		require.Equal(t, KindInitialization, err.Kind)
	})
}

// FuzzParseHostRequest: a guest's host_call frame decodes to a request or a refusal code,
// never a panic; what the driver sends decodes to what it meant.
func FuzzParseHostRequest(f *testing.F) {
	for op := int32(0); op <= 5; op++ {
		f.Add(op, []byte("\x0d\x00\x00\x00{\"name\":\"f\"}{\"a\":1}"))
		f.Add(op, []byte("\x10\x00\x00\x00{\"timeout_ns\":-1}"))
		f.Add(op, []byte("\x08\x00\x00\x00{\"id\":7}"))
		f.Add(op, []byte{0xff, 0xff, 0xff, 0x7f})
	}
	f.Fuzz(func(t *testing.T, op int32, frame []byte) {
		req, code := parseHostRequest(op, frame)
		if code != 0 {
			require.Contains(t, []int32{abi.HostErrBadRequest, abi.HostErrUnknownOp}, code)
			return
		}
		if op == protocol.OpCallbackStart {
			require.LessOrEqual(t, len(req.args), len(frame))
		}
	})
}

func TestParseHostRequest(t *testing.T) {
	frame, err := protocol.Encode(map[string]any{"name": "a.b"}, []byte(`{"x":1}`))
	require.NoError(t, err)
	req, code := parseHostRequest(protocol.OpCallbackStart, frame)
	require.Zero(t, code)
	require.Equal(t, "a.b", req.name)
	require.Equal(t, `{"x":1}`, string(req.args))
	frame[len(frame)-1] = '!' // the request keeps its own copy of the arguments
	require.Equal(t, `{"x":1}`, string(req.args))

	frame, _ = protocol.Encode(map[string]any{"timeout_ns": 5}, nil)
	req, code = parseHostRequest(protocol.OpWait, frame)
	require.Zero(t, code)
	require.Equal(t, 5*time.Nanosecond, req.timeout)
	frame, _ = protocol.Encode(map[string]any{"timeout_ns": -7}, nil)
	req, _ = parseHostRequest(protocol.OpWait, frame)
	require.Equal(t, time.Duration(-1), req.timeout)

	_, code = parseHostRequest(99, frame)
	require.Equal(t, int32(abi.HostErrUnknownOp), code)
	_, code = parseHostRequest(protocol.OpCallbackCancel, []byte{1, 0, 0, 0, '{'})
	require.Equal(t, int32(abi.HostErrBadRequest), code)
}
