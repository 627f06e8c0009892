package net

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
)

// Secrets on the wire (API.md §6.5): the guest only knows placeholders. In HTTP/1.x request
// header values written on a connection, a placeholder becomes the real value when the
// connect host may receive that secret; in everything the guest reads, a real value becomes its
// placeholder again, with HTTP/1.x Content-Length and chunk sizes corrected.

// Secret is one secret: its placeholder, its real value and the hosts that may receive it.
type Secret struct {
	Name        string
	Placeholder string
	Value       string
	Hosts       []string // lowercased patterns; empty: NetConfig's allowed hosts, or any
}

// Bounds of the HTTP rewriting (per connection).
const (
	// MaxHeadBytes bounds a request or response head held for rewriting; a longer one ends
	// the rewriting of the connection (the rest passes unchanged, placeholders included).
	MaxHeadBytes = 64 << 10
	// MaxEchoBody is the largest Content-Length body held to correct its length; a larger one
	// streams through the replacement, and the guest gets it without the Content-Length
	// (which the replacement may make wrong): chunked for HTTP/1.1, delimited by the end of
	// the stream for HTTP/1.0.
	MaxEchoBody = 1 << 20
)

var h2Preface = []byte("PRI * HTTP/2.0\r\n")

// permitted reports whether secret s may be sent to the normalised host.
func (s *Secret) permitted(host string, policyAllowed []string) bool {
	list := s.Hosts
	if len(list) == 0 {
		list = policyAllowed
	}
	return len(list) == 0 || matchAny(list, host)
}

// ---- requests ------------------------------------------------------------------------------

type reqState int

const (
	reqHead reqState = iota
	reqBody          // Content-Length body: remaining bytes pass unchanged
	reqChunkLine
	reqChunkData
	reqTrailers
	reqRaw // not HTTP/1.x (or a head too long): everything passes unchanged
)

// requestRewriter substitutes placeholders in the header values of HTTP/1.x requests.
type requestRewriter struct {
	secrets []Secret
	host    string
	allowed []string
	state   reqState
	buf     []byte // the head (or chunk line) being collected
	left    int64  // body or chunk bytes still to pass
	methods *methodQueue
	started bool
}

// write rewrites p; what it returns is sent. A refusal closes the connection.
func (w *requestRewriter) write(p []byte) ([]byte, *Error) {
	var out []byte
	for len(p) > 0 {
		switch w.state {
		case reqRaw:
			return append(out, p...), nil
		case reqBody, reqChunkData:
			n := int(min(int64(len(p)), w.left))
			out = append(out, p[:n]...)
			p = p[n:]
			w.left -= int64(n)
			if w.left == 0 {
				if w.state == reqBody {
					w.state = reqHead
				} else {
					w.state, w.left = reqChunkLine, -2 // the CRLF after the data, then a size line
				}
			}
		case reqHead, reqChunkLine, reqTrailers:
			w.buf = append(w.buf, p...)
			p = nil
			if !w.started && w.state == reqHead && len(w.buf) > 0 {
				n := min(len(w.buf), len(h2Preface))
				if bytes.Equal(w.buf[:n], h2Preface[:n]) {
					if n < len(h2Preface) {
						continue // undecided yet
					}
					return nil, permission("HTTP/2 is not supported when secrets are configured")
				}
			}
			rest, emitted, err := w.consume()
			if err != nil {
				return nil, err
			}
			out = append(out, emitted...)
			p = rest
		}
	}
	return out, nil
}

