package goeryx

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

// Result is the outcome of a successful run (eryx.ExecuteResult).
type Result struct {
	Stdout, Stderr      string
	Duration            time.Duration
	CallbackInvocations int64
	PeakMemoryBytes     uint64
	// FuelConsumed is nil when fuel is not metered.
	FuelConsumed *uint64
	// ResultJSON is the captured result variable, nil when absent or not serialisable.
	ResultJSON *string
	// ResultError says why capture failed, nil otherwise.
	ResultError *string
}

// RunOptions are the options of one run.
type RunOptions struct {
	// Stdin is what the guest's sys.stdin reads (input(), sys.stdin.read()); nil: an empty
	// stdin, so input() raises EOFError.
	Stdin []byte
	// Interactive compiles the code as one interactive statement, as Python's REPL does:
	// the values of expression statements are printed (sys.displayhook).
	Interactive bool
	// Filename names the code in tracebacks ("": "<user>"); Argv, when not nil, becomes the
	// guest's sys.argv (the CLI's script and its arguments).
	Filename string
	Argv     []string
}

// runRequest is the run request of code: the header {"op": "run"} with, when stdin is given,
// "code_len" (the payload is the code, then stdin), and "interactive".
func runRequest(code string, opts *RunOptions) (map[string]any, []byte) {
	header := map[string]any{"op": protocol.ReqRun}
	if opts == nil {
		return header, []byte(code)
	}
	payload := []byte(code)
	if opts.Stdin != nil {
		header["code_len"] = len(payload)
		payload = append(payload, opts.Stdin...)
	}
	if opts.Interactive {
		header["interactive"] = true
	}
	if opts.Filename != "" {
		header["filename"] = opts.Filename
	}
	if opts.Argv != nil {
		header["argv"] = opts.Argv
	}
	return header, payload
}

// Bounds of what the guest reports as its result (the driver is in guest memory, so its
// response is checked here, not trusted).
const (
	// MaxResultDepth is the deepest nesting of arrays and objects accepted in result_json: the
	// host decodes it with Python's json module, which recurses per level.
	MaxResultDepth = 500
	// maxResultErrorBytes bounds result_error, a one-line message.
	maxResultErrorBytes = 4 << 10
)

// checkResult validates the guest's result_json and result_error: result_json must be
// ASCII JSON (the driver encodes with ensure_ascii and allow_nan=False) within the size and
// depth bounds; anything else is replaced by a result_error that says why.
func checkResult(resultJSON, resultError *string) (*string, *string) {
	if resultError != nil && len(*resultError) > maxResultErrorBytes {
		e := (*resultError)[:maxResultErrorBytes]
		resultError = &e
	}
	if resultJSON == nil {
		return nil, resultError
	}
	if reason := resultProblem(*resultJSON); reason != "" {
		e := "result was rejected by the host: " + reason
		return nil, &e
	}
	return resultJSON, resultError
}

// resultProblem says what is wrong with result_json, or "" when it is acceptable.
func resultProblem(text string) string {
	if len(text) > protocol.MaxResultJSONBytes {
		return fmt.Sprintf("%d bytes of JSON (limit %d)", len(text), protocol.MaxResultJSONBytes)
	}
	depth, inString, escaped := 0, false, false
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c >= 0x80 {
			return "it is not ASCII JSON"
		}
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > MaxResultDepth {
				return fmt.Sprintf("nested deeper than %d levels", MaxResultDepth)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	if !json.Valid([]byte(text)) {
		return "it is not valid JSON"
	}
	return ""
}
