package goeryx

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

// Session keeps one interpreter across runs. Its operations run one at a time.
type Session struct {
	box *box

	op        sync.Mutex // held for the whole of each operation
	inst      *instance  // nil after the interpreter was lost and not yet replaced
	timeoutMS *int64
	maxFuel   *int64
	count     atomic.Int64

	mu     sync.Mutex // guards closed, active and the limits below
	closed bool
	active *instance // the interpreter an operation is using, for Close to cancel
}

// NewSession creates the session's interpreter.
func (rt *Runtime) NewSession(ctx context.Context, cfg *Config, store *VFS, hooks Hooks) (*Session, error) {
	b, err := newBox(rt, cfg, store, hooks)
	if err != nil {
		return nil, err
	}
	return newSession(ctx, b)
}

// newSession starts the session of box b (which it owns from then on, even on failure).
func newSession(ctx context.Context, b *box) (*Session, error) {
	if b.store == nil {
		b.store = b.newPrivateStore() // outlives reset()
	}
	inst, err := b.newInterpreter(ctx, b.cfg.Limits.MaxFuel != nil)
	if err != nil {
		b.closeFilesystems()
		return nil, err
	}
	return &Session{box: b, inst: inst, timeoutMS: b.cfg.Limits.ExecutionTimeoutMS, maxFuel: b.cfg.Limits.MaxFuel}, nil
}

var errSessionClosed = &Error{Kind: KindValue, Message: "Session is closed"}

// lock starts an operation: it fails when the session is closed and replaces a lost
// interpreter.
func (s *Session) lock(ctx context.Context) error {
	s.op.Lock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.op.Unlock()
		return errSessionClosed
	}
	if s.inst == nil {
		if err := s.replace(ctx); err != nil {
			s.op.Unlock()
			return err
		}
	}
	s.setActive(s.inst)
	return nil
}

// setActive publishes the interpreter in use, so that Close can cancel it.
func (s *Session) setActive(inst *instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = inst
	if s.closed && inst != nil {
		inst.cancel()
	}
}

func (s *Session) unlock() {
	s.mu.Lock()
	s.active = nil
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.release()
	}
	s.op.Unlock()
}

// replace starts a new interpreter (reset, or after the old one was lost), on the fuel module
// when fuel is metered.
func (s *Session) replace(ctx context.Context) error {
	if s.inst != nil {
		s.inst.close()
		s.inst = nil
	}
	s.mu.Lock()
	fuel := s.maxFuel != nil
	s.mu.Unlock()
	inst, err := s.box.newInterpreter(ctx, fuel)
	if err != nil {
		return err
	}
	s.inst = inst
	s.setActive(inst)
	s.count.Store(0)
	return nil
}

// Execute runs code in the session's interpreter. When ctx ends, the run is interrupted like
// at a timeout (state kept if the interrupt is honoured) and Execute returns KindCancelled.
func (s *Session) Execute(ctx context.Context, code string) (*Result, error) {
	return s.ExecuteWith(ctx, code, nil)
}

// ExecuteWith is Execute with per-run options (nil: none).
func (s *Session) ExecuteWith(ctx context.Context, code string, opts *RunOptions) (*Result, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.unlock()
	start := time.Now()
	s.count.Add(1)
	s.mu.Lock()
	timeoutMS, maxFuel := s.timeoutMS, s.maxFuel
	s.mu.Unlock()
	if maxFuel != nil && !s.inst.fuel {
		// Metering starts: move the interpreter to the fuel module, keeping its state.
		inst, out := s.box.toFuelModule(ctx, s.inst, timeoutMS)
		if out.err != nil {
			return nil, s.settle(ctx, out)
		}
		s.inst.close()
		s.inst = inst
		s.setActive(inst)
	}
	out := s.box.execute(ctx, s.inst, code, opts, timeoutMS, maxFuel, "Session", start)
	if err := s.settle(ctx, out); err != nil {
		return nil, err
	}
	return out.result, nil
}

// settle ends an operation that ran guest code: when the interpreter can no longer be used
// (trap, exit, hard stop, broken protocol) it is replaced and the error says the state was
// lost; a run cancelled cooperatively keeps it.
func (s *Session) settle(ctx context.Context, out runOutcome) error {
	if out.lost {
		s.inst.close()
		s.inst = nil
		if !(out.err.Kind == KindCancelled && !out.err.StateLost) {
			if err := s.replace(ctx); err != nil {
				return err
			}
			out.err = withStateLost(out.err)
		}
	}
	if out.err != nil {
		return out.err
	}
	return nil
}

