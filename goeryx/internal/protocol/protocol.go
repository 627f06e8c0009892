// Package protocol is the one definition of the messages between the engine and the guest
// driver (goeryx/internal/driver/driver.py). See docs/PROTOCOL.md.
//
// Both directions use the same frame: a little-endian uint32 header length, the header (a JSON
// object), then an opaque payload (code, snapshot bytes, callback arguments) that is never
// JSON-escaped. The driver learns the op numbers and limits from a prelude that Prelude
// generates, so the numbers exist only here.
package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Guest → host operations (the op argument of the _eryx.host_call import).
const (
	// OpCallbackStart asks the host to start a callback. Header {"name"}; payload: the
	// JSON-encoded keyword arguments. Response {"id"} or {"error": {...}}.
	OpCallbackStart = 1
	// OpWait blocks until at least one started callback completes or the timeout passes.
	// Header {"timeout_ns"} (-1: no timeout). Response {"done": [{"id", "result"|"error"}]}.
	OpWait = 2
	// OpCallbackCancel tells the host the guest stopped waiting for a callback. Header {"id"}.
	OpCallbackCancel = 3
	// 4 was OpFuelStart (the driver started the fuel meter itself, so user code could silence
	// it); a metered run is now metered by the host from its start. The number is not reused.

	// Guest networking (goeryx/internal/net, docs/PROTOCOL.md). Every response is either the
	// op's fields or {"error": {"type", "errno", "message"}}, the exception the guest raises.

	// OpNetConnect checks the host policy, resolves, connects and optionally starts TLS.
	// Header {"host", "port", "tls", "server_hostname", "timeout_ns", "async"}. Response
	// {"id", "peer", "version", "alpn"}; with async, {"id"} at once and the outcome later in
	// OpWait's "connected".
	OpNetConnect = 5
	// OpNetSend queues the payload for sending. Header {"id", "timeout_ns", "nonblock"}.
	// Response {"n"}: how many bytes were taken (0 with nonblock when the queue is full).
	OpNetSend = 6
	// OpNetRecv reads. Header {"id", "max", "timeout_ns", "nonblock"}. Response {"eof"} plus
	// the bytes as payload.
	OpNetRecv = 7
	// OpNetClose closes a connection. Header {"id"}. Response {}.
	OpNetClose = 8
	// OpNetTLS starts TLS on a connected socket. Header {"id", "server_hostname",
	// "timeout_ns"}. Response {"version", "alpn"}.
	OpNetTLS = 9
	// OpNetShutdown shuts one or both directions. Header {"id", "how"}. Response {}.
	OpNetShutdown = 10
	// OpNetPoll waits until one of the connections in "recv" is readable or one in "send"
	// writable, or "timeout_ns" passes (-1: none); it reads nothing (select, poll).
	// Response {"readable", "writable"}: the ids that are.
	OpNetPoll = 11

	// OpCPUTime returns the interpreter's CPU time: the time its requests ran, less the time
	// they waited in the host. Header {}. Response {"ns"}. (time.process_time: wasi-libc's
	// clock() is the monotonic clock since libc started, in the process that took the image.)
	OpCPUTime = 12
	// OpNetRead is OpNetRecv without JSON or copies, for the guest's recv and recv_into. The
	// request is a binary header (NetReadHeaderSize bytes, little-endian: id int64,
	// timeout_ns int64, max uint32, flags uint32). Plain: the response is the bytes read, or
	// empty when none were. With NetReadInto the request is the guest's destination buffer
	// itself, its first bytes holding the header: the host writes the bytes read over it and
	// answers their count (int64 LE; 0 when none). When none were (the end of the stream, a
	// timeout, an error, nonblock), NetReadStatus (header only) answers why as a frame:
	// {"eof": true}, {"error": {...}} or {} (nothing yet).
	OpNetRead = 15
)

// OpNetRead header size and flags.
const (
	NetReadHeaderSize = 24
	NetReadNonblock   = 1
	NetReadInto       = 2
	NetReadStatus     = 4
)

