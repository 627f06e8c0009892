package net

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const ph = "ERYX_SECRET_PLACEHOLDER_0123456789abcdef0123456789abcdef"

func testSecrets() []Secret {
	return []Secret{{Name: "KEY", Placeholder: ph, Value: "sk-real-value-42", Hosts: []string{"api.example.com"}}}
}

func rewriterPair(host string, allowed []string) (*requestRewriter, *responseRewriter) {
	m := &methodQueue{}
	return &requestRewriter{secrets: testSecrets(), host: host, allowed: allowed, methods: m},
		&responseRewriter{rep: replacer{secrets: testSecrets()}, methods: m}
}

// writeAll feeds the rewriter in pieces of n bytes.
func writeAll(t *testing.T, w *requestRewriter, data string, n int) (string, *Error) {
	var out []byte
	for len(data) > 0 {
		k := min(n, len(data))
		b, err := w.write([]byte(data[:k]))
		if err != nil {
			return string(out), err
		}
		out = append(out, b...)
		data = data[k:]
	}
	return string(out), nil
}

func TestRequestSubstitution(t *testing.T) {
	req := "POST /v1/" + ph + " HTTP/1.1\r\nHost: api.example.com\r\nAuthorization:   Bearer " + ph + "  \r\n" +
		"Content-Length: 56\r\n\r\n" + ph +
		"GET /two HTTP/1.1\r\nX-Key: " + ph + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n0\r\n\r\n"
	want := "POST /v1/" + ph + " HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer sk-real-value-42\r\n" +
		"Content-Length: 56\r\n\r\n" + ph +
		"GET /two HTTP/1.1\r\nX-Key: sk-real-value-42\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n0\r\n\r\n"
	for _, n := range []int{1, 7, 1 << 20} {
		w, _ := rewriterPair("api.example.com", nil)
		out, err := writeAll(t, w, req, n)
		require.Nil(t, err, n)
		assert.Equal(t, want, out, "pieces of %d", n)
		assert.Equal(t, []string{"POST", "GET"}, w.methods.q)
	}
}

func TestRequestRefusals(t *testing.T) {
	w, _ := rewriterPair("evil.example", nil)
	out, err := writeAll(t, w, "GET / HTTP/1.1\r\nAuthorization: "+ph+"\r\n\r\n", 5)
	require.NotNil(t, err)
	assert.Equal(t, "not permitted: secret 'KEY' may not be sent to host 'evil.example'", err.Message)
	assert.Empty(t, out, "nothing of the refused request is sent")

	// A secret without hosts follows NetConfig's allowed hosts.
	s := testSecrets()
	s[0].Hosts = nil
	w = &requestRewriter{secrets: s, host: "other.example", allowed: []string{"*.example.org"}, methods: &methodQueue{}}
	_, err = w.write([]byte("GET / HTTP/1.1\r\nA: " + ph + "\r\n\r\n"))
	require.NotNil(t, err)
	w = &requestRewriter{secrets: s, host: "other.example", methods: &methodQueue{}}
	out2, err := w.write([]byte("GET / HTTP/1.1\r\nA: " + ph + "\r\n\r\n"))
	require.Nil(t, err)
	assert.Contains(t, string(out2), "A: sk-real-value-42")

	w, _ = rewriterPair("api.example.com", nil)
	_, err = writeAll(t, w, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 3)
	require.NotNil(t, err)
	assert.Equal(t, "not permitted: HTTP/2 is not supported when secrets are configured", err.Message)

	// Not HTTP: unchanged.
	w, _ = rewriterPair("api.example.com", nil)
	out, err = writeAll(t, w, "\x16\x03\x01binary "+ph, 4)
	require.Nil(t, err)
	assert.Equal(t, "\x16\x03\x01binary "+ph, out)
}

func feedAll(r *responseRewriter, data string, n int) string {
	var out []byte
	for len(data) > 0 {
		k := min(n, len(data))
		out = append(out, r.feed([]byte(data[:k]), false)...)
		data = data[k:]
	}
	return string(append(out, r.feed(nil, true)...))
}

