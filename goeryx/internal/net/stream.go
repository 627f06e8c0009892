package net

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Conn is one guest connection. Received bytes are read ahead by a reader goroutine into a
// queue of at most MaxPendingRead bytes (pieces of the buffers the reader read into: they are
// handed to the guest without another copy); bytes to send are queued (at most MaxPendingWrite)
// and written by a writer goroutine with the I/O timeout. Both start on first use, so that a
// TLS upgrade (wrap_socket after connect) finds the plain connection untouched.
type Conn struct {
	set     *Set
	id      int64
	host    string // the normalised connect host
	peer    string
	version string // negotiated TLS version ("" for plain TCP)
	alpn    string

	mu         sync.Mutex
	raw        net.Conn
	rq         [][]byte // received pieces, oldest first; never written again once queued
	rlen       int      // bytes in rq
	rerr       error    // the reader's final error (io.EOF at the end), after rq is drained
	reading    bool     // the reader goroutine runs
	direct     bool     // the guest goroutine has read the connection itself (readDirect)
	upgrading  bool     // a TLS handshake is in progress (Upgrade)
	pause      bool     // Upgrade asks the reader to stop
	readerDone chan struct{}
	wq         []byte
	werr       *Error
	writing    bool // the writer goroutine runs
	inWrite    bool // the writer is inside Write
	shutWR     bool // send side shut down: CloseWrite once the queue is drained
	shutDone   bool
	closing    bool // closed by the guest: flush the queue, then close
	closed     bool
	done       chan struct{} // closed when the connection closes

	// Secrets on the wire (nil without secrets): req is used by Send only, resp by the reader.
	req  *requestRewriter
	resp *responseRewriter

	readable chan struct{} // cap 1: data, EOF or an error arrived
	rspace   chan struct{} // cap 1: the guest took received data
	wdata    chan struct{} // cap 1: the guest queued data
	wspace   chan struct{} // cap 1: the writer made room
}

func newConn(s *Set, raw net.Conn, host string) *Conn {
	c := &Conn{set: s, raw: raw, host: host, peer: raw.RemoteAddr().String(), done: make(chan struct{}),
		readable: make(chan struct{}, 1), rspace: make(chan struct{}, 1),
		wdata: make(chan struct{}, 1), wspace: make(chan struct{}, 1)}
	c.resetRewriters()
	return c
}

// resetRewriters starts the HTTP rewriting afresh (a new connection, or TLS just started).
func (c *Conn) resetRewriters() {
	o := c.set.opts
	if len(o.Secrets) == 0 {
		return
	}
	methods := &methodQueue{}
	c.req = &requestRewriter{secrets: o.Secrets, host: c.host, allowed: o.AllowedHosts, methods: methods}
	c.resp = &responseRewriter{rep: replacer{secrets: o.Secrets}, methods: methods}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Host is the normalised host the connection was made to.
func (c *Conn) Host() string { return c.host }

// Version is the negotiated TLS version ("TLSv1.3"), or "" for plain TCP.
func (c *Conn) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return "TLS"
}

// handshake runs the TLS client handshake on the connection (no goroutine uses it yet).
func (c *Conn) handshake(ctx context.Context, name string) *Error {
	tc := tls.Client(c.raw, c.set.tlsConfig(name))
	if err := tc.HandshakeContext(ctx); err != nil {
		return classifyTLS(err)
	}
	st := tc.ConnectionState()
	c.mu.Lock()
	c.raw = tc
	c.version = versionName(st.Version)
	c.alpn = st.NegotiatedProtocol
	c.mu.Unlock()
	return nil
}

func (c *Conn) startReader() { // c.mu held
	if c.reading || c.closed || c.rerr != nil || c.upgrading {
		return
	}
	c.reading = true
	if c.direct {
		_ = c.raw.SetReadDeadline(time.Time{}) // what a direct read left
	}
	c.readerDone = make(chan struct{})
	go c.readLoop(c.raw, c.readerDone)
}