// stateOp makes a request that runs guest code other than the user's run (clear_state runs
// __del__ methods, snapshot __reduce__, restore whatever the pickle names) under the same
// machinery as Execute: the session's timeout, Close, hard stop, and a reset with state_lost
// when the interpreter is lost. What the guest printed meanwhile is discarded; its stderr
// is returned for error messages.
func (s *Session) stateOp(ctx context.Context, header map[string]any, payload []byte, resp any) ([]byte, string, error) {
	s.mu.Lock()
	timeoutMS := s.timeoutMS
	s.mu.Unlock()
	inst := s.inst
	r := inst.beginRun(ctx, s.box.limits(timeoutMS, nil))
	out, reqErr := inst.request(header, payload, resp)
	inst.endRun(r)
	inst.stdout.take()
	stderr := s.box.secrets.scrub(inst.stderr.take(), s.box.cfg.Scrub.Stderr)
	if failed, ok := s.box.failure(inst, r, reqErr, "Session"); ok {
		return nil, stderr, s.settle(ctx, failed)
	}
	return out, stderr, nil
}

// Reset replaces the interpreter: globals and modules are gone, files stay.
func (s *Session) Reset(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	return s.replace(ctx)
}

// ClearState deletes user globals but keeps the interpreter and its modules.
func (s *Session) ClearState(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	var resp struct {
		OK bool `json:"ok"`
	}
	if _, stderr, err := s.stateOp(ctx, map[string]any{"op": protocol.ReqClearState}, nil, &resp); err != nil {
		return err
	} else if !resp.OK {
		return &Error{Kind: KindEryx, Message: "clear_state failed" + suffixOf(stderr)}
	}
	return nil
}

// Snapshot format: magic, format version (u16), the engine version and the guest Python
// major.minor (u16-length-prefixed strings), the payload length and its CRC-32 (u32 each),
// then the payload: the driver's serialisation of the user globals. All integers little-endian.
const (
	snapshotMagic  = "GOERYXSN"
	snapshotFormat = 1
)

// Snapshot serialises the user globals; skipped lists the names left out.
func (s *Session) Snapshot(ctx context.Context) ([]byte, []string, error) {
	if err := s.lock(ctx); err != nil {
		return nil, nil, err
	}
	defer s.unlock()
	var resp struct {
		OK       bool     `json:"ok"`
		Skipped  []string `json:"skipped"`
		TooLarge int64    `json:"too_large"`
	}
	payload, stderr, err := s.stateOp(ctx, map[string]any{"op": protocol.ReqSnapshot}, nil, &resp)
	if err != nil {
		return nil, nil, err
	}
	if !resp.OK {
		if resp.TooLarge > 0 {
			return nil, nil, snapshotTooLarge(int(resp.TooLarge))
		}
		return nil, nil, &Error{Kind: KindEryx, Message: "snapshot failed" + suffixOf(stderr)}
	}
	data := encodeSnapshot(payload, s.box.rt.pythonMajorMinor())
	if len(data) > protocol.MaxSnapshotBytes {
		return nil, nil, snapshotTooLarge(len(data))
	}
	if resp.Skipped == nil {
		resp.Skipped = []string{}
	}
	return data, resp.Skipped, nil
}

// encodeSnapshot frames the driver's payload (the format above).
func encodeSnapshot(payload []byte, python string) []byte {
	var b bytes.Buffer
	b.WriteString(snapshotMagic)
	_ = binary.Write(&b, binary.LittleEndian, uint16(snapshotFormat))
	writeString(&b, Version)
	writeString(&b, python)
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(payload)))
	_ = binary.Write(&b, binary.LittleEndian, crc32.ChecksumIEEE(payload))
	b.Write(payload)
	return b.Bytes()
}

func snapshotTooLarge(n int) *Error {
	return &Error{Kind: KindResourceLimit, Limit: "snapshot",
		Message: fmt.Sprintf("snapshot is %d bytes, above the %d-byte limit", n, protocol.MaxSnapshotBytes)}
}

func writeString(b *bytes.Buffer, s string) {
	_ = binary.Write(b, binary.LittleEndian, uint16(len(s)))
	b.WriteString(s)
}

func readString(data []byte) (string, []byte, bool) {
	if len(data) < 2 {
		return "", nil, false
	}
	n := int(binary.LittleEndian.Uint16(data))
	if len(data) < 2+n {
		return "", nil, false
	}
	return string(data[2 : 2+n]), data[2+n:], true
}