// Host → guest operations (the "op" field of a request passed to eryx_call).
const (
	ReqConfigure  = "configure"
	ReqRun        = "run"
	ReqClearState = "clear_state"
	ReqSnapshot   = "snapshot"
	ReqRestore    = "restore"
	ReqPrepare    = "prepare"
	// ReqCompilePackages and ReqPreparePackages build a factory (goeryx/factory.go): the
	// first compiles its staged packages, the second imports them before its image is taken.
	ReqCompilePackages = "compile_packages"
	ReqPreparePackages = "prepare_packages"
	// ReqOpenFds and ReqHoldFds carry a session's open descriptors over when its memory moves
	// to another instance (fuel metering starts): the old instance lists them, the new one
	// occupies their numbers with placeholders.
	ReqOpenFds = "open_fds"
	ReqHoldFds = "hold_fds"
)

// Limits the driver enforces itself (the host checks them again).
const (
	MaxResultJSONBytes   = 10 << 20
	MaxCallbackArgsBytes = 10 << 20
	MaxSnapshotBytes     = 10 << 20
)

// MaxFrameBytes bounds every frame the host reads from the guest (largest payload + header).
const MaxFrameBytes = MaxSnapshotBytes + 1<<20

// Encode builds a frame.
func Encode(header any, payload []byte) ([]byte, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4+len(h)+len(payload))
	binary.LittleEndian.PutUint32(out, uint32(len(h)))
	copy(out[4:], h)
	copy(out[4+len(h):], payload)
	return out, nil
}

// ErrMalformed is returned for a frame that cannot be decoded.
var ErrMalformed = errors.New("malformed frame")

// Decode splits a frame and unmarshals its header into header. The payload aliases frame.
func Decode(frame []byte, header any) (payload []byte, err error) {
	if len(frame) < 4 {
		return nil, ErrMalformed
	}
	n := binary.LittleEndian.Uint32(frame)
	if uint64(n) > uint64(len(frame)-4) {
		return nil, ErrMalformed
	}
	if err := json.Unmarshal(frame[4:4+n], header); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return frame[4+n:], nil
}

// Prelude is Python source defining the constants above for the driver, prepended to it.
func Prelude() string {
	consts := map[string]any{
		"OP_CALLBACK_START":       OpCallbackStart,
		"OP_WAIT":                 OpWait,
		"OP_CPU_TIME":             OpCPUTime,
		"OP_CALLBACK_CANCEL":      OpCallbackCancel,
		"OP_NET_CONNECT":          OpNetConnect,
		"OP_NET_SEND":             OpNetSend,
		"OP_NET_RECV":             OpNetRecv,
		"OP_NET_CLOSE":            OpNetClose,
		"OP_NET_TLS":              OpNetTLS,
		"OP_NET_SHUTDOWN":         OpNetShutdown,
		"OP_NET_POLL":             OpNetPoll,
		"OP_NET_READ":             OpNetRead,
		"NET_READ_HEADER_SIZE":    NetReadHeaderSize,
		"NET_READ_NONBLOCK":       NetReadNonblock,
		"NET_READ_INTO":           NetReadInto,
		"NET_READ_STATUS":         NetReadStatus,
		"REQ_CONFIGURE":           ReqConfigure,
		"REQ_RUN":                 ReqRun,
		"REQ_CLEAR_STATE":         ReqClearState,
		"REQ_SNAPSHOT":            ReqSnapshot,
		"REQ_RESTORE":             ReqRestore,
		"REQ_PREPARE":             ReqPrepare,
		"REQ_PREPARE_PACKAGES":    ReqPreparePackages,
		"REQ_COMPILE_PACKAGES":    ReqCompilePackages,
		"REQ_OPEN_FDS":            ReqOpenFds,
		"REQ_HOLD_FDS":            ReqHoldFds,
		"MAX_RESULT_JSON_BYTES":   MaxResultJSONBytes,
		"MAX_CALLBACK_ARGS_BYTES": MaxCallbackArgsBytes,
		"MAX_SNAPSHOT_BYTES":      MaxSnapshotBytes,
	}
	names := make([]string, 0, len(consts))
	for k := range consts {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# generated by goeryx/internal/protocol.Prelude\n")
	for _, k := range names {
		v, _ := json.Marshal(consts[k])
		fmt.Fprintf(&b, "%s = %s\n", k, v)
	}
	return b.String()
}