func (c *Conn) readLoop(raw net.Conn, done chan struct{}) {
	defer close(done)
	// The kernel's bytes go straight into cur; what was read is queued as a piece of it and
	// the rest of cur is read into next, so a piece is never written again once queued.
	var cur []byte
	for {
		c.mu.Lock()
		for c.rlen >= MaxPendingRead && !c.closed && !c.pause {
			c.mu.Unlock()
			select {
			case <-c.rspace:
			case <-c.done:
			}
			c.mu.Lock()
		}
		if c.closed || c.pause {
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if len(cur) < minRead {
			cur = make([]byte, readChunk)
		}
		n, err := raw.Read(cur)
		c.mu.Lock()
		if c.resp != nil && (n > 0 || err != nil) && !(c.pause && err != nil) {
			// Echo protection: real secret values never reach the guest. feed returns new
			// bytes, so cur is read into again.
			c.push(c.resp.feed(cur[:n], err != nil))
			if c.resp.ended && err == nil {
				// A close-delimited body ended (secrets.go): the guest's stream ends there.
				err = io.EOF
			}
		} else if n > 0 {
			c.push(cur[:n:n])
			cur = cur[n:]
		}
		if err != nil {
			if c.pause && errors.Is(err, os.ErrDeadlineExceeded) {
				c.mu.Unlock()
				return
			}
			c.rerr = err
			c.reading = false
		}
		c.mu.Unlock()
		signal(c.readable)
		c.set.notify()
		if err != nil {
			return
		}
	}
}

// push queues received bytes (c.mu held).
func (c *Conn) push(p []byte) {
	if len(p) > 0 {
		c.rq = append(c.rq, p)
		c.rlen += len(p)
	}
}

// take removes up to max queued bytes (c.mu held): the pieces themselves, not copies.
func (c *Conn) take(max int, out [][]byte) [][]byte {
	for max > 0 && len(c.rq) > 0 {
		p := c.rq[0]
		if len(p) > max {
			out = append(out, p[:max:max])
			c.rq[0] = p[max:]
			c.rlen -= max
			break
		}
		out = append(out, p)
		c.rq[0] = nil
		c.rq = c.rq[1:]
		c.rlen -= len(p)
		max -= len(p)
	}
	if len(c.rq) == 0 {
		c.rq = nil
	}
	return out
}

// Readable reports whether Recv would return at once (data, end of stream or an error).
func (c *Conn) Readable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startReader()
	return c.rlen > 0 || c.rerr != nil || c.closed
}

// Writable reports whether the send queue has room.
func (c *Conn) Writable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.wq) < MaxPendingWrite || c.werr != nil || c.closed
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Recv returns up to max received bytes, blocking until some arrive, the stream ends (eof),
// or w ends (a timeout). With nonblock it returns nothing instead of blocking.
func (c *Conn) Recv(max int, w Wait, nonblock bool) (data []byte, eof bool, gerr *Error) {
	if max <= 0 {
		return nil, false, nil
	}
	return c.RecvInto(nil, max, w, nonblock)
}

// RecvInto is Recv appending the data to dst (which it returns).
func (c *Conn) RecvInto(dst []byte, max int, w Wait, nonblock bool) (data []byte, eof bool, gerr *Error) {
	parts, eof, gerr := c.RecvPieces(max, w, nonblock)
	for _, p := range parts {
		dst = append(dst, p...)
	}
	if len(parts) == 0 {
		return nil, eof, gerr
	}
	return dst, false, nil
}

// ReadInto copies up to len(dst) received bytes into dst (the guest's own buffer: no
// intermediate copy), blocking like Recv.
func (c *Conn) ReadInto(dst []byte, w Wait, nonblock bool) (n int, eof bool, gerr *Error) {
	if len(dst) > MaxRecv {
		dst = dst[:MaxRecv]
	}
	if !nonblock {
		if n, eof, gerr, ok := c.ReadDirect(dst, w); ok {
			return n, eof, gerr
		}
	}
	parts, eof, gerr := c.RecvPieces(len(dst), w, nonblock)
	for _, p := range parts {
		n += copy(dst[n:], p)
	}
	return n, eof, gerr
}

