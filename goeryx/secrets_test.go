package goeryx

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func testSecrets(t testing.TB, values ...string) *secrets {
	var list []Secret
	for i, v := range values {
		list = append(list, Secret{Name: string(rune('A' + i)), Value: v})
	}
	s, err := newSecrets(list)
	require.NoError(t, err)
	return s
}

// jsonTokens is the token stream of a JSON text, numbers kept as written.
func jsonTokens(t testing.TB, text string) []any {
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	var out []any
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err, text)
		out = append(out, tok)
	}
}

func TestEchoJSONReplacesValuesWhateverTheirEscapes(t *testing.T) {
	value := "sek\"ret\u00e9\\"
	s := testSecrets(t, value, "other")
	ph := s.env["A"]
	// Python's json.dumps(ensure_ascii=True) escapes the quote, the backslash and the é.
	in := `{"sek\"ret\u00e9\\": ["x sek\"ret\u00e9\\ y", {"k": "other"}], "plain": "sek\"ret\u00E9\\", "n": 1}`
	out := s.echoJSON(in)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Equal(t, map[string]any{
		ph:      []any{"x " + ph + " y", map[string]any{"k": s.env["B"]}},
		"plain": ph,
		"n":     1.0,
	}, got)
	require.NotContains(t, out, "sek")
	// Order and layout outside the changed strings are kept.
	require.True(t, strings.HasPrefix(out, `{"`+ph+`": ["x `))
}

func TestEchoJSONLongestValueFirst(t *testing.T) {
	s := testSecrets(t, "abc", "abcdef")
	require.Equal(t, `"`+s.env["B"]+`-`+s.env["A"]+`"`, s.echoJSON(`"abcdef-abc"`))
	require.Equal(t, s.env["B"]+"/"+s.env["A"], s.echoText("abcdef/abc"))
}

func TestEchoJSONNumberHoldingAValueBecomesAString(t *testing.T) {
	s := testSecrets(t, "31337")
	require.Equal(t, `[1, "`+s.env["A"]+`", "9`+s.env["A"]+`"]`, s.echoJSON(`[1, 31337, 931337]`))
}

func TestEchoWithoutSecretsIsIdentity(t *testing.T) {
	s := testSecrets(t)
	require.Equal(t, `{"a":"b"}`, s.echoJSON(`{"a":"b"}`))
	var none *secrets
	require.Equal(t, "x", none.echoText("x"))
}

func TestCallbackCompletionEchoesSecrets(t *testing.T) {
	s := testSecrets(t, "hunter2")
	ph := s.env["A"]
	c := callbackCompletion(1, "f", `{"hunter2": "hunter2"}`, nil, 0, s)
	require.JSONEq(t, `{"`+ph+`": "`+ph+`"}`, string(c.result))
	c = callbackCompletion(1, "f", "", &CallbackFailure{Kind: "raised", Message: "Exception: hunter2"}, 0, s)
	require.Equal(t, "Exception: "+ph, c.err.Message)
	c = callbackCompletion(1, "f", "", &CallbackFailure{Kind: "not_json", Message: "hunter2"}, 0, s)
	require.Equal(t, "callback 'f' returned a value that is not JSON-serializable: "+ph, c.err.Message)
	c = callbackCompletion(1, "f", "", errors.New("hunter2 failed"), 0, s)
	require.Equal(t, ph+" failed", c.err.Message)
}

// FuzzEchoJSON: for any valid JSON text, the result is valid JSON whose tokens are the input's
// with every secret value replaced in every string (keys included) and number.
func FuzzEchoJSON(f *testing.F) {
	f.Add(`{"k\"\u00e9y": ["sek\"ret\u00e9", 12, true, null]}`, "sek\"ret\u00e9", "k\"")
	f.Add(`"abcabc"`, "abc", "bca")
	f.Add(`[123, -1.5e3, "\ud800"]`, "23", "e3")
	f.Add(`{"a":1,"a":2}`, "a", "true")
	f.Fuzz(func(t *testing.T, text, v1, v2 string) {
		if !json.Valid([]byte(text)) {
			return
		}
		var values []string
		for _, v := range []string{v1, v2} {
			if !utf8.ValidString(v) {
				return // secret values are valid Unicode (ParseConfig refuses others)
			}
			if v != "" {
				values = append(values, v)
			}
		}
		s := testSecrets(t, values...)
		out := s.echoJSON(text)
		require.True(t, json.Valid([]byte(out)), "%q -> %q", text, out)
		want := jsonTokens(t, text)
		for i, tok := range want {
			switch v := tok.(type) {
			case string:
				want[i] = s.echoText(v)
			case json.Number:
				if r := s.echoText(string(v)); r != string(v) {
					want[i] = r
				}
			case bool, nil:
				lit := "null"
				if v != nil {
					lit = "false"
					if v.(bool) {
						lit = "true"
					}
				}
				if r := s.echoText(lit); r != lit {
					want[i] = r
				}
			}
		}
		require.Equal(t, want, jsonTokens(t, out), "%q -> %q", text, out)
	})
}

// chunked streams text through an outputSink in the given cuts and returns what its handler
// received, concatenated.
func chunked(s *secrets, text string, cuts []int) string {
	var got strings.Builder
	o := outputSink{emit: func(c string) { got.WriteString(s.scrub(c, true)) }, tail: s.placeholderTail}
	prev := 0
	for _, c := range cuts {
		if c < prev || c > len(text) {
			continue
		}
		_, _ = o.Write([]byte(text[prev:c]))
		prev = c
	}
	_, _ = o.Write([]byte(text[prev:]))
	o.take()
	return got.String()
}

func TestStreamedPlaceholderSplitAcrossWritesIsScrubbed(t *testing.T) {
	s := testSecrets(t, "v")
	ph := s.env["A"]
	text := "key=" + ph + "\n"
	for cut := 0; cut <= len(text); cut++ {
		require.Equal(t, "key=[REDACTED]\n", chunked(s, text, []int{cut}), "cut at %d", cut)
	}
	// A held-back prefix that turns out not to be a placeholder is emitted by the next write or
	// at the end of the run.
	require.Equal(t, "ERYX_SECRET_x", chunked(s, "ERYX_SECRET_x", []int{11}))
	require.Equal(t, "ERYX_SEC", chunked(s, "ERYX_SEC", nil))
}

// FuzzStreamScrub: however the guest splits its output into writes, the chunks the handler
// receives, concatenated, are the whole text scrubbed.
func FuzzStreamScrub(f *testing.F) {
	f.Add("a ERYX_SECRET_PLACEHOLDER_ b", uint8(3), uint8(30), uint8(40), true)
	f.Add("\xe2\x82\xac ERYX_SECRET_PLACEHOLDER_ \xff", uint8(1), uint8(2), uint8(50), false)
	f.Add("EEEERYX_SECRET_PLACEHOLDER_", uint8(2), uint8(4), uint8(6), true)
	f.Fuzz(func(t *testing.T, text string, c1, c2, c3 uint8, insert bool) {
		s := testSecrets(t, "v1", "v2")
		if insert { // put real placeholders where the fuzzer put the prefix
			text = strings.Replace(text, SecretPlaceholderPrefix, s.env["A"], 1)
			text = strings.Replace(text, SecretPlaceholderPrefix, s.env["B"]+s.env["A"][:40], 1)
		}
		cuts := []int{int(c1), int(c1) + int(c2), int(c1) + int(c2) + int(c3)}
		require.Equal(t, s.scrub(text, true), chunked(s, text, cuts))
	})
}
