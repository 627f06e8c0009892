package goeryx

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseConfigRejectsInvalidUnicode(t *testing.T) {
	for _, bad := range []string{
		`{"secrets":[{"name":"\ud800","value":"v"}]}`,
		`{"secrets":[{"name":"N","value":"a\udfffb"}]}`,
		`{"callbacks":[{"name":"f\ud83d"}]}`,
		`{"callbacks":[{"name":"f\ud83d\u0041"}]}`,
		"{\"callbacks\":[{\"name\":\"f\xff\"}]}",
	} {
		_, err := ParseConfig([]byte(bad))
		var e *Error
		require.ErrorAs(t, err, &e, bad)
		require.Equal(t, KindValue, e.Kind)
		require.Contains(t, e.Message, "invalid engine configuration: ")
	}
	for _, good := range []string{
		`{"secrets":[{"name":"N","value":"\ud83d\ude00 \\ud800 \\\ud83d\ude00"}]}`,
		`{"callbacks":[{"name":"caf\u00e9"}]}`,
	} {
		c, err := ParseConfig([]byte(good))
		require.NoError(t, err, good)
		raw, _ := json.Marshal(c)
		require.NotContains(t, string(raw), "\ufffd")
	}
}
