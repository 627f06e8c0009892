package goeryx

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strings"
)

// SecretPlaceholderPrefix starts every placeholder the guest sees instead of a secret's value
// (API.md §6.5); 32 lowercase hex characters (128 random bits) follow.
const SecretPlaceholderPrefix = "ERYX_SECRET_PLACEHOLDER_"

// placeholderLen is the length of every placeholder.
const placeholderLen = len(SecretPlaceholderPrefix) + 32

// redacted replaces placeholders in scrubbed channels.
const redacted = "[REDACTED]"

// secrets are a Sandbox's secrets as the guest knows them: real values never enter the guest.
// Only the network layer substitutes a real value, in HTTP/1 header values for allowed hosts.
type secrets struct {
	env          map[string]string // name → placeholder: the guest's os.environ entries
	byName       map[string]Secret
	placeholders []string
	scrubber     *strings.Replacer // placeholder → [REDACTED]; nil when there are no secrets
	// echo replaces each real value by its placeholder in what host callbacks send to the
	// guest (API.md §6.5 "Echo protection"); nil when there are no secrets.
	echo *strings.Replacer
}

func newSecrets(list []Secret) (*secrets, error) {
	s := &secrets{env: map[string]string{}, byName: map[string]Secret{}}
	var pairs []string
	type valuePH struct{ value, ph string }
	var values []valuePH
	for _, sec := range list {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		ph := SecretPlaceholderPrefix + hex.EncodeToString(b[:])
		s.env[sec.Name] = ph
		s.byName[sec.Name] = sec
		s.placeholders = append(s.placeholders, ph)
		pairs = append(pairs, ph, redacted)
		if sec.Value != "" {
			values = append(values, valuePH{sec.Value, ph})
		}
	}
	if len(pairs) > 0 {
		s.scrubber = strings.NewReplacer(pairs...)
	}
	if len(values) > 0 {
		// A Replacer tries its old strings in argument order at each position: longest value
		// first, so that a secret whose value contains another's is replaced whole.
		sort.SliceStable(values, func(i, j int) bool { return len(values[i].value) > len(values[j].value) })
		var echo []string
		for _, v := range values {
			echo = append(echo, v.value, v.ph)
		}
		s.echo = strings.NewReplacer(echo...)
	}
	return s, nil
}

// scrub replaces placeholders when on is set.
func (s *secrets) scrub(text string, on bool) string {
	if !on || s.scrubber == nil {
		return text
	}
	return s.scrubber.Replace(text)
}

// scrubBytes is scrub for file writes; it returns b itself when nothing changes.
func (s *secrets) scrubBytes(b []byte) []byte {
	if s.scrubber == nil || !strings.Contains(string(b), SecretPlaceholderPrefix) {
		return b
	}
	return []byte(s.scrubber.Replace(string(b)))
}

// placeholderTail is the length of the longest suffix of b that is a proper prefix of a
// placeholder: text that a streamed chunk must hold back, because the next write may complete
// the placeholder (scrubbing sees it only whole). Placeholders cannot overlap themselves (the
// upper-case prefix never recurs inside one), so holding back this suffix is enough.
func (s *secrets) placeholderTail(b []byte) int {
	if s.scrubber == nil {
		return 0
	}
	for i := max(0, len(b)-(placeholderLen-1)); i < len(b); i++ {
		if b[i] != SecretPlaceholderPrefix[0] {
			continue
		}
		tail := string(b[i:])
		for _, ph := range s.placeholders {
			if strings.HasPrefix(ph, tail) {
				return len(b) - i
			}
		}
	}
	return 0
}

// echoText replaces every real secret value in text (a callback's error message) by its
// placeholder.
func (s *secrets) echoText(text string) string {
	if s == nil || s.echo == nil {
		return text
	}
	return s.echo.Replace(text)
}

// echoJSON is echoText for a valid JSON text (a callback's result). A value may appear
// escaped in the text ("\"", "\\", "\u00e9": Python's json.dumps escapes every non-ASCII
// character), so each string literal, keys included, is decoded, replaced in and re-encoded.
// A number or literal that holds a value becomes the string with the replacement. Everything
// else, order and duplicate keys included, is kept byte for byte. A value split across two
// JSON strings is not detected (like any encoded form, API.md §6.5).
func (s *secrets) echoJSON(text string) string {
	if s == nil || s.echo == nil {
		return text
	}
	var out strings.Builder
	last := 0
	replace := func(from, to int, with string) {
		if out.Len() == 0 {
			out.Grow(len(text) + 64)
		}
		out.WriteString(text[last:from])
		out.WriteString(with)
		last = to
	}
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(text) && text[j] != '"' {
				if text[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(text) { // not valid JSON: the caller checks, but never read past it
				return s.echo.Replace(text)
			}
			if lit, ok := s.echoLiteral(text[i : j+1]); ok {
				replace(i, j+1, lit)
			}
			i = j + 1
		case isJSONTokenByte(c):
			j := i + 1
			for j < len(text) && isJSONTokenByte(text[j]) {
				j++
			}
			if tok := text[i:j]; s.echo.Replace(tok) != tok {
				q, _ := json.Marshal(s.echo.Replace(tok))
				replace(i, j, string(q))
			}
			i = j
		default:
			i++
		}
	}
	if last == 0 {
		return text
	}
	out.WriteString(text[last:])
	return out.String()
}

// echoLiteral returns the string literal lit with secret values replaced, and whether it
// changed.
func (s *secrets) echoLiteral(lit string) (string, bool) {
	body := lit[1 : len(lit)-1]
	if !strings.Contains(body, `\`) {
		// No escapes: the text is the string. Placeholders need no escaping.
		r := s.echo.Replace(body)
		return `"` + r + `"`, r != body
	}
	var v string
	if err := json.Unmarshal([]byte(lit), &v); err != nil {
		return lit, false
	}
	r := s.echo.Replace(v)
	if r == v {
		return lit, false
	}
	q, err := json.Marshal(r)
	if err != nil {
		return lit, false
	}
	return string(q), true
}

// isJSONTokenByte: a byte of a JSON number, true, false or null.
func isJSONTokenByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}