// decodeSnapshot checks a snapshot made for guest Python python (major.minor) and returns its
// payload, which aliases data. It reads only within data, whatever data holds.
func decodeSnapshot(data []byte, python string) ([]byte, *Error) {
	if len(data) > protocol.MaxSnapshotBytes {
		return nil, snapshotTooLarge(len(data))
	}
	invalid := func(reason string) *Error {
		return &Error{Kind: KindExecution, Message: "invalid snapshot data: " + reason}
	}
	if len(data) < len(snapshotMagic)+2 || !strings.HasPrefix(string(data[:len(snapshotMagic)]), snapshotMagic) {
		if len(data) < len(snapshotMagic) && strings.HasPrefix(snapshotMagic, string(data)) && len(data) > 0 {
			return nil, invalid("truncated header")
		}
		return nil, invalid("not a goeryx snapshot")
	}
	rest := data[len(snapshotMagic):]
	format := binary.LittleEndian.Uint16(rest)
	version, rest, ok1 := readString(rest[2:])
	pyver, rest, ok2 := readString(rest)
	if !ok1 || !ok2 {
		return nil, invalid("truncated header")
	}
	if format != snapshotFormat || pyver != python {
		return nil, &Error{Kind: KindInitialization, Message: fmt.Sprintf(
			"snapshot was made by goeryx %s (guest Python %s) and cannot be restored by goeryx %s (guest Python %s)",
			version, pyver, Version, python)}
	}
	if len(rest) < 8 {
		return nil, invalid("truncated header")
	}
	size, sum := binary.LittleEndian.Uint32(rest), binary.LittleEndian.Uint32(rest[4:])
	rest = rest[8:]
	switch {
	case uint64(len(rest)) < uint64(size):
		return nil, invalid(fmt.Sprintf("truncated data (%d of %d bytes)", len(rest), size))
	case uint64(len(rest)) > uint64(size):
		return nil, invalid(fmt.Sprintf("%d unexpected bytes after the data", uint64(len(rest))-uint64(size)))
	case crc32.ChecksumIEEE(rest) != sum:
		return nil, invalid("checksum mismatch")
	}
	return rest, nil
}

// Restore merges a snapshot into the globals.
func (s *Session) Restore(ctx context.Context, data []byte) error {
	rest, derr := decodeSnapshot(data, s.box.rt.pythonMajorMinor())
	if derr != nil {
		return derr
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	var resp struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if _, _, err := s.stateOp(ctx, map[string]any{"op": protocol.ReqRestore}, rest, &resp); err != nil {
		return err
	}
	if !resp.OK {
		return &Error{Kind: KindExecution, Message: "failed to restore snapshot: " + resp.Error}
	}
	return nil
}

// SetExecutionTimeoutMS sets the timeout of later runs (nil: none).
func (s *Session) SetExecutionTimeoutMS(ms *int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timeoutMS = ms
}

// SetMaxFuel sets the fuel limit of later runs (nil: not metered). A session created without
// a limit runs on the normal module: the first metered run moves its interpreter, state
// included, to the fuel module (compiling it if this process has not yet), except for files
// the guest keeps open across runs: those stay behind, and using them fails with an OSError.
// Metering off again, the interpreter stays on the fuel module until it is replaced (reset,
// or a lost state).
func (s *Session) SetMaxFuel(fuel *int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxFuel = fuel
}

// ExecutionCount is the number of runs since creation or the last reset. It never blocks.
func (s *Session) ExecutionCount() int64 { return s.count.Load() }

// Close releases the interpreter; a run in progress fails with KindCancelled.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.active != nil {
		s.active.cancel()
	}
	s.mu.Unlock()
	// If no operation is running, release the interpreter now; otherwise unlock does it.
	if s.op.TryLock() {
		s.release()
		s.op.Unlock()
	}
}

// release frees the interpreter and the volumes; the caller holds op.
func (s *Session) release() {
	if s.inst != nil {
		s.inst.close()
		s.inst = nil
	}
	s.box.closeFilesystems()
}

func (rt *Runtime) pythonMajorMinor() string {
	v := rt.manifest.PythonVersion
	if i := strings.IndexByte(v, '.'); i >= 0 {
		if j := strings.IndexByte(v[i+1:], '.'); j >= 0 {
			return v[:i+1+j]
		}
	}
	return v
}
