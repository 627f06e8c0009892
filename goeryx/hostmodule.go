package goeryx

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

// maxHostRequest bounds a guest request to the host (a callback's arguments plus a header).
const maxHostRequest = maxCallbackArgs + 64<<10

// instantiateHostModule defines the _eryx import module (docs/ABI.md). Its functions find
// their instance through the context of the guest call.
func instantiateHostModule(ctx context.Context, r wazero.Runtime) error {
	i32 := api.ValueTypeI32
	_, err := r.NewHostModuleBuilder(abi.ImportModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostCall), []api.ValueType{i32, i32, i32}, []api.ValueType{i32}).
		Export(abi.ImportHostCall).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostTake), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		Export(abi.ImportHostTake).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostTick), nil, nil).
		Export(abi.ImportTick).
		Instantiate(ctx)
	return err
}

func hostTick(ctx context.Context, _ api.Module, _ []uint64) {
	if inst := instanceFrom(ctx); inst != nil {
		inst.tick()
	}
}

func hostTake(ctx context.Context, m api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	dst, capacity := uint32(stack[0]), uint32(stack[1])
	if inst == nil || !inst.hasResp {
		stack[0] = api.EncodeI32(abi.HostErrNoResponse)
		return
	}
	resp := inst.response
	parts := inst.responseParts
	inst.response, inst.responseParts, inst.hasResp = nil, nil, false
	if parts != nil {
		mem, off := m.Memory(), uint32(0)
		for _, p := range parts {
			if off >= capacity {
				break
			}
			p = p[:min(uint32(len(p)), capacity-off)]
			if !mem.Write(dst+off, p) {
				stack[0] = api.EncodeI32(abi.HostErrBadRequest)
				return
			}
			off += uint32(len(p))
		}
		stack[0] = api.EncodeI32(int32(off))
		return
	}
	if uint32(len(resp)) > capacity {
		resp = resp[:capacity]
	}
	if !m.Memory().Write(dst, resp) {
		stack[0] = api.EncodeI32(abi.HostErrBadRequest)
		return
	}
	stack[0] = api.EncodeI32(int32(len(resp)))
}

func hostCall(ctx context.Context, m api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	op, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	fail := func(code int32) { stack[0] = api.EncodeI32(code) }
	if inst == nil {
		fail(abi.HostErrBadRequest)
		return
	}
	if n > maxHostRequest && (op != abi.OpDlopen || n > maxDlopenRequest) {
		fail(abi.HostErrTooLarge)
		return
	}
	frame, ok := m.Memory().Read(ptr, n)
	if !ok {
		fail(abi.HostErrBadRequest)
		return
	}
	req, code := parseHostRequest(op, frame)
	if code != 0 {
		fail(code)
		return
	}
	var resp any
	switch op {
	case protocol.OpCallbackStart:
		resp, _ = inst.startCallback(req.name, req.args)
	case protocol.OpWait:
		resp = inst.waitAll(req.timeout, &req.watch)
	case protocol.OpCallbackCancel:
		inst.cancelCallback(req.id)
		resp = map[string]any{}
	case protocol.OpCPUTime:
		resp = map[string]any{"ns": int64(inst.cpu.now())}
	case protocol.OpNetRead:
		resp = inst.netRead(frame)
	case abi.OpDlopen, abi.OpDlsym:
		if resp = inst.dlCall(op, frame); resp == nil {
			fail(abi.HostErrBadRequest)
			return
		}
	case protocol.OpNetConnect, protocol.OpNetSend, protocol.OpNetRecv, protocol.OpNetClose,
		protocol.OpNetTLS, protocol.OpNetShutdown, protocol.OpNetPoll:
		var ok bool
		if resp, ok = inst.netCall(op, frame); !ok {
			fail(abi.HostErrBadRequest)
			return
		}
	default:
		fail(abi.HostErrUnknownOp)
		return
	}
	if parts, ok := resp.(responseParts); ok {
		total := 0
		for _, p := range parts {
			total += len(p)
		}
		inst.response, inst.responseParts, inst.hasResp = nil, parts, true
		stack[0] = api.EncodeI32(int32(total))
		return
	}
	var payload []byte
	if f, ok := resp.(framed); ok {
		resp, payload = f.header, f.payload
	}
	var out []byte
	if f, ok := resp.(encodedFrame); ok {
		out = f
	} else {
		var err error
		if out, err = protocol.Encode(resp, payload); err != nil {
			fail(abi.HostErrBadRequest)
			return
		}
	}
	inst.response, inst.hasResp = out, true
	stack[0] = api.EncodeI32(int32(len(out)))
}

// hostRequest is a decoded host_call from the guest.
type hostRequest struct {
	name    string        // OpCallbackStart
	args    []byte        // OpCallbackStart: a copy, it outlives the guest's memory view
	timeout time.Duration // OpWait; < 0: none
	watch   netWatch      // OpWait: the connections the event loop waits on
	id      int64         // OpCallbackCancel
}

// parseHostRequest decodes the frame of host_call op; a non-zero code (abi.HostErr*) refuses
// it. Everything in frame is the guest's: this is the only reader of it.
func parseHostRequest(op int32, frame []byte) (hostRequest, int32) {
	var req hostRequest
	switch op {
	case protocol.OpCallbackStart:
		var h struct {
			Name string `json:"name"`
		}
		payload, err := protocol.Decode(frame, &h)
		if err != nil {
			return req, abi.HostErrBadRequest
		}
		req.name, req.args = h.Name, append([]byte(nil), payload...)
	case protocol.OpWait:
		var h struct {
			TimeoutNS int64 `json:"timeout_ns"`
			netWatch
		}
		if _, err := protocol.Decode(frame, &h); err != nil {
			return req, abi.HostErrBadRequest
		}
		req.watch = h.netWatch
		req.timeout = time.Duration(-1)
		if h.TimeoutNS >= 0 {
			req.timeout = time.Duration(h.TimeoutNS)
		}
	case protocol.OpCallbackCancel:
		var h struct {
			ID int64 `json:"id"`
		}
		if _, err := protocol.Decode(frame, &h); err != nil {
			return req, abi.HostErrBadRequest
		}
		req.id = h.ID
	case protocol.OpCPUTime:
	case protocol.OpNetConnect, protocol.OpNetSend, protocol.OpNetRecv, protocol.OpNetClose,
		protocol.OpNetTLS, protocol.OpNetShutdown, protocol.OpNetPoll, protocol.OpNetRead:
		// Decoded by netCall or netRead (goeryx/netcalls.go), which reads the frame itself.
	case abi.OpDlopen, abi.OpDlsym:
		// Decoded by dlCall (goeryx/dylink.go), which reads the frame itself.
	default:
		return req, abi.HostErrUnknownOp
	}
	return req, 0
}
