package net

import (
	"bytes"
	"testing"
)

// FuzzEchoProtection: whatever a server sends, cut into reads anywhere, the guest never
// receives a real secret value (and the rewriter neither panics nor loses the stream's end).
func FuzzEchoProtection(f *testing.F) {
	const v = "sk-real-value-42"
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n"+v), uint16(7), uint16(3))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nxxsk-rea\r\n8\r\nl-value-\r\n2\r\n42\r\n0\r\n\r\n"), uint16(50), uint16(1))
	f.Add([]byte("HTTP/1.0 200 OK\r\nContent-Length: 2000000\r\n\r\n"+v+v), uint16(1), uint16(9))
	f.Add([]byte("garbage "+v[:5]), uint16(2), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, cut, step uint16) {
		_, r := rewriterPair("api.example.com", nil)
		var out []byte
		feed := func(p []byte, final bool) {
			if !r.ended {
				out = append(out, r.feed(p, final)...)
			}
		}
		first := min(int(cut), len(data))
		feed(data[:first], false)
		rest := data[first:]
		n := int(step%64) + 1
		for len(rest) > 0 {
			k := min(n, len(rest))
			feed(rest[:k], false)
			rest = rest[k:]
		}
		feed(nil, true)
		if bytes.Contains(out, []byte(v)) {
			t.Fatalf("the real value reached the guest: %q", out)
		}
	})
}
