package goeryx

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxCapturedOutput caps each captured stream (API.md §2.2).
const MaxCapturedOutput = 16 << 20

var truncationMarker = "[eryx: output truncated after " + strconv.Itoa(MaxCapturedOutput) + " bytes]"

// outputSink is the guest's fd 1 or fd 2. It captures up to MaxCapturedOutput bytes and, when
// streaming, forwards every write as a chunk, holding back an incomplete UTF-8 sequence until
// the next write completes it. Only the goroutine running the guest writes to it.
type outputSink struct {
	captured  []byte
	truncated bool
	emit      func(string) // nil: not streamed
	// tail, set when the chunks are scrubbed, is how many trailing bytes of the text may begin
	// a secret placeholder: they are held back too, so that a placeholder split across two
	// writes reaches the scrubber whole.
	tail func([]byte) int
	held []byte
}

// Write implements io.Writer (wazero calls it from fd_write).
func (o *outputSink) Write(p []byte) (int, error) {
	if !o.truncated {
		room := MaxCapturedOutput - len(o.captured)
		if len(p) <= room {
			o.captured = append(o.captured, p...)
		} else {
			o.captured = append(o.captured, p[:room]...)
			o.truncated = true
		}
	}
	if o.emit != nil {
		data := p
		if len(o.held) > 0 {
			data = append(o.held, p...)
			o.held = nil
		}
		cut := completeUTF8Prefix(data)
		if o.tail != nil {
			// Placeholders are ASCII: a held-back tail never ends inside a UTF-8 sequence.
			cut = min(cut, len(data)-o.tail(data))
		}
		if cut < len(data) {
			o.held = append([]byte(nil), data[cut:]...)
		}
		if cut > 0 {
			o.emit(string(data[:cut]))
		}
	}
	return len(p), nil
}

// flush emits the held-back text (a partial sequence, a placeholder's prefix) at the end of a run.
func (o *outputSink) flush() {
	if o.emit != nil && len(o.held) > 0 {
		o.emit(string(o.held))
	}
	o.held = nil
}

// take returns the run's text (API.md §4: decoded with replacement, every trailing "\n"
// removed) and empties the sink.
func (o *outputSink) take() string {
	o.flush()
	text := strings.TrimRight(decodeUTF8(o.captured), "\n")
	if o.truncated {
		text += "\n" + truncationMarker
	}
	o.captured = o.captured[:0]
	o.truncated = false
	return text
}

// completeUTF8Prefix is the length of the longest prefix of b that does not end inside an
// incomplete (but so far valid) UTF-8 sequence.
func completeUTF8Prefix(b []byte) int {
	n := len(b)
	for i := n - 1; i >= 0 && i >= n-3; i-- {
		c := b[i]
		if c < 0x80 {
			return n
		}
		if c >= 0xC0 { // lead byte
			need := 2
			if c >= 0xF0 {
				need = 4
			} else if c >= 0xE0 {
				need = 3
			}
			if n-i < need && utf8.FullRune(b[i:]) == false {
				return i
			}
			return n
		}
	}
	return n
}

// decodeUTF8 decodes b like Python's bytes.decode("utf-8", "replace").
func decodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}