func TestEchoProtection(t *testing.T) {
	const v = "sk-real-value-42"
	body := `{"echo": "` + v + `", "again": "` + v + `"}`
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"8\r\nstart sk\r\n" + "a\r\n-real-valu\r\n" + "6\r\ne-42 .\r\n0\r\n\r\n"
	stream := "HTTP/1.1 200 OK\r\nContent-Length: " + itoa(len(body)) + "\r\nX-Echo: " + v + "\r\n\r\n" + body +
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + // the response to HEAD: no body
		chunked
	for _, n := range []int{1, 3, 1 << 20} {
		w, r := rewriterPair("api.example.com", nil)
		_, err := w.write([]byte("GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n"))
		require.Nil(t, err)
		out := feedAll(r, stream, n)
		require.NotContains(t, out, v, "pieces of %d", n)
		// A real HTTP client parses the result: lengths and chunk sizes are right.
		br := bufio.NewReader(strings.NewReader(out))
		for i, method := range []string{"GET", "HEAD", "GET"} {
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			require.NoError(t, err, "response %d, pieces of %d", i, n)
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			switch i {
			case 0:
				assert.Equal(t, strings.ReplaceAll(body, v, ph), string(got))
				assert.Equal(t, ph, resp.Header.Get("X-Echo"))
			case 1:
				assert.Empty(t, got)
			case 2:
				assert.Equal(t, "start "+ph+" .", string(got))
			}
		}
	}
	// Not HTTP: replaced across read boundaries.
	_, r := rewriterPair("api.example.com", nil)
	assert.Equal(t, "xx "+ph+" yy", feedAll(r, "xx "+v+" yy", 1))
	_, r = rewriterPair("api.example.com", nil)
	assert.Equal(t, "ends with sk-real", feedAll(r, "ends with sk-real", 2), "a held prefix is released at the end")
}

func itoa(n int) string { return strconv.Itoa(n) }

// A Content-Length body too large to hold is streamed through the replacement: the guest gets
// it chunked (HTTP/1.1) or delimited by the end of the stream (HTTP/1.0), never with a
// Content-Length the replacement made wrong.
func TestEchoProtectionLargeBody(t *testing.T) {
	const v = "sk-real-value-42"
	filler := strings.Repeat("x", 1000)
	var b strings.Builder
	for b.Len() < MaxEchoBody+100_000 {
		b.WriteString(filler + v)
	}
	body := b.String()
	want := strings.ReplaceAll(body, v, ph)
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		for _, n := range []int{4093, 1 << 20} {
			w, r := rewriterPair("api.example.com", nil)
			_, werr := w.write([]byte("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"))
			require.Nil(t, werr)
			stream := proto + " 200 OK\r\nContent-Length: " + itoa(len(body)) + "\r\nConnection: keep-alive\r\n\r\n" + body +
				proto + " 200 OK\r\nContent-Length: 2\r\n\r\nok"
			var out []byte
			for data := stream; len(data) > 0 && !r.ended; {
				k := min(n, len(data))
				out = append(out, r.feed([]byte(data[:k]), false)...)
				data = data[k:]
			}
			if !r.ended {
				out = append(out, r.feed(nil, true)...)
			}
			require.NotContains(t, string(out), v)
			br := bufio.NewReader(strings.NewReader(string(out)))
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			require.NoError(t, err)
			assert.Equal(t, int64(-1), resp.ContentLength, proto)
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, want, string(got), "%s pieces of %d", proto, n)
			if proto == "HTTP/1.1" {
				assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
				resp, err = http.ReadResponse(br, &http.Request{Method: "GET"})
				require.NoError(t, err, "the next response on the connection follows")
				got, _ = io.ReadAll(resp.Body)
				assert.Equal(t, "ok", string(got))
			} else {
				assert.True(t, r.ended, "HTTP/1.0: the stream ends after the body")
				assert.True(t, resp.Close)
			}
		}
	}
}
