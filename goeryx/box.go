package goeryx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	gnet "github.com/goeryx/goeryx/goeryx/internal/net"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
	"github.com/goeryx/goeryx/goeryx/internal/vfs"
)

// box is what a Sandbox and a Session share: the validated configuration and the way to make
// and drive interpreters.
type box struct {
	rt         *Runtime
	cfg        Config
	hooks      Hooks
	store      *VFS // shared store, or nil for a private one per interpreter
	mountPath  string
	resultVar  string
	callbacks  map[string]int
	memLimit   uint64
	configured map[string]any // the configure request every new interpreter gets
	volumes    []vfs.Volume
	root       experimentalsys.FS
	scratch    bool // the interpreters get a scratch directory at ScratchDir
	secrets    *secrets
	// net is the network policy and limits of every run (nil: networking is off).
	net *gnet.Options
	// callbacksInFlight counts this box's callbacks whose host function is still running.
	callbacksInFlight atomic.Int64
	// fac, when not nil, is the factory image its interpreters start from (factory.go), with
	// pkgs mounted read-only at SitePackagesPath; ownsImage: the box holds a reference to it.
	fac       *factoryImage
	pkgs      vfs.Volume
	ownsImage bool
	// readyOnce computes readyKeyStr and readyOK (ready.go) on first use; readyMake makes an
	// interpreter like this box's for the runtime's pool of ready interpreters.
	readyOnce   sync.Once
	readyKeyStr string
	readyOK     bool
	readyMake   func() (*instance, error)
}

func newBox(rt *Runtime, cfg *Config, store *VFS, hooks Hooks) (*box, error) {
	return newBoxWithImage(rt, cfg, store, hooks, nil, nil)
}

// pool hands out the memories of the box's interpreters: the factory's image or the runtime's.
func (b *box) pool() *memoryPool {
	if b.fac != nil {
		return b.fac.pool
	}
	return b.rt.memory
}

// newBoxWithImage is newBox for interpreters that start from a factory image (fac, nil for
// the runtime's) with its packages pkgs; on success the box owns pkgs.
func newBoxWithImage(rt *Runtime, cfg *Config, store *VFS, hooks Hooks, fac *factoryImage, pkgs vfs.Volume) (*box, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if hooks == nil {
		hooks = NoHooks{}
	}
	if err := validateMounts(cfg); err != nil {
		return nil, err
	}
	b := &box{rt: rt, cfg: *cfg, hooks: hooks, store: store, callbacks: map[string]int{}, fac: fac, pkgs: pkgs}
	b.mountPath = cfg.VFSMountPath
	if b.mountPath == "" {
		b.mountPath = DefaultVFSMountPath
	}
	b.resultVar = cfg.ResultVariable
	if b.resultVar == "" {
		b.resultVar = DefaultResultVariable
	}
	for i, c := range cfg.Callbacks {
		b.callbacks[c.Name] = i // the later definition of a name wins
	}
	if m := cfg.Limits.MaxMemoryBytes; m != nil {
		if *m <= 0 {
			return nil, &Error{Kind: KindValue, Message: fmt.Sprintf("max_memory_bytes must be positive, got %d", *m)}
		}
		b.memLimit = uint64(*m)
		if b.memLimit > maxWasm32Memory {
			b.memLimit = maxWasm32Memory
		}
		need := rt.ImageBytes()
		if fac != nil {
			need = uint64(len(fac.image))
		}
		if b.memLimit-b.memLimit%wasmPageSize < need {
			return nil, initError("max_memory_bytes=%d is below the %d bytes the guest interpreter needs to start", *m, need)
		}
	}
	if f := cfg.Limits.MaxFuel; f != nil {
		if *f <= 0 {
			return nil, &Error{Kind: KindValue, Message: fmt.Sprintf("max_fuel must be positive, got %d", *f)}
		}
		// The fuel module is compiled the first time a sandbox or session needs it.
		if _, err := rt.fuelCompiled(); err != nil {
			return nil, err
		}
	}
	var err error
	if b.secrets, err = newSecrets(cfg.Secrets); err != nil {
		return nil, initError("cannot create secret placeholders: %v", err)
	}
	if b.net, err = netOptions(cfg.Network, b.secrets); err != nil {
		return nil, err
	}
	if err := b.openFilesystems(); err != nil {
		return nil, err
	}
	b.configured = map[string]any{
		"op":              protocol.ReqConfigure,
		"result_variable": b.resultVar,
		"callbacks":       cfg.Callbacks,
		"env":             b.guestEnv(),
	}
	if b.scratch {
		b.configured["cwd"] = ScratchDir
	}
	return b, nil
}

// guestEnv is the guest's os.environ: the runtime's entries (a home, a temporary directory and
// a user name, as a login shell has), then one entry per secret.
func (b *box) guestEnv() map[string]string {
	env := map[string]string{"USER": GuestUser, "LOGNAME": GuestUser}
	if b.scratch {
		env["HOME"], env["TMPDIR"] = ScratchDir, ScratchDir
	}
	for k, v := range b.secrets.env {
		env[k] = v
	}
	return env
}