// consume processes w.buf in the line-oriented states; it returns the bytes after what it
// consumed (to process in the next state) and what to send.
func (w *requestRewriter) consume() (rest, out []byte, gerr *Error) {
	switch w.state {
	case reqChunkLine:
		if w.left == -2 { // the CRLF that ends chunk data
			if len(w.buf) < 2 {
				return nil, nil, nil
			}
			out, w.buf, w.left = w.buf[:2], w.buf[2:], 0
			rest, w.buf = w.buf, nil
			return rest, out, nil
		}
		i := bytes.Index(w.buf, []byte("\r\n"))
		if i < 0 {
			if len(w.buf) > MaxHeadBytes {
				w.state = reqRaw
				out, w.buf = w.buf, nil
				return nil, out, nil
			}
			return nil, nil, nil
		}
		line := w.buf[:i]
		if j := bytes.IndexByte(line, ';'); j >= 0 {
			line = line[:j]
		}
		size, err := strconv.ParseInt(strings.TrimSpace(string(line)), 16, 64)
		out, rest = w.buf[:i+2], w.buf[i+2:]
		w.buf = nil
		switch {
		case err != nil || size < 0:
			w.state = reqRaw
		case size == 0:
			w.state = reqTrailers
		default:
			w.state, w.left = reqChunkData, size
		}
		return rest, out, nil
	case reqTrailers:
		i := bytes.Index(w.buf, []byte("\r\n"))
		if i < 0 {
			return nil, nil, nil
		}
		out, rest = w.buf[:i+2], w.buf[i+2:]
		w.buf = nil
		if i == 0 {
			w.state = reqHead
		}
		return rest, out, nil
	}
	// reqHead
	end := bytes.Index(w.buf, []byte("\r\n\r\n"))
	if end < 0 {
		if len(w.buf) > MaxHeadBytes || (!looksLikeRequest(w.buf)) {
			w.state = reqRaw
			out, w.buf = w.buf, nil
			return nil, out, nil
		}
		return nil, nil, nil
	}
	head, rest := w.buf[:end+4], w.buf[end+4:]
	w.buf = nil
	w.started = true
	if !looksLikeRequest(head) {
		w.state = reqRaw
		return rest, head, nil
	}
	lines := strings.Split(string(head[:end]), "\r\n")
	var b strings.Builder
	b.WriteString(lines[0])
	b.WriteString("\r\n")
	method := lines[0][:strings.IndexByte(lines[0], ' ')]
	var length int64
	chunked := false
	for _, line := range lines[1:] {
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			b.WriteString(line) // not a header field (or obsolete folding): unchanged
			b.WriteString("\r\n")
			continue
		}
		name := line[:colon]
		value := strings.Trim(line[colon+1:], " \t")
		if strings.Contains(value, placeholderPrefix) {
			for i := range w.secrets {
				s := &w.secrets[i]
				if !strings.Contains(value, s.Placeholder) {
					continue
				}
				if !s.permitted(w.host, w.allowed) {
					return nil, nil, permission("secret '%s' may not be sent to host '%s'", s.Name, w.host)
				}
				value = strings.ReplaceAll(value, s.Placeholder, s.Value)
			}
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			length, _ = strconv.ParseInt(value, 10, 64)
		case "transfer-encoding":
			chunked = strings.Contains(strings.ToLower(value), "chunked")
		}
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(value)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	w.methods.push(method)
	switch {
	case chunked:
		w.state = reqChunkLine
	case length > 0:
		w.state, w.left = reqBody, length
	}
	return rest, []byte(b.String()), nil
}

const placeholderPrefix = "ERYX_SECRET_PLACEHOLDER_"

// looksLikeRequest reports whether b can start an HTTP/1.x request line ("METHOD SP").
func looksLikeRequest(b []byte) bool {
	for i, c := range b {
		if c == ' ' {
			return i > 0
		}
		if !(c >= 'A' && c <= 'Z' || c == '-' || c == '_') || i > 20 {
			return false
		}
	}
	return true // undecided: only method characters so far
}

// methodQueue passes the methods of sent requests to the response side (HEAD has no body).
type methodQueue struct {
	mu sync.Mutex
	q  []string
}

func (m *methodQueue) push(s string) {
	m.mu.Lock()
	if len(m.q) < 1024 {
		m.q = append(m.q, s)
	}
	m.mu.Unlock()
}

func (m *methodQueue) pop() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.q) == 0 {
		return ""
	}
	s := m.q[0]
	m.q = m.q[1:]
	return s
}

// ---- what the guest reads --------------------------------------------------------------------

// replacer replaces real values by placeholders in a stream: a possible start of a value at
// the end of the data is held back until the next data (or the end) decides.
type replacer struct {
	secrets []Secret
	hold    []byte
	// tail is the end of what was released (at most the longest value less one byte): a
	// final feed (the end of a body) may release the start of a value that the next bytes
	// of the stream complete.
	tail []byte
}

func (r *replacer) feed(p []byte, final bool) []byte {
	data := append(r.hold, p...)
	r.hold = nil
	r.maskContinuation(data)
	out := r.replace(data, final)
	r.tail = append(r.tail, out...)
	if keep := r.longest() - 1; len(r.tail) > keep {
		r.tail = append([]byte(nil), r.tail[len(r.tail)-max(keep, 0):]...)
	}
	return out
}

