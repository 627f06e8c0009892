package goeryx

import (
	"encoding/binary"
	"sort"
	"strings"
	"time"

	gnet "github.com/goeryx/goeryx/goeryx/internal/net"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

// The guest's network host calls (docs/PROTOCOL.md): decoding and the run's deadline,
// cancellation and polling here; the policy, connections and TLS in internal/net.

// netOptions compiles a sandbox's NetConfig once (nil: networking is off).
func netOptions(c *NetConfig, sec *secrets) (*gnet.Options, error) {
	if c == nil {
		return nil, nil
	}
	roots, err := gnet.RootPool(c.RootCertsDER)
	if err != nil {
		return nil, &Error{Kind: KindValue, Message: "invalid root certificate: " + err.Error()}
	}
	o := &gnet.Options{Policy: gnet.NewPolicy(c.AllowedHosts, c.BlockedHosts), RootCAs: roots,
		ConnectTimeout: time.Duration(c.ConnectTimeoutMS) * time.Millisecond,
		IOTimeout:      time.Duration(c.IOTimeoutMS) * time.Millisecond}
	if c.MaxConnections > 0 && c.MaxConnections < gnet.HardMaxConnections {
		o.MaxConnections = int(c.MaxConnections)
	}
	for _, name := range sortedKeys(sec.byName) {
		secret := sec.byName[name]
		var hosts []string
		for _, h := range secret.AllowedHosts {
			hosts = append(hosts, strings.ToLower(h))
		}
		o.Secrets = append(o.Secrets, gnet.Secret{Name: name, Placeholder: sec.env[name],
			Value: secret.Value, Hosts: hosts})
	}
	for _, h := range c.AllowedHosts {
		o.AllowedHosts = append(o.AllowedHosts, strings.ToLower(h))
	}
	if testResolver != nil {
		o.Resolver = testResolver
	}
	return o, nil
}

// testResolver replaces the system resolver in the package's tests.
var testResolver gnet.Resolver

// recvHeader starts an OpNetRecv response frame that carries data: the header's length, then
// the header {"eof":false}.
var recvHeader = func() []byte {
	h := []byte(`{"eof":false}`)
	return append([]byte{byte(len(h)), 0, 0, 0}, h...)
}()

// encodedFrame is a host-call response already encoded as a frame.
type encodedFrame []byte

// framed is a host-call response with a payload.
type framed struct {
	header  any
	payload []byte
}

func netError(e *gnet.Error) map[string]any { return map[string]any{"error": e} }

// netWait is the bound of a blocking network call: the host's limit, shortened by the
// guest's timeout (timeout_ns > 0), and the run's next wake-up (deadline, grace period).
func netWait(r *runState, host time.Duration, guestNS int64) gnet.Wait {
	d := host
	if guestNS > 0 && (d <= 0 || time.Duration(guestNS) < d) {
		d = time.Duration(guestNS)
	}
	w := gnet.Wait{Wake: r.wake}
	if d > 0 {
		w.Until = time.Now().Add(d)
	}
	if nw := r.nextWake(); !nw.IsZero() && (w.Until.IsZero() || nw.Before(w.Until)) {
		w.Until = nw
	}
	return w
}

// netCall serves the network ops; ok is false for a frame that does not decode.
func (inst *instance) netCall(op int32, frame []byte) (resp any, ok bool) {
	r := inst.run.Load()
	var h struct {
		ID             int64  `json:"id"`
		Host           string `json:"host"`
		Port           int    `json:"port"`
		TLS            bool   `json:"tls"`
		ServerHostname string `json:"server_hostname"`
		TimeoutNS      int64  `json:"timeout_ns"`
		Async          bool   `json:"async"`
		Nonblock       bool   `json:"nonblock"`
		Max            int    `json:"max"`
		How            int    `json:"how"`
	}
	if op == protocol.OpNetPoll {
		var w netWatch
		var t struct {
			TimeoutNS int64 `json:"timeout_ns"`
		}
		if _, err := protocol.Decode(frame, &w); err != nil {
			return nil, false
		}
		if _, err := protocol.Decode(frame, &t); err != nil {
			return nil, false
		}
		if r == nil || r.net == nil {
			return netError(gnet.ErrNotEnabled), true
		}
		return inst.netPoll(r, &w, t.TimeoutNS), true
	}
	payload, err := protocol.Decode(frame, &h)
	if err != nil {
		return nil, false
	}
	if r == nil || r.net == nil {
		if op == protocol.OpNetClose {
			return map[string]any{}, true
		}
		return netError(gnet.ErrNotEnabled), true
	}
	if len(h.Host) > 1024 || len(h.ServerHostname) > 1024 {
		return netError(gnet.ErrNotFound), true
	}
	opts := r.limits.net
	defer inst.poll() // a blocking call may have reached the deadline or been cut
	switch op {
	case protocol.OpNetConnect:
		req := gnet.ConnectRequest{Host: h.Host, Port: h.Port, TLS: h.TLS, ServerName: h.ServerHostname,
			Timeout: time.Duration(max(h.TimeoutNS, 0))}
		if h.Async {
			return r.net.ConnectAsync(req), true
		}
		w := netWait(r, 0, 0) // the connect timeout itself is applied by Connect
		return r.net.Connect(req, w), true
	case protocol.OpNetSend:
		c, gerr := r.net.Get(h.ID)
		if gerr != nil {
			return netError(gerr), true
		}
		n, gerr := c.Send(payload, netWait(r, opts.IOTimeout, h.TimeoutNS), h.Nonblock)
		if gerr != nil {
			return netError(gerr), true
		}
		return map[string]any{"n": n}, true
	case protocol.OpNetRecv:
		c, gerr := r.net.Get(h.ID)
		if gerr != nil {
			return netError(gerr), true
		}
		// The data is received straight into the response frame.
		n := min(max(h.Max, 0), gnet.MaxRecv)
		frame := append(make([]byte, 0, len(recvHeader)), recvHeader...) // grows once, to fit
		frame, eof, gerr := c.RecvInto(frame, n, netWait(r, opts.IOTimeout, h.TimeoutNS), h.Nonblock)
		if gerr != nil {
			return netError(gerr), true
		}
		if eof {
			return map[string]any{"eof": true}, true
		}
		if len(frame) < len(recvHeader) {
			frame = recvHeader // nothing (nonblock, or max 0)
		}
		return encodedFrame(frame), true
	case protocol.OpNetClose:
		r.net.Close(h.ID)
		return map[string]any{}, true
	case protocol.OpNetTLS:
		c, gerr := r.net.Get(h.ID)
		if gerr != nil {
			return netError(gerr), true
		}
		name := h.ServerHostname
		if name == "" {
			name = c.Host()
		}
		if h.Async {
			// loop.start_tls: the handshake runs while the event loop goes on; its outcome
			// comes in OP_WAIT's "connected", like an asynchronous connect's.
			r.net.UpgradeAsync(c, name, opts.ConnectTimeout)
			return map[string]any{}, true
		}
		if gerr := c.Upgrade(name, netWait(r, opts.ConnectTimeout, h.TimeoutNS)); gerr != nil {
			r.net.Close(h.ID)
			return netError(gerr), true
		}
		return map[string]any{"version": c.Version()}, true
	case protocol.OpNetShutdown:
		c, gerr := r.net.Get(h.ID)
		if gerr != nil {
			return netError(gerr), true
		}
		c.Shutdown(h.How)
		return map[string]any{}, true
	}
	return nil, false
}

// Bounds of what one OP_WAIT hands over from the guest's connections.
const (
	maxWaitRecvPerConn = 256 << 10
	maxWaitRecvTotal   = 4 << 20
	maxWaitWatch       = gnet.HardMaxConnections
)

// netWatch is what the guest's event loop waits for besides callbacks (OP_WAIT): data on
// the connections in Recv (read at most RecvMax bytes each), room to send on those in Send.
type netWatch struct {
	Recv    []int64 `json:"recv"`
	Send    []int64 `json:"send"`
	RecvMax int     `json:"recv_max"`
	// Poll are connections whose readability alone is wanted (loop.sock_recv): answered in
	// "readable", nothing is read.
	Poll []int64 `json:"poll"`
}

// netItem is one connection's received data (in the payload), end of stream or error.
type netItem struct {
	ID  int64       `json:"id"`
	N   int         `json:"n"`
	EOF bool        `json:"eof,omitempty"`
	Err *gnet.Error `json:"error,omitempty"`
}

// waitAll is OP_WAIT: callback completions, and for the guest's event loop the connects that
// ended, the data that arrived on watched connections and the connections with room to send.
func (inst *instance) waitAll(timeout time.Duration, w *netWatch) any {
	r := inst.run.Load()
	if r == nil || r.net == nil {
		return map[string]any{"done": inst.wait(timeout)}
	}
	if len(w.Recv) > maxWaitWatch {
		w.Recv = w.Recv[:maxWaitWatch]
	}
	if len(w.Send) > maxWaitWatch {
		w.Send = w.Send[:maxWaitWatch]
	}
	if len(w.Poll) > maxWaitWatch {
		w.Poll = w.Poll[:maxWaitWatch]
	}
	lookup := func(ids []int64) []*gnet.Conn {
		out := make([]*gnet.Conn, len(ids))
		for i, id := range ids {
			out[i], _ = r.net.Get(id)
		}
		return out
	}
	recv, send, poll := lookup(w.Recv), lookup(w.Send), lookup(w.Poll)
	ready := func() bool {
		if r.net.ConnectsPending() {
			return true
		}
		for _, c := range poll {
			if c == nil || c.Readable() {
				return true
			}
		}
		for _, c := range recv {
			if c == nil || c.Readable() {
				return true
			}
		}
		for _, c := range send {
			if c == nil || c.Writable() {
				return true
			}
		}
		return false
	}
	done := inst.waitFor(timeout, ready, r.net.Notify)
	out := map[string]any{"done": done}
	per := w.RecvMax
	if per <= 0 || per > maxWaitRecvPerConn {
		per = maxWaitRecvPerConn
	}
	var payload []byte
	var items []netItem
	for i, c := range recv {
		if c == nil {
			items = append(items, netItem{ID: w.Recv[i], Err: gnet.ErrClosed})
			continue
		}
		if len(payload) >= maxWaitRecvTotal {
			break
		}
		data, eof, gerr := c.Recv(min(per, maxWaitRecvTotal-len(payload)), gnet.Wait{}, true)
		if len(data) > 0 || eof || gerr != nil {
			payload = append(payload, data...)
			items = append(items, netItem{ID: w.Recv[i], N: len(data), EOF: eof, Err: gerr})
		}
	}
	var readable []int64
	for i, c := range poll {
		if c == nil || c.Readable() {
			readable = append(readable, w.Poll[i])
		}
	}
	var writable []int64
	for i, c := range send {
		if c == nil || c.Writable() {
			writable = append(writable, w.Send[i])
		}
	}
	net := map[string]any{}
	if connected := r.net.TakeConnects(); len(connected) > 0 {
		net["connected"] = connected
	}
	if len(items) > 0 {
		net["data"] = items
	}
	if len(writable) > 0 {
		net["writable"] = writable
	}
	if len(readable) > 0 {
		net["readable"] = readable
	}
	if len(net) > 0 {
		out["net"] = net
	}
	return framed{out, payload}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// netPoll is OpNetPoll: readiness of connections without reading (the guest's select and
// poll on its sockets). It waits at most the timeout and never past the run's next wake-up.
func (inst *instance) netPoll(r *runState, w *netWatch, timeoutNS int64) any {
	defer inst.poll()
	if len(w.Recv) > maxWaitWatch {
		w.Recv = w.Recv[:maxWaitWatch]
	}
	if len(w.Send) > maxWaitWatch {
		w.Send = w.Send[:maxWaitWatch]
	}
	var until time.Time
	if timeoutNS >= 0 {
		until = time.Now().Add(time.Duration(timeoutNS))
	}
	if nw := r.nextWake(); !nw.IsZero() && (until.IsZero() || nw.Before(until)) {
		until = nw
	}
	check := func() (readable, writable []int64) {
		for _, id := range w.Recv {
			if c, gerr := r.net.Get(id); gerr != nil || c.Readable() {
				readable = append(readable, id)
			}
		}
		for _, id := range w.Send {
			if c, gerr := r.net.Get(id); gerr != nil || c.Writable() {
				writable = append(writable, id)
			}
		}
		return
	}
	var timer <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timer = t.C
	}
	for {
		readable, writable := check()
		if len(readable) > 0 || len(writable) > 0 {
			return map[string]any{"readable": readable, "writable": writable}
		}
		select {
		case <-r.net.Notify:
		case <-timer:
			return map[string]any{"readable": []int64{}, "writable": []int64{}}
		case <-r.wake:
			return map[string]any{"readable": []int64{}, "writable": []int64{}}
		}
	}
}

// responseParts is a host-call response handed to host_take in pieces (received data).
type responseParts [][]byte

// netOutcome is why the last OpNetRead returned no data (asked with NetReadStatus).
type netOutcome struct {
	eof bool
	err *gnet.Error
}

// netRead is OpNetRead (docs/PROTOCOL.md): the guest's recv and recv_into without JSON and
// without copies on the host beyond the one into guest memory. frame is a view of the
// guest's memory (the request); with NetReadInto the bytes read are written over it, within
// its bounds, which the host checked when it took the view.
func (inst *instance) netRead(frame []byte) any {
	if len(frame) < protocol.NetReadHeaderSize {
		return netError(&gnet.Error{Type: "OSError", Errno: "EINVAL", Message: "malformed read request"})
	}
	id := int64(binary.LittleEndian.Uint64(frame))
	timeoutNS := int64(binary.LittleEndian.Uint64(frame[8:]))
	max := int(binary.LittleEndian.Uint32(frame[16:]))
	flags := binary.LittleEndian.Uint32(frame[20:])
	if flags&protocol.NetReadStatus != 0 {
		last := inst.netLast
		inst.netLast = netOutcome{}
		switch {
		case last.err != nil:
			return netError(last.err)
		case last.eof:
			return map[string]any{"eof": true}
		}
		return map[string]any{}
	}
	inst.netLast = netOutcome{}
	into := flags&protocol.NetReadInto != 0
	none := func(eof bool, gerr *gnet.Error) any {
		inst.netLast = netOutcome{eof: eof, err: gerr}
		if into {
			return encodedFrame(make([]byte, 8))
		}
		return encodedFrame(nil)
	}
	r := inst.run.Load()
	if r == nil || r.net == nil {
		return none(false, gnet.ErrNotEnabled)
	}
	c, gerr := r.net.Get(id)
	if gerr != nil {
		return none(false, gerr)
	}
	defer inst.poll() // a blocking call may have reached the deadline or been cut
	w := netWait(r, r.limits.net.IOTimeout, timeoutNS)
	nonblock := flags&protocol.NetReadNonblock != 0
	if into {
		dst := frame[:min(len(frame), max, gnet.MaxRecv)]
		n, eof, gerr := c.ReadInto(dst, w, nonblock)
		if n == 0 {
			return none(eof, gerr)
		}
		out := make([]byte, 8)
		binary.LittleEndian.PutUint64(out, uint64(n))
		return encodedFrame(out)
	}
	if !nonblock && max > 0 {
		// Read by this goroutine into a buffer of the instance, which host_take copies from
		// right after this call.
		if n := min(max, gnet.MaxRecv); cap(inst.netBuf) < n {
			inst.netBuf = make([]byte, n)
		}
		n, eof, gerr, ok := c.ReadDirect(inst.netBuf[:min(max, gnet.MaxRecv)], w)
		if ok {
			if n == 0 {
				return none(eof, gerr)
			}
			return responseParts{inst.netBuf[:n]}
		}
	}
	parts, eof, gerr := c.RecvPieces(max, w, nonblock)
	if len(parts) == 0 {
		return none(eof, gerr)
	}
	return responseParts(parts)
}