// ReadDirect reads into dst from the guest's goroutine itself, without the reader goroutine:
// the kernel's bytes go straight to dst, and no goroutine hand-off delays them. Only while
// nothing was read ahead and no reader runs (select, asyncio or echo protection start one,
// and from then on the connection is read by it); ok is false otherwise. w's deadline
// bounds the read; w.Wake and close() cut it.
func (c *Conn) ReadDirect(dst []byte, w Wait) (n int, eof bool, gerr *Error, ok bool) {
	c.mu.Lock()
	if c.upgrading {
		c.mu.Unlock()
		return 0, false, errHandshaking, true
	}
	if c.reading || c.rlen > 0 || c.rerr != nil || c.closed || c.resp != nil || c.pause || len(dst) == 0 {
		c.mu.Unlock()
		return 0, false, nil, false
	}
	c.direct = true
	raw := c.raw
	c.mu.Unlock()
	_ = raw.SetReadDeadline(w.Until)
	if w.Wake != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-w.Wake:
				_ = raw.SetReadDeadline(time.Unix(1, 0))
			case <-stop:
			}
		}()
	}
	n, err := raw.Read(dst)
	if err == nil || n > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, false, nil, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return n, false, ErrClosed, true
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, false, ErrTimeout, true // not final: the connection stays usable
	}
	c.rerr = err // final: what every later read reports
	if n > 0 {
		return n, false, nil, true
	}
	if isEOF(err) {
		return 0, true, nil, true
	}
	return 0, false, classify(err), true
}

// RecvPieces is Recv returning the received pieces themselves (at most max bytes in all, and
// MaxRecv): they are never written again, the caller may hand them on without copying.
func (c *Conn) RecvPieces(max int, w Wait, nonblock bool) (parts [][]byte, eof bool, gerr *Error) {
	if max <= 0 {
		return nil, false, nil
	}
	if max > MaxRecv {
		max = MaxRecv
	}
	var timer <-chan time.Time
	var stop func()
	c.mu.Lock()
	if c.upgrading {
		c.mu.Unlock()
		return nil, false, errHandshaking
	}
	c.startReader()
	for {
		if c.rlen > 0 {
			parts = c.take(max, nil)
			c.mu.Unlock()
			signal(c.rspace)
			if stop != nil {
				stop()
			}
			return parts, false, nil
		}
		if c.rerr != nil || c.closed {
			err := c.rerr
			closed := c.closed
			c.mu.Unlock()
			if stop != nil {
				stop()
			}
			if closed && err == nil {
				return nil, false, ErrClosed
			}
			if isEOF(err) {
				return nil, true, nil
			}
			return nil, false, classify(err)
		}
		c.mu.Unlock()
		if nonblock {
			return nil, false, nil
		}
		if stop == nil {
			timer, stop = w.timer()
		}
		select {
		case <-c.readable:
		case <-timer:
			stop()
			return nil, false, ErrTimeout
		case <-w.Wake:
			stop()
			return nil, false, ErrTimeout
		case <-c.done:
		}
		c.mu.Lock()
	}
}

// errHandshaking answers reads and sends while loop.start_tls's handshake runs (the guest's
// transport pauses meanwhile; only a confused or hostile guest gets it).
var errHandshaking = &Error{Type: "OSError", Errno: "EAGAIN", Message: "a TLS handshake is in progress on the connection"}

var errBrokenPipe = &Error{Type: "BrokenPipeError", Errno: "EPIPE", Message: "Broken pipe"}

