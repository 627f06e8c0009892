package net

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on what a guest can make the host hold.
const (
	// MaxPendingRead is how many received bytes a connection buffers ahead of the guest: the
	// reader goroutine stops reading (TCP flow control pushes back on the peer) until the
	// guest takes some.
	MaxPendingRead = 256 << 10
	// MaxPendingWrite is how many bytes the guest may have queued for sending on one
	// connection; a send blocks (up to its timeout) while the queue is full.
	MaxPendingWrite = 256 << 10
	// MaxRecv bounds one read (the response frame of one host call).
	MaxRecv = 1 << 20
	// MaxSend bounds the data of one send call.
	MaxSend = 1 << 20
	// HardMaxConnections bounds a run's open connections when max_connections is 0 ("no
	// limit"): the host's descriptors and buffers are finite.
	HardMaxConnections = 512
	// readChunk is the size of the reader's buffers; a new one is taken when less than
	// minRead is left of the current one.
	readChunk = 128 << 10
	minRead   = 16 << 10
)

// Resolver looks up the addresses of a name (net.DefaultResolver, or a test's).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options are the network settings of a sandbox: one value shared by all its runs.
type Options struct {
	Policy         *Policy
	MaxConnections int // 0: HardMaxConnections
	ConnectTimeout time.Duration
	IOTimeout      time.Duration
	// RootCAs are the trusted roots: the system's plus NetConfig's (nil: the system's).
	RootCAs  *x509.CertPool
	Resolver Resolver // nil: net.DefaultResolver
	// Dial connects to one checked address (nil: a net.Dialer).
	Dial func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
	// Secrets are substituted in HTTP/1.x request headers and protected in what the guest
	// reads (secrets.go); AllowedHosts is NetConfig's list, for secrets without their own.
	Secrets      []Secret
	AllowedHosts []string
}

