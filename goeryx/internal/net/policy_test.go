package net

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var defaultBlocked = []string{"localhost", "*.localhost", "127.*", "10.*",
	"172.16.*", "172.17.*", "172.18.*", "172.19.*", "172.20.*", "172.21.*", "172.22.*", "172.23.*",
	"172.24.*", "172.25.*", "172.26.*", "172.27.*", "172.28.*", "172.29.*", "172.30.*", "172.31.*",
	"192.168.*", "169.254.*", "[::1]"}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"*.example.com", "api.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.com", "a.com.evil.com", true},
		{"l*l*t", "localhost", true},
		{"*host", "localhost", true},
		{"localhos", "localhost", false},
		{"[l]ocalhost", "localhost", false},
		{"[::1]", "[::1]", true},
		{"*", "", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"**", "x", true},
	} {
		assert.Equal(t, c.want, Match(c.p, c.s), "%q vs %q", c.p, c.s)
	}
	// Full backtracking without exponential cost.
	start := time.Now()
	assert.False(t, Match(strings.Repeat("*a", 100)+"b", strings.Repeat("a", 250)))
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestNormalise(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM.":     "example.com",
		"::1":              "[::1]",
		"[::1]":            "[::1]",
		"[0:0::1]":         "[::1]",
		"::FFFF:127.0.0.1": "[::ffff:127.0.0.1]",
		"127.0.0.1":        "127.0.0.1",
		"127.1":            "127.1", // a name to resolve, never an address here
	} {
		got, _, ok := Normalise(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", ".", "a b", "a\x00b", "fe80::1%eth0", "[1.2.3.4]", strings.Repeat("a", 254), "ex/ample"} {
		_, _, ok := Normalise(bad)
		assert.False(t, ok, "%q", bad)
	}
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	addrs, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

// dialRecorder records the addresses dialled and refuses them all.
type dialRecorder struct{ dialled []string }

func (d *dialRecorder) dial(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	d.dialled = append(d.dialled, ap.String())
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("refused by the test")}
}

func connectWith(t *testing.T, allowed, blocked []string, res fakeResolver, host string) (ConnectResult, []string) {
	t.Helper()
	d := &dialRecorder{}
	s := NewSet(&Options{Policy: NewPolicy(allowed, blocked), Resolver: res, Dial: d.dial,
		ConnectTimeout: 5 * time.Second, IOTimeout: 5 * time.Second})
	defer s.CloseAll()
	return s.Connect(ConnectRequest{Host: host, Port: 443}, Wait{}), d.dialled
}

func TestPolicyDNSRebinding(t *testing.T) {
	res := fakeResolver{
		"public.example":   {"93.184.216.34"},
		"rebind.example":   {"93.184.216.34", "127.0.0.1"},
		"private.example":  {"10.1.2.3"},
		"mapped.example":   {"::ffff:127.0.0.1"},
		"mapped10.example": {"::ffff:10.0.0.1"},
		"v6lo.example":     {"::1"},
		"ula.example":      {"fd00::1"},
		"cgnat.example":    {"100.64.1.1"},
		"zero.example":     {"0.0.0.0"},
		"link.example":     {"169.254.169.254"},
	}
	for host, addr := range map[string]string{
		"rebind.example":   "127.0.0.1",
		"private.example":  "10.1.2.3",
		"mapped.example":   "127.0.0.1",
		"mapped10.example": "10.0.0.1",
		"v6lo.example":     "::1",
		"ula.example":      "fd00::1",
		"cgnat.example":    "100.64.1.1",
		"zero.example":     "0.0.0.0",
		"link.example":     "169.254.169.254",
	} {
		r, dialled := connectWith(t, nil, defaultBlocked, res, host)
		require.NotNil(t, r.Err, host)
		assert.Equal(t, "PermissionError", r.Err.Type, host)
		assert.Equal(t, "not permitted: host '"+host+"' resolves to blocked address "+addr, r.Err.Message)
		assert.Empty(t, dialled, "nothing is dialled when any address is blocked (%s)", host)
	}
	// A public address passes the checks and only it is dialled.
	r, dialled := connectWith(t, nil, defaultBlocked, res, "public.example")
	require.NotNil(t, r.Err)
	assert.Equal(t, "OSError", r.Err.Type)
	assert.Equal(t, []string{"93.184.216.34:443"}, dialled)
}