// Send queues up to len(data) bytes (at most MaxSend) and returns how many it took, blocking
// while the queue is full until w ends (a timeout). With nonblock it returns 0 instead.
func (c *Conn) Send(data []byte, w Wait, nonblock bool) (int, *Error) {
	if len(data) > MaxSend {
		data = data[:MaxSend]
	}
	var timer <-chan time.Time
	var stop func()
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	c.mu.Lock()
	if c.upgrading {
		c.mu.Unlock()
		return 0, errHandshaking
	}
	for {
		if c.werr != nil {
			err := c.werr
			c.mu.Unlock()
			return 0, err
		}
		if c.closed || c.closing || c.shutWR {
			c.mu.Unlock()
			return 0, errBrokenPipe
		}
		if len(data) == 0 {
			c.mu.Unlock()
			return 0, nil
		}
		if free := MaxPendingWrite - len(c.wq); free > 0 {
			n := min(free, len(data))
			out := data[:n]
			if c.req != nil {
				var gerr *Error
				if out, gerr = c.req.write(out); gerr != nil {
					// Refused (a secret for another host, HTTP/2): nothing of it is sent.
					c.mu.Unlock()
					c.close(false)
					return 0, gerr
				}
			}
			if len(c.wq) == 0 && !c.inWrite {
				// Nothing is queued: write what the socket takes now, without waiting and
				// without a hand-off to the writer goroutine; queue the rest.
				out = out[c.writeNow(out):]
				if c.werr != nil {
					err := c.werr
					c.mu.Unlock()
					return 0, err
				}
				if len(out) == 0 {
					c.mu.Unlock()
					return n, nil
				}
			}
			c.wq = append(c.wq, out...)
			if !c.writing {
				c.writing = true
				go c.writeLoop()
			}
			c.mu.Unlock()
			signal(c.wdata)
			return n, nil
		}
		c.mu.Unlock()
		if nonblock {
			return 0, nil
		}
		if stop == nil {
			timer, stop = w.timer()
		}
		select {
		case <-c.wspace:
		case <-timer:
			return 0, ErrTimeout
		case <-w.Wake:
			return 0, ErrTimeout
		case <-c.done:
		}
		c.mu.Lock()
	}
}

// writeNow makes one non-blocking write of p on a plain TCP connection (c.mu held) and
// returns how much the kernel took; 0 for TLS (its writes go through the writer goroutine).
// A failure is recorded in c.werr.
func (c *Conn) writeNow(p []byte) int {
	tc, ok := c.raw.(*net.TCPConn)
	if !ok {
		return 0
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, err := syscall.Write(int(fd), p[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				if err != syscall.EAGAIN {
					werr = os.NewSyscallError("write", err)
				}
				break
			}
			n += k
		}
		return true // one attempt: never wait here
	}); err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		c.werr = classify(werr)
		if isEOF(werr) || errors.Is(werr, net.ErrClosed) || errors.Is(werr, syscall.EPIPE) {
			c.werr = errBrokenPipe
		}
		return 0
	}
	return n
}

func (c *Conn) writeLoop() {
	io := c.set.opts.IOTimeout
	for {
		c.mu.Lock()
		for len(c.wq) == 0 && !c.closed {
			if c.closing {
				c.mu.Unlock()
				c.close(false)
				return
			}
			if c.shutWR && !c.shutDone {
				c.shutDone = true
				if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
			}
			c.mu.Unlock()
			select {
			case <-c.wdata:
			case <-c.done:
			}
			c.mu.Lock()
		}
		if c.closed {
			c.mu.Unlock()
			return
		}
		chunk, raw := c.wq, c.raw
		c.inWrite = true
		c.mu.Unlock()
		if io > 0 {
			_ = raw.SetWriteDeadline(time.Now().Add(io))
		}
		n, err := raw.Write(chunk)
		c.mu.Lock()
		c.inWrite = false
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.wq = c.wq[n:]
		if len(c.wq) == 0 {
			c.wq = nil
		}
		if err != nil && c.werr == nil {
			c.werr = classify(err)
			if isEOF(err) || errors.Is(err, net.ErrClosed) {
				c.werr = errBrokenPipe
			}
		}
		closing := c.closing
		c.mu.Unlock()
		signal(c.wspace)
		c.set.notify()
		if err != nil {
			if closing {
				c.close(false)
			}
			return
		}
	}
}