// RootPool returns the system roots plus extra DER certificates, or nil (crypto/tls then
// uses the system roots) when there are none: copying the system pool costs a new sandbox
// more than the rest of its start.
func RootPool(extraDER [][]byte) (*x509.CertPool, error) {
	if len(extraDER) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, der := range extraDER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// Wait bounds a blocking operation: it returns a timeout at Until (zero: never) and at once
// when Wake is closed (the run is cancelled or stopped).
type Wait struct {
	Until time.Time
	Wake  <-chan struct{}
}

func (w Wait) timer() (<-chan time.Time, func()) {
	if w.Until.IsZero() {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(w.Until))
	return t.C, func() { t.Stop() }
}

// Set is the connections of one run. Its methods are called from the guest goroutine; the
// connections' reader and writer goroutines only touch their own Conn.
type Set struct {
	opts  *Options
	conns map[int64]*Conn
	// lingering are connections the guest closed that still send their queued data; they
	// keep their slot until they are done.
	lingering map[*Conn]struct{}
	// opening counts asynchronous connects in progress (they hold a connection slot).
	opening int
	closed  bool
	// Notify receives a value (without blocking the sender) when a connection becomes
	// readable or writable or an asynchronous connect ends: OP_WAIT selects on it.
	Notify chan struct{}
	// connects delivers the outcome of asynchronous connects and handshakes; made by the
	// first (on the guest's goroutine), so that a run without them allocates nothing.
	connects chan ConnectResult
	mu       sync.Mutex // guards conns for the asynchronous connects and CloseAll
	// ctx ends when the run ends: connects in progress stop.
	ctx    context.Context
	cancel context.CancelFunc
}

// nextID numbers connections across runs and sandboxes: a socket object a Session keeps
// from an earlier run never names a connection of a later one.
var nextID atomic.Int64

// NewSet starts the connection set of a run.
func NewSet(o *Options) *Set {
	s := &Set{opts: o, conns: map[int64]*Conn{}, lingering: map[*Conn]struct{}{}, Notify: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

func (s *Set) notify() {
	select {
	case s.Notify <- struct{}{}:
	default:
	}
}

// ConnectRequest is a guest's connect.
type ConnectRequest struct {
	Host       string
	Port       int
	TLS        bool
	ServerName string        // SNI and verified name; "" means Host
	Timeout    time.Duration // the guest's socket timeout; 0: the host's
}

// ConnectResult is the outcome of a connect.
type ConnectResult struct {
	ID      int64  `json:"id"`
	Peer    string `json:"peer,omitempty"` // the address connected to
	Version string `json:"version,omitempty"`
	ALPN    string `json:"alpn,omitempty"`
	Err     *Error `json:"error,omitempty"`
}

func (s *Set) limit() int {
	if m := s.opts.MaxConnections; m > 0 && m < HardMaxConnections {
		return m
	}
	return HardMaxConnections
}

// reserve takes a connection slot (the caller holds s.mu).
func (s *Set) reserve() *Error {
	if s.closed {
		return ErrClosed
	}
	if len(s.conns)+len(s.lingering)+s.opening >= s.limit() {
		if s.opts.MaxConnections > 0 && s.opts.MaxConnections <= HardMaxConnections {
			return permission("connection limit reached (max_connections=%d)", s.opts.MaxConnections)
		}
		return permission("connection limit reached (the host allows at most %d connections at once)", HardMaxConnections)
	}
	s.opening++
	return nil
}

// Connect checks the policy, resolves, connects and (for TLS) handshakes, blocking until done
// or w ends. The connection counts against the limit from the start.
func (s *Set) Connect(req ConnectRequest, w Wait) ConnectResult {
	norm, lit, perr := s.precheck(req)
	if perr != nil {
		return ConnectResult{Err: perr}
	}
	s.mu.Lock()
	perr = s.reserve()
	s.mu.Unlock()
	if perr != nil {
		return ConnectResult{Err: perr}
	}
	return s.finish(s.dial(req, norm, lit, w))
}

// ConnectAsync starts a connect whose outcome Events reports; the returned id is the
// connection's. Refusals that need no I/O are returned at once.
func (s *Set) ConnectAsync(req ConnectRequest) ConnectResult {
	norm, lit, perr := s.precheck(req)
	if perr != nil {
		return ConnectResult{Err: perr}
	}
	s.mu.Lock()
	perr = s.reserve()
	id := nextID.Add(1)
	s.mu.Unlock()
	if perr != nil {
		return ConnectResult{Err: perr}
	}
	s.makeConnects()
	go func() {
		c, cerr := s.dial(req, norm, lit, Wait{})
		res := s.finishID(id, c, cerr)
		s.connects <- res // buffered: one slot per possible connection
		s.notify()
	}()
	return ConnectResult{ID: id}
}

func (s *Set) precheck(req ConnectRequest) (string, netip.Addr, *Error) {
	if req.Port <= 0 || req.Port > 65535 {
		return "", netip.Addr{}, &Error{Type: "OSError", Errno: "EINVAL", Message: "port must be 1-65535"}
	}
	norm, lit, ok := Normalise(req.Host)
	if !ok {
		return "", netip.Addr{}, ErrNotFound
	}
	if perr := s.opts.Policy.CheckName(norm); perr != nil {
		return "", netip.Addr{}, perr
	}
	return norm, lit, nil
}

func (s *Set) finish(c *Conn, err *Error) ConnectResult {
	return s.finishID(nextID.Add(1), c, err)
}

func (s *Set) finishID(id int64, c *Conn, err *Error) ConnectResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opening--
	if err != nil {
		return ConnectResult{ID: id, Err: err}
	}
	if s.closed {
		c.raw.Close()
		return ConnectResult{ID: id, Err: ErrClosed}
	}
	c.id = id
	s.conns[id] = c
	return ConnectResult{ID: id, Peer: c.peer, Version: c.version, ALPN: c.alpn}
}

// dial resolves, checks and connects (§3.3 steps 4 and 5), then handshakes TLS.
func (s *Set) dial(req ConnectRequest, norm string, lit netip.Addr, w Wait) (*Conn, *Error) {
	timeout := s.opts.ConnectTimeout
	if req.Timeout > 0 && (timeout <= 0 || req.Timeout < timeout) {
		timeout = req.Timeout
	}
	deadline := w.Until
	if timeout > 0 {
		if d := time.Now().Add(timeout); deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
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
	var addrs []netip.Addr
	if lit.IsValid() {
		addrs = []netip.Addr{lit}
	} else {
		r := s.opts.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		var err error
		addrs, err = r.LookupNetIP(ctx, "ip", norm)
		if err != nil {
			return nil, classify(err)
		}
		if len(addrs) == 0 {
			return nil, ErrNotFound
		}
	}
	// IPv4 first, each family in the resolver's order: what is reported and tried first is
	// deterministic.
	sort.SliceStable(addrs, func(i, j int) bool { return addrs[i].Unmap().Is4() && !addrs[j].Unmap().Is4() })
	for _, a := range addrs {
		if perr := s.opts.Policy.CheckAddr(norm, a); perr != nil {
			return nil, perr
		}
	}
	dial := s.opts.Dial
	if dial == nil {
		dial = func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ap.String())
		}
	}
	var raw net.Conn
	var lastErr error
	for _, a := range addrs {
		// Only checked addresses are dialled: the name is never resolved again.
		conn, err := dial(ctx, netip.AddrPortFrom(a.Unmap().WithZone(""), uint16(req.Port)))
		if err == nil {
			raw = conn
			break
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if raw == nil {
		return nil, classify(lastErr)
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := newConn(s, raw, norm)
	if req.TLS {
		name := req.ServerName
		if name == "" {
			name = req.Host
		}
		if perr := c.handshake(ctx, name); perr != nil {
			raw.Close()
			return nil, perr
		}
	}
	return c, nil
}

// tlsConfig is the client configuration for server name name (SNI and verification).
func (s *Set) tlsConfig(name string) *tls.Config {
	n, _, ok := Normalise(name)
	if ok && len(n) > 2 && n[0] == '[' {
		n = n[1 : len(n)-1] // an IPv6 literal is verified against the certificate's IP SANs
	}
	if !ok {
		n = name
	}
	return &tls.Config{ServerName: n, RootCAs: s.opts.RootCAs, NextProtos: []string{"http/1.1"},
		MinVersion: tls.VersionTLS12}
}

// Get returns an open connection of the run.
func (s *Set) Get(id int64) (*Conn, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[id]
	if !ok {
		return nil, ErrClosed
	}
	return c, nil
}

// Close closes one connection: queued data is still sent (bounded by the I/O timeout and the
// run), its slot is free at once.
func (s *Set) Close(id int64) {
	s.mu.Lock()
	c, ok := s.conns[id]
	delete(s.conns, id)
	if ok {
		s.lingering[c] = struct{}{} // until close has decided
	}
	s.mu.Unlock()
	if ok && !c.close(true) {
		s.mu.Lock()
		delete(s.lingering, c)
		s.mu.Unlock()
	}
}

// closed is called when a lingering connection finally closes.
func (s *Set) lingered(c *Conn) {
	s.mu.Lock()
	delete(s.lingering, c)
	s.mu.Unlock()
}

// CloseAll closes every connection at once (the run ended). Connects in progress fail.
func (s *Set) CloseAll() {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	conns := s.conns
	s.conns = map[int64]*Conn{}
	for c := range s.lingering {
		conns[-1-int64(len(conns))] = c
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(false)
	}
}

// Len is the number of open connections.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// UpgradeAsync starts TLS on c (Upgrade) in the background, bounded by timeout (0: none) and
// the run; the outcome is delivered with the connects (TakeConnects), under c's id, and a
// failed upgrade closes the connection.
func (s *Set) UpgradeAsync(c *Conn, name string, timeout time.Duration) {
	w := Wait{}
	if timeout > 0 {
		w.Until = time.Now().Add(timeout)
	}
	s.makeConnects()
	go func() {
		res := ConnectResult{ID: c.id}
		if gerr := c.Upgrade(name, w); gerr != nil {
			s.Close(c.id)
			res.Err = gerr
		} else {
			c.mu.Lock()
			res.Version, res.ALPN = c.version, c.alpn
			c.mu.Unlock()
		}
		select {
		case s.connects <- res:
			s.notify()
		case <-s.ctx.Done(): // the run ended: nobody will take it
		}
	}()
}

func (s *Set) makeConnects() {
	if s.connects == nil {
		s.connects = make(chan ConnectResult, HardMaxConnections) // one slot per possible connection
	}
}

// ConnectsPending reports whether asynchronous connects ended that TakeConnects would return.
func (s *Set) ConnectsPending() bool { return len(s.connects) > 0 }

// TakeConnects returns the asynchronous connects that ended since the last call.
func (s *Set) TakeConnects() []ConnectResult {
	var out []ConnectResult
	for {
		select {
		case r := <-s.connects:
			out = append(out, r)
		default:
			return out
		}
	}
}
