package net

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Conn is one guest connection. Received bytes are read ahead by a reader goroutine into a
// buffer of at most MaxPendingRead bytes; bytes to send are queued (at most MaxPendingWrite)
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
	rbuf       []byte
	rerr       error // the reader's final error (io.EOF at the end), after rbuf is drained
	reading    bool  // the reader goroutine runs
	pause      bool  // Upgrade asks the reader to stop
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
	if c.reading || c.closed || c.rerr != nil {
		return
	}
	c.reading = true
	c.readerDone = make(chan struct{})
	go c.readLoop(c.raw, c.readerDone)
}

func (c *Conn) readLoop(raw net.Conn, done chan struct{}) {
	defer close(done)
	buf := make([]byte, readChunk)
	for {
		c.mu.Lock()
		for len(c.rbuf) >= MaxPendingRead && !c.closed && !c.pause {
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
		n, err := raw.Read(buf)
		c.mu.Lock()
		if c.resp != nil && (n > 0 || err != nil) && !(c.pause && err != nil) {
			// Echo protection: real secret values never reach the guest.
			c.rbuf = append(c.rbuf, c.resp.feed(buf[:n], err != nil)...)
		} else if n > 0 {
			c.rbuf = append(c.rbuf, buf[:n]...)
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

// Readable reports whether Recv would return at once (data, end of stream or an error).
func (c *Conn) Readable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startReader()
	return len(c.rbuf) > 0 || c.rerr != nil || c.closed
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

// RecvInto is Recv appending the data to dst (which it returns), so that a caller can receive
// straight into the frame it answers with.
func (c *Conn) RecvInto(dst []byte, max int, w Wait, nonblock bool) (data []byte, eof bool, gerr *Error) {
	if max <= 0 {
		return dst, false, nil
	}
	if max > MaxRecv {
		max = MaxRecv
	}
	var timer <-chan time.Time
	var stop func()
	c.mu.Lock()
	c.startReader()
	for {
		if len(c.rbuf) > 0 {
			n := min(max, len(c.rbuf))
			data = append(dst, c.rbuf[:n]...)
			c.rbuf = c.rbuf[n:]
			if len(c.rbuf) == 0 {
				c.rbuf = nil
			}
			c.mu.Unlock()
			signal(c.rspace)
			if stop != nil {
				stop()
			}
			return data, false, nil
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
	if len(c.rbuf) > 0 {
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
		c.rbuf = nil
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
	c.rbuf, c.wq = nil, nil
	lingered := c.closing
	c.mu.Unlock()
	_ = raw.Close()
	if lingered {
		c.set.lingered(c)
	}
	c.set.notify()
	return false
}