// Upgrade starts TLS on a connected plain connection (ssl.wrap_socket after connect).
func (c *Conn) Upgrade(name string, w Wait) *Error {
	c.mu.Lock()
	if c.version != "" {
		c.mu.Unlock()
		return &Error{Type: "SSLError", Message: "the connection already uses TLS"}
	}
	if c.upgrading {
		c.mu.Unlock()
		return &Error{Type: "SSLError", Message: "a TLS handshake is already in progress on the connection"}
	}
	c.upgrading = true
	defer func() {
		c.mu.Lock()
		c.upgrading = false
		c.mu.Unlock()
	}()
	if c.reading {
		c.pause = true
		raw, done := c.raw, c.readerDone
		c.mu.Unlock()
		_ = raw.SetReadDeadline(time.Now())
		<-done
		_ = raw.SetReadDeadline(time.Time{})
		c.mu.Lock()
		c.reading, c.pause = false, false
	}
	if c.rlen > 0 {
		c.mu.Unlock()
		return &Error{Type: "SSLError", Message: "cannot start TLS: received data has not been read"}
	}
	if c.rerr != nil {
		err := c.rerr
		c.mu.Unlock()
		if isEOF(err) {
			return &Error{Type: "SSLEOFError", Message: "EOF occurred in violation of protocol"}
		}
		return classify(err)
	}
	timer, stop := w.timer()
	defer stop()
	for len(c.wq) > 0 || c.inWrite {
		c.mu.Unlock()
		select {
		case <-c.wspace:
		case <-timer:
			return ErrTimeout
		case <-w.Wake:
			return ErrTimeout
		case <-c.done:
			return ErrClosed
		}
		c.mu.Lock()
	}
	if c.werr != nil || c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.direct {
		_ = c.raw.SetReadDeadline(time.Time{}) // what a direct read left
	}
	c.mu.Unlock()
	ctx, cancel := waitContext(c.set.ctx, w)
	defer cancel()
	if gerr := c.handshake(ctx, name); gerr != nil {
		return gerr
	}
	c.mu.Lock()
	c.resetRewriters()
	c.mu.Unlock()
	return nil
}

// waitContext is a context that ends when w does.
func waitContext(parent context.Context, w Wait) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	if !w.Until.IsZero() {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, w.Until)
		prev := cancel
		cancel = func() { c2(); prev() }
	}
	if w.Wake != nil {
		go func() {
			select {
			case <-w.Wake:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// Shutdown shuts the send side (SHUT_WR) once queued data is sent; SHUT_RD only stops
// reading (the guest sees the end of the stream).
func (c *Conn) Shutdown(how int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if how == 0 || how == 2 { // SHUT_RD
		c.rq, c.rlen = nil, 0
		if c.rerr == nil {
			c.rerr = io.EOF
		}
	}
	if how == 1 || how == 2 { // SHUT_WR
		c.shutWR = true
		if !c.writing {
			c.writing = true
			go c.writeLoop()
		}
		signal(c.wdata)
	}
}

// close closes the connection. graceful lets the writer send what is queued first (bounded
// by the I/O timeout; the run's end cuts it); it reports whether the connection lingers.
func (c *Conn) close(graceful bool) (lingering bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if graceful && c.writing && (len(c.wq) > 0 || c.inWrite) {
		c.closing = true
		c.mu.Unlock()
		signal(c.wdata)
		return true
	}
	c.closed = true
	close(c.done)
	raw := c.raw
	c.rq, c.rlen, c.wq = nil, 0, nil
	lingered := c.closing
	c.mu.Unlock()
	_ = raw.Close()
	if lingered {
		c.set.lingered(c)
	}
	c.set.notify()
	return false
}