// maskContinuation overwrites with '*' the start of data that would complete a value whose
// beginning was already released: released bytes cannot be taken back, and the guest must not
// see the value whole.
func (r *replacer) maskContinuation(data []byte) {
	if len(r.tail) == 0 || len(data) == 0 {
		return
	}
	for _, s := range r.secrets {
		v := []byte(s.Value)
		for k := 1; k < len(v); k++ {
			if !bytes.HasSuffix(r.tail, v[:k]) {
				continue
			}
			rest := v[k:]
			n := min(len(rest), len(data))
			if bytes.Equal(data[:n], rest[:n]) {
				for i := range data[:n] {
					data[i] = '*'
				}
			}
		}
	}
}

func (r *replacer) replace(data []byte, final bool) []byte {
	var out []byte
	for {
		best, which := -1, -1
		for i := range r.secrets {
			if j := bytes.Index(data, []byte(r.secrets[i].Value)); j >= 0 && (best < 0 || j < best) {
				best, which = j, i
			}
		}
		if best < 0 {
			break
		}
		out = append(out, data[:best]...)
		out = append(out, r.secrets[which].Placeholder...)
		data = data[best+len(r.secrets[which].Value):]
	}
	if !final {
		for start := max(0, len(data)-r.longest()+1); start < len(data); start++ {
			if r.isPrefix(data[start:]) {
				r.hold = append([]byte(nil), data[start:]...)
				data = data[:start]
				break
			}
		}
	}
	return append(out, data...)
}

func (r *replacer) longest() int {
	n := 0
	for _, s := range r.secrets {
		n = max(n, len(s.Value))
	}
	return n
}

func (r *replacer) isPrefix(b []byte) bool {
	for _, s := range r.secrets {
		if len(b) < len(s.Value) && strings.HasPrefix(s.Value, string(b)) {
			return true
		}
	}
	return false
}

type respState int

const (
	respHead   respState = iota
	respBody             // Content-Length body, held to correct the length
	respStream           // Content-Length body too large to hold: streamed
	respEnded            // the stream ended after a close-delimited body: the rest is dropped
	respChunkLine
	respChunkData
	respChunkCRLF
	respTrailers
	respToEOF // body until the end of the stream, or not HTTP
)

// responseRewriter applies echo protection to what the guest reads.
type responseRewriter struct {
	rep     replacer
	state   respState
	buf     []byte
	head    []string // a held head (Content-Length bodies)
	left    int64
	methods *methodQueue
	// A streamed body (respStream) is sent chunked, or ends the stream (ended).
	streamChunked bool
	closeAfter    bool
	ended         bool
}