func TestPolicyGuards(t *testing.T) {
	res := fakeResolver{"lo.example": {"127.0.0.1"}, "ten.example": {"10.0.0.1"}}
	// allow_localhost: the loopback guard is off, the private one on.
	allowLocal := []string{}
	for _, b := range defaultBlocked {
		if !strings.Contains(b, "localhost") && !strings.HasPrefix(b, "127.") && !strings.Contains(b, "::1") {
			allowLocal = append(allowLocal, b)
		}
	}
	_, dialled := connectWith(t, nil, allowLocal, res, "lo.example")
	assert.Equal(t, []string{"127.0.0.1:443"}, dialled)
	r, _ := connectWith(t, nil, allowLocal, res, "ten.example")
	assert.Equal(t, "PermissionError", r.Err.Type)
	// A custom list without the defaults turns both guards off.
	_, dialled = connectWith(t, nil, []string{"evil.example"}, res, "ten.example")
	assert.Equal(t, []string{"10.0.0.1:443"}, dialled)
	// Only the loopback guard: 127.0.0.1 by address is refused although no pattern matches it.
	r, _ = connectWith(t, nil, []string{"localhost"}, res, "127.0.0.1")
	assert.Equal(t, "not permitted: host '127.0.0.1' resolves to blocked address 127.0.0.1", r.Err.Message)
	r, _ = connectWith(t, nil, []string{"localhost"}, res, "::ffff:127.0.0.1")
	assert.Equal(t, "PermissionError", r.Err.Type)
	// A blocked address pattern applies to the IPv4 form of a mapped address.
	r, _ = connectWith(t, nil, []string{"10.*"}, fakeResolver{"m.example": {"::ffff:10.9.9.9"}}, "m.example")
	assert.Equal(t, "not permitted: host 'm.example' resolves to blocked address 10.9.9.9", r.Err.Message)
}

func TestPolicyNamesAndLists(t *testing.T) {
	res := fakeResolver{"api.example.com": {"93.184.216.34"}}
	r, _ := connectWith(t, nil, defaultBlocked, res, "LOCALHOST.")
	assert.Equal(t, "not permitted: host 'localhost' is blocked", r.Err.Message)
	r, _ = connectWith(t, nil, defaultBlocked, res, "::1")
	assert.Equal(t, "not permitted: host '[::1]' is blocked", r.Err.Message)
	r, _ = connectWith(t, []string{"*.example.org"}, nil, res, "api.example.com")
	assert.Equal(t, "not permitted: host 'api.example.com' is not in the allowed hosts list", r.Err.Message)
	// The allow list is compared with the name only, never with resolved addresses.
	_, dialled := connectWith(t, []string{"*.example.com"}, nil, res, "api.example.com")
	assert.Equal(t, []string{"93.184.216.34:443"}, dialled)
	r, _ = connectWith(t, []string{"93.184.*"}, nil, res, "api.example.com")
	assert.Equal(t, "PermissionError", r.Err.Type)
	r, _ = connectWith(t, nil, nil, res, "nowhere.example")
	assert.Equal(t, &Error{Type: "gaierror", Errno: "EAI_NONAME", Message: "Name or service not known"}, r.Err)
}

