package goeryx

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	gnet "github.com/goeryx/goeryx/goeryx/internal/net"
)

// mapResolver answers from a map: the guest's DNS as a test wants it.
type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func withResolver(t *testing.T, r gnet.Resolver) {
	prev := testResolver
	testResolver = r
	t.Cleanup(func() { testResolver = prev })
}

// A public-looking name that resolves to loopback, a private or an IPv4-mapped loopback
// address is refused by the default policy before anything is dialled, through the guest.
func TestGuestDNSRebindingRefused(t *testing.T) {
	rt := runtimeForTest(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	withResolver(t, mapResolver{
		"api.example.com":     {netip.MustParseAddr("127.0.0.1")},
		"private.example.com": {netip.MustParseAddr("10.0.0.7")},
		"mapped.example.com":  {netip.MustParseAddr("::ffff:127.0.0.1")},
	})
	code := fmt.Sprintf(`
import socket
for host in ("api.example.com", "private.example.com", "mapped.example.com"):
    try:
        socket.create_connection((host, %d))
        print("connected")
    except PermissionError as e:
        print(e)
`, port)
	blocked := []string{"localhost", "*.localhost", "127.*", "10.*", "192.168.*", "169.254.*", "[::1]"}
	sb, err := rt.NewSandbox(&Config{Network: &NetConfig{MaxConnections: 10, ConnectTimeoutMS: 5000,
		IOTimeoutMS: 5000, BlockedHosts: blocked}}, nil, nil)
	require.NoError(t, err)
	res, err := sb.Execute(context.Background(), code)
	require.NoError(t, err)
	require.Equal(t, "not permitted: host 'api.example.com' resolves to blocked address 127.0.0.1\n"+
		"not permitted: host 'private.example.com' resolves to blocked address 10.0.0.7\n"+
		"not permitted: host 'mapped.example.com' resolves to blocked address 127.0.0.1", res.Stdout)
	require.Len(t, accepted, 0, "nothing reached the server")

	// Without the guards the same name reaches the checked address.
	sb, err = rt.NewSandbox(&Config{Network: &NetConfig{MaxConnections: 10, ConnectTimeoutMS: 5000,
		IOTimeoutMS: 5000, BlockedHosts: []string{}}}, nil, nil)
	require.NoError(t, err)
	res, err = sb.Execute(context.Background(), fmt.Sprintf(
		"import socket\nsocket.create_connection(('api.example.com', %d)).close()\nprint('ok')", port))
	require.NoError(t, err)
	require.Equal(t, "ok", res.Stdout)
}

// The network host calls survive whatever a guest sends them directly.
func TestGuestNetCallsAreChecked(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{Network: &NetConfig{MaxConnections: 2, ConnectTimeoutMS: 1000,
		IOTimeoutMS: 1000}}, nil, nil)
	require.NoError(t, err)
	res, err := sb.Execute(context.Background(), `
import socket
call = socket._eryx_call
out = []
for op, header, payload in [
    (socket.OP_NET_CONNECT, {"host": "a" * 100000, "port": 80}, b""),
    (socket.OP_NET_CONNECT, {"host": "x.example", "port": 0}, b""),
    (socket.OP_NET_CONNECT, {"host": "x.example", "port": 70000}, b""),
    (socket.OP_NET_CONNECT, {"host": "x\x00y", "port": 80}, b""),
    (socket.OP_NET_CONNECT, {"host": 5, "port": "80"}, b""),
    (socket.OP_NET_RECV, {"id": 123456789, "max": -5}, b""),
    (socket.OP_NET_RECV, {"id": -1, "max": 1 << 40}, b""),
    (socket.OP_NET_SEND, {"id": 987654321}, b"x" * 100),
    (socket.OP_NET_TLS, {"id": 42}, b""),
    (socket.OP_NET_SHUTDOWN, {"id": 42, "how": 99}, b""),
    (socket.OP_NET_CLOSE, {"id": 42}, b""),
]:
    try:
        h, _ = call(op, header, payload)
        out.append((h.get("error") or {}).get("type", "ok"))
    except OSError as e:
        out.append("refused")
print(out)
`)
	require.NoError(t, err)
	require.Equal(t, "['gaierror', 'OSError', 'OSError', 'gaierror', 'refused', 'OSError', 'OSError', 'OSError', 'OSError', 'OSError', 'ok']", res.Stdout)
}

// OP_NET_READ reads a binary header from guest memory and, with NetReadInto, writes over the
// request itself: malformed, foreign and oversized requests are answered, never trusted.
func TestGuestNetReadIsChecked(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{Network: &NetConfig{IOTimeoutMS: 1000}}, nil, nil)
	require.NoError(t, err)
	res, err := sb.Execute(context.Background(), `
import socket, struct
call, decode, H = socket._eryx_host_call, socket._eryx_decode, socket._READ_HEADER
def status():
    h, _ = decode(call(socket.OP_NET_READ, H.pack(0, 0, 0, socket.NET_READ_STATUS)))
    return (h.get("error") or {}).get("type", h)
out = []
out.append(decode(call(socket.OP_NET_READ, b"short"))[0]["error"]["type"])
out.append((call(socket.OP_NET_READ, H.pack(123456789, 0, 1 << 31, 0)), status()))
buf = bytearray(H.pack(-1, -5, 0xFFFFFFFF, socket.NET_READ_INTO | 8)) + bytearray(8)
out.append((bytes(call(socket.OP_NET_READ, memoryview(buf))), status(), len(buf)))
out.append(status())
print(out)
`)
	require.NoError(t, err)
	require.Equal(t, "['OSError', (b'', 'OSError'), (b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00', 'OSError', 32), {}]", res.Stdout)
}