// feed transforms received bytes; final marks the end of the stream.
func (r *responseRewriter) feed(p []byte, final bool) []byte {
	var out []byte
	r.buf = append(r.buf, p...)
	for {
		progressed := false
		switch r.state {
		case respToEOF:
			out = append(out, r.rep.feed(r.buf, final)...)
			r.buf = nil
			return out
		case respHead:
			end := bytes.Index(r.buf, []byte("\r\n\r\n"))
			if end < 0 {
				if len(r.buf) > MaxHeadBytes || (len(r.buf) >= 5 && !bytes.HasPrefix(r.buf, []byte("HTTP/"))) || final {
					r.state = respToEOF
					continue
				}
				return out
			}
			if !bytes.HasPrefix(r.buf, []byte("HTTP/1.")) {
				r.state = respToEOF
				continue
			}
			lines := strings.Split(string(r.rep.feed(r.buf[:end], true)), "\r\n")
			r.buf = r.buf[end+4:]
			progressed = true
			status := 0
			if f := strings.Fields(lines[0]); len(f) >= 2 {
				status, _ = strconv.Atoi(f[1])
			}
			length, chunked, hasLength := int64(0), false, false
			for _, l := range lines[1:] {
				if c := strings.IndexByte(l, ':'); c > 0 {
					v := strings.TrimSpace(l[c+1:])
					switch strings.ToLower(strings.TrimSpace(l[:c])) {
					case "content-length":
						length, _ = strconv.ParseInt(v, 10, 64)
						hasLength = true
					case "transfer-encoding":
						chunked = strings.Contains(strings.ToLower(v), "chunked")
					}
				}
			}
			headBytes := func() []byte { return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n") }
			noBody := status >= 100 && status < 200 || status == 204 || status == 304
			if status >= 200 && r.methods.pop() == "HEAD" {
				noBody = true
			}
			switch {
			case noBody:
				out = append(out, headBytes()...)
			case chunked:
				out = append(out, headBytes()...)
				r.state = respChunkLine
			case hasLength && length <= MaxEchoBody:
				r.head, r.left, r.state = lines, length, respBody
			case hasLength:
				// The replacement may change the body's length, and it is too large to hold
				// until the length is known: the guest gets it without Content-Length.
				kept := lines[:1:1]
				http10 := strings.HasPrefix(lines[0], "HTTP/1.0")
				for _, l := range lines[1:] {
					name := l
					if c := strings.IndexByte(l, ':'); c > 0 {
						name = strings.ToLower(strings.TrimSpace(l[:c]))
					}
					if name == "content-length" || (http10 && name == "connection") {
						continue
					}
					kept = append(kept, l)
				}
				if http10 {
					kept = append(kept, "Connection: close")
				} else {
					kept = append(kept, "Transfer-Encoding: chunked")
				}
				out = append(out, strings.Join(kept, "\r\n")+"\r\n\r\n"...)
				r.left, r.state = length, respStream
				r.streamChunked, r.closeAfter = !http10, http10
			default:
				out = append(out, headBytes()...)
				r.state = respToEOF
			}
		case respBody:
			if int64(len(r.buf)) < r.left && !final {
				return out
			}
			n := min(int64(len(r.buf)), r.left)
			body := r.rep.feed(r.buf[:n], true)
			r.buf = r.buf[n:]
			for i, l := range r.head {
				if c := strings.IndexByte(l, ':'); c > 0 && strings.EqualFold(strings.TrimSpace(l[:c]), "content-length") {
					r.head[i] = l[:c] + ": " + strconv.Itoa(len(body))
				}
			}
			out = append(out, strings.Join(r.head, "\r\n")+"\r\n\r\n"...)
			out = append(out, body...)
			r.head, r.state, progressed = nil, respHead, true
		case respStream:
			n := min(int64(len(r.buf)), r.left)
			r.left -= n
			data := r.rep.feed(r.buf[:n], r.left == 0 || final)
			r.buf = r.buf[n:]
			if !r.streamChunked {
				out = append(out, data...)
			} else if len(data) > 0 {
				out = append(out, chunk(data)...)
			}
			if r.left == 0 {
				if r.streamChunked {
					out = append(out, "0\r\n\r\n"...)
				}
				if r.closeAfter {
					r.state, r.ended, r.buf = respEnded, true, nil
					return out
				}
				r.state, progressed = respHead, true
			}
		case respEnded:
			r.buf = nil
			return out
		case respChunkLine:
			i := bytes.Index(r.buf, []byte("\r\n"))
			if i < 0 {
				if len(r.buf) > MaxHeadBytes || final {
					r.state = respToEOF
					continue
				}
				return out
			}
			line := string(r.buf[:i])
			if j := strings.IndexByte(line, ';'); j >= 0 {
				line = line[:j]
			}
			size, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
			if err != nil || size < 0 {
				r.state = respToEOF
				continue
			}
			r.buf = r.buf[i+2:]
			progressed = true
			if size == 0 {
				if rest := r.rep.feed(nil, true); len(rest) > 0 {
					out = append(out, chunk(rest)...)
				}
				out = append(out, "0\r\n"...)
				r.state = respTrailers
			} else {
				r.left, r.state = size, respChunkData
			}
		case respChunkData:
			n := min(int64(len(r.buf)), r.left)
			if n > 0 {
				if data := r.rep.feed(r.buf[:n], false); len(data) > 0 {
					out = append(out, chunk(data)...)
				}
				r.buf = r.buf[n:]
				r.left -= n
				progressed = true
			}
			if r.left == 0 {
				r.state = respChunkCRLF
			}
		case respChunkCRLF:
			if len(r.buf) >= 2 {
				r.buf = r.buf[2:]
				r.state, progressed = respChunkLine, true
			}
		case respTrailers:
			i := bytes.Index(r.buf, []byte("\r\n"))
			if i >= 0 {
				out = append(out, r.rep.feed(r.buf[:i+2], true)...)
				r.buf = r.buf[i+2:]
				progressed = true
				if i == 0 {
					r.state = respHead
				}
			} else if len(r.buf) > MaxHeadBytes {
				r.state = respToEOF
				continue
			}
		}
		if !progressed {
			if final && len(r.buf) > 0 {
				r.state = respToEOF
				continue
			}
			return out
		}
	}
}

func chunk(data []byte) []byte {
	out := strconv.AppendInt(nil, int64(len(data)), 16)
	out = append(out, "\r\n"...)
	out = append(out, data...)
	return append(out, "\r\n"...)
}