// A local TCP server that echoes, for the stream tests.
func echoServer(t *testing.T, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func permissive(max int) *Options {
	return &Options{Policy: NewPolicy(nil, nil), MaxConnections: max,
		ConnectTimeout: 5 * time.Second, IOTimeout: 5 * time.Second}
}

func TestConnectionLimitAndClose(t *testing.T) {
	var open atomic.Int64
	ap := echoServer(t, func(c net.Conn) {
		open.Add(1)
		defer open.Add(-1)
		_, _ = io.Copy(c, c)
		c.Close()
	})
	s := NewSet(permissive(2))
	a := s.Connect(ConnectRequest{Host: "127.0.0.1", Port: int(ap.Port())}, Wait{})
	require.Nil(t, a.Err)
	b := s.Connect(ConnectRequest{Host: "127.0.0.1", Port: int(ap.Port())}, Wait{})
	require.Nil(t, b.Err)
	c := s.Connect(ConnectRequest{Host: "127.0.0.1", Port: int(ap.Port())}, Wait{})
	require.NotNil(t, c.Err)
	assert.Equal(t, "not permitted: connection limit reached (max_connections=2)", c.Err.Message)
	s.Close(a.ID)
	c = s.Connect(ConnectRequest{Host: "127.0.0.1", Port: int(ap.Port())}, Wait{})
	require.Nil(t, c.Err)

	conn, gerr := s.Get(c.ID)
	require.Nil(t, gerr)
	n, gerr := conn.Send([]byte("hello"), Wait{}, false)
	require.Nil(t, gerr)
	assert.Equal(t, 5, n)
	data, eof, gerr := conn.Recv(100, Wait{Until: time.Now().Add(5 * time.Second)}, false)
	require.Nil(t, gerr)
	assert.False(t, eof)
	assert.Equal(t, "hello", string(data))

	// A read that waits past its bound times out; a wake cuts it at once.
	_, _, gerr = conn.Recv(100, Wait{Until: time.Now().Add(50 * time.Millisecond)}, false)
	assert.Equal(t, ErrTimeout, gerr)
	wake := make(chan struct{})
	go func() { time.Sleep(50 * time.Millisecond); close(wake) }()
	start := time.Now()
	_, _, gerr = conn.Recv(100, Wait{Wake: wake}, false)
	assert.Equal(t, ErrTimeout, gerr)
	assert.Less(t, time.Since(start), 5*time.Second)

	s.CloseAll()
	assert.Eventually(t, func() bool { return open.Load() == 0 }, 5*time.Second, 10*time.Millisecond,
		"the run's end closes every connection")
	_, _, gerr = conn.Recv(10, Wait{}, false)
	assert.Equal(t, ErrClosed, gerr)
}

func TestSendQueueIsBounded(t *testing.T) {
	stall := make(chan struct{})
	ap := echoServer(t, func(c net.Conn) { <-stall; c.Close() }) // never reads
	defer close(stall)
	s := NewSet(permissive(1))
	defer s.CloseAll()
	r := s.Connect(ConnectRequest{Host: "127.0.0.1", Port: int(ap.Port())}, Wait{})
	require.Nil(t, r.Err)
	conn, _ := s.Get(r.ID)
	chunk := make([]byte, MaxSend)
	total := 0
	var gerr *Error
	for total < 256<<20 {
		var n int
		n, gerr = conn.Send(chunk, Wait{Until: time.Now().Add(200 * time.Millisecond)}, false)
		total += n
		if gerr != nil {
			break
		}
	}
	assert.Equal(t, ErrTimeout, gerr)
	// What the host holds is the queue plus what the kernel's buffers took.
	assert.Less(t, total, 64<<20)
	conn.mu.Lock()
	assert.LessOrEqual(t, len(conn.wq), MaxPendingWrite)
	conn.mu.Unlock()
}

func TestRefusedAndReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	ln.Close()
	s := NewSet(permissive(0))
	defer s.CloseAll()
	r := s.Connect(ConnectRequest{Host: "127.0.0.1", Port: int(port)}, Wait{})
	require.NotNil(t, r.Err)
	assert.Equal(t, &Error{Type: "ConnectionRefusedError", Errno: "ECONNREFUSED", Message: "Connection refused"}, r.Err)

	ap := echoServer(t, func(c net.Conn) {
		_ = c.(*net.TCPConn).SetLinger(0)
		buf := make([]byte, 1)
		_, _ = c.Read(buf)
		c.Close() // RST
	})
	r = s.Connect(ConnectRequest{Host: "127.0.0.1", Port: int(ap.Port())}, Wait{})
	require.Nil(t, r.Err)
	conn, _ := s.Get(r.ID)
	_, _ = conn.Send([]byte("x"), Wait{}, false)
	_, _, gerr := conn.Recv(10, Wait{Until: time.Now().Add(5 * time.Second)}, false)
	require.NotNil(t, gerr)
	assert.Equal(t, "ConnectionResetError", gerr.Type)
}