// limits are the limits of one run: timeoutMS and maxFuel are the Sandbox's configured ones or
// a Session's current ones (Session.SetExecutionTimeoutMS, SetMaxFuel).
func (b *box) limits(timeoutMS, maxFuel *int64) *runLimits {
	l := &runLimits{maxInvocations: -1, callbackIndex: b.callbacks, hooks: b.hooks, maxFuel: maxFuel,
		callbacksInFlight: &b.callbacksInFlight, secrets: b.secrets, net: b.net}
	if timeoutMS != nil && *timeoutMS > 0 {
		l.timeout = time.Duration(*timeoutMS) * time.Millisecond
	}
	if t := b.cfg.Limits.CallbackTimeoutMS; t != nil && *t > 0 {
		l.callbackTimeout = time.Duration(*t) * time.Millisecond
		l.callbackTimeoutMS = *t
	}
	if n := b.cfg.Limits.MaxCallbackInvocations; n != nil {
		l.maxInvocations = *n
	}
	return l
}

// instanceConfig is the configuration of the box's interpreters; fuel selects the fuel module.
func (b *box) instanceConfig(fuel bool) (*instanceConfig, error) {
	ic := &instanceConfig{memoryLimit: b.memLimit, fuel: fuel}
	if b.cfg.StreamStdout {
		ic.stdout = func(s string) { b.hooks.Output(Stdout, b.secrets.scrub(s, b.cfg.Scrub.Stdout)) }
		if b.cfg.Scrub.Stdout && b.secrets.scrubber != nil {
			ic.stdoutTail = b.secrets.placeholderTail
		}
	}
	if b.cfg.StreamStderr {
		ic.stderr = func(s string) { b.hooks.Output(Stderr, b.secrets.scrub(s, b.cfg.Scrub.Stderr)) }
		if b.cfg.Scrub.Stderr && b.secrets.scrubber != nil {
			ic.stderrTail = b.secrets.placeholderTail
		}
	}
	mounts, err := b.mounts()
	if err != nil {
		return nil, err
	}
	ic.mounts = mounts
	return ic, nil
}

// newInterpreter starts an interpreter from the runtime's image and configures it; fuel
// selects the fuel module.
func (b *box) newInterpreter(ctx context.Context, fuel bool) (*instance, error) {
	if fuel {
		if _, err := b.rt.fuelCompiled(); err != nil {
			return nil, err
		}
	}
	ic, err := b.instanceConfig(fuel)
	if err != nil {
		return nil, err
	}
	return b.startInterpreter(ctx, ic)
}

// startInterpreter instantiates ic from the runtime's image and configures the interpreter.
func (b *box) startInterpreter(ctx context.Context, ic *instanceConfig) (*instance, error) {
	inst, err := b.rt.instantiate(ctx, ic, b.pool())
	if err != nil {
		return nil, initError("failed to start guest interpreter: %v", err)
	}
	var resp struct {
		OK bool `json:"ok"`
	}
	if _, err := inst.request(b.configured, nil, &resp); err != nil || !resp.OK {
		inst.close()
		return nil, initError("failed to start guest interpreter: %v%s", errOrStatus(err, 1), stderrSuffix(inst))
	}
	return inst, nil
}

// runOutcome is what one run produced.
type runOutcome struct {
	result *Result
	err    *Error
	// lost is set when the interpreter can no longer be used.
	lost bool
}

type runResponse struct {
	OK          bool    `json:"ok"`
	ExcType     *string `json:"exc_type"`
	Interrupted bool    `json:"interrupted"`
	ResultJSON  *string `json:"result_json"`
	ResultError *string `json:"result_error"`
	DriverError string  `json:"driver_error"`
}

// execute runs code in inst and classifies the outcome (API.md §2.1, §5.4, §6.6). maxFuel
// (metered when set) requires inst to run the fuel module.
func (b *box) execute(ctx context.Context, inst *instance, code string, opts *RunOptions, timeoutMS, maxFuel *int64, who string, start time.Time) runOutcome {
	// Runs in progress tell the pool of ready interpreters whether the CPU is spare (ready.go).
	b.rt.runStarted()
	defer b.rt.runEnded()
	l := b.limits(timeoutMS, maxFuel)
	header, payload := runRequest(code, opts)
	r := inst.beginRun(ctx, l)
	var resp runResponse
	_, reqErr := inst.request(header, payload, &resp)
	var fuel *uint64
	if r.fuelMetered && !r.outOfFuel {
		// The guest checks its budget at every function exit, so it cannot have overdrawn it
		// unnoticed; the check is only a safeguard.
		if used := inst.fuelConsumed(r); used <= r.maxFuel {
			u := uint64(used)
			fuel = &u
		} else {
			r.outOfFuel = true
		}
	}
	inst.endRun(r)
	res := &Result{
		Stdout:              b.secrets.scrub(inst.stdout.take(), b.cfg.Scrub.Stdout),
		Stderr:              b.secrets.scrub(inst.stderr.take(), b.cfg.Scrub.Stderr),
		CallbackInvocations: r.invocations,
		PeakMemoryBytes:     inst.memUse.peak.Load(),
		FuelConsumed:        fuel,
	}
	res.Duration = time.Since(start)
	if res.Duration <= 0 {
		res.Duration = time.Nanosecond
	}
	out, failed := b.failure(inst, r, reqErr, who)
	if !failed {
		memRefused := inst.memUse.refused.Load()
		switch {
		case resp.DriverError != "":
			out.err = &Error{Kind: KindEryx, Message: "guest driver error: " + resp.DriverError}
		case !resp.OK && memRefused:
			out.err = b.memoryError(false)
		case !resp.OK:
			out.err = &Error{Kind: KindExecution, Message: res.Stderr}
			if resp.ExcType != nil {
				out.err.ExcType = *resp.ExcType
			}
		}
	}
	if out.err != nil {
		// Every error of a run carries what the run printed, as a result would.
		out.err.Stdout, out.err.Stderr = res.Stdout, res.Stderr
		return out
	}
	res.ResultJSON, res.ResultError = checkResult(resp.ResultJSON, resp.ResultError)
	res.ResultJSON = b.scrubResult(res.ResultJSON)
	res.ResultError = b.scrubResult(res.ResultError)
	return runOutcome{result: res}
}

// failure classifies how an operation that ran guest code under the run r ended, when it did
// not end with a well-formed response to a request that ran to completion: closed, cancelled,
// out of fuel, timed out, out of memory, terminated (trap, exit, hard stop) or a broken
// protocol. reqErr is the error of inst.request. These are decided from what the host saw,
// never from what the guest said, so that a guest cannot turn a limit into a plain error.
func (b *box) failure(inst *instance, r *runState, reqErr error, who string) (runOutcome, bool) {
	var broken *protocolError
	protocolBroken := errors.As(reqErr, &broken)
	callErr := reqErr
	if protocolBroken {
		callErr = nil
	}
	stopped := r.stopRequested.Load() && (!r.interrupted.IsZero() || r.hardStopped)
	timedOut := !stopped && (!r.interrupted.IsZero() || r.hardStopped)
	memRefused := inst.memUse.refused.Load()
	switch {
	case callErr != nil && r.cancelled.Load():
		return runOutcome{err: &Error{Kind: KindCancelled, Message: who + " was closed during execution"}, lost: true}, true
	case stopped:
		return runOutcome{err: &Error{Kind: KindCancelled, Message: "execution was cancelled", StateLost: callErr != nil}, lost: callErr != nil}, true
	case r.outOfFuel:
		// The guest was stopped hard, possibly outside the run request (in eryx_free): its
		// interpreter cannot be trusted any more. A Session marks the error state_lost.
		return runOutcome{err: outOfFuelError(r.maxFuel), lost: true}, true
	case callErr != nil && timedOut:
		return runOutcome{err: &Error{Kind: KindTimeout, Message: timeoutMessage(r.limits), StateLost: true}, lost: true}, true
	case reqErr != nil && memRefused:
		return runOutcome{err: b.memoryError(true), lost: true}, true
	case callErr != nil:
		return runOutcome{err: &Error{Kind: KindExecution,
			Message: "guest interpreter terminated unexpectedly: " + terminationReason(callErr)}, lost: true}, true
	case protocolBroken:
		// The driver is damaged: its interpreter is not used again.
		return runOutcome{err: &Error{Kind: KindExecution, Message: broken.Error()}, lost: true}, true
	case timedOut:
		return runOutcome{err: &Error{Kind: KindTimeout, Message: timeoutMessage(r.limits)}}, true
	}
	return runOutcome{}, false
}

func (b *box) scrubResult(s *string) *string {
	if s == nil || !b.cfg.Scrub.Result {
		return s
	}
	v := b.secrets.scrub(*s, true)
	return &v
}

// fileOptions are the options of the guest's writable file systems: placeholders are scrubbed
// from every write when scrub_files is on.
func (b *box) fileOptions(readOnly bool) vfs.Options {
	o := vfs.Options{ReadOnly: readOnly}
	if b.cfg.Scrub.Files && b.secrets.scrubber != nil {
		o.WriteFilter = b.secrets.scrubBytes
	}
	return o
}

func timeoutMessage(l *runLimits) string {
	return fmt.Sprintf("execution timed out after %d ms", l.timeout.Milliseconds())
}

func (b *box) memoryError(lost bool) *Error {
	return &Error{Kind: KindResourceLimit, Limit: "max_memory_bytes", StateLost: lost,
		Message: fmt.Sprintf("memory limit exceeded: the guest needed more than max_memory_bytes=%d", *b.cfg.Limits.MaxMemoryBytes)}
}

// withStateLost marks an error after which a Session replaced its interpreter.
func withStateLost(e *Error) *Error {
	e.StateLost = true
	if !strings.HasSuffix(e.Message, StateLostSuffix) {
		e.Message += StateLostSuffix
	}
	return e
}
