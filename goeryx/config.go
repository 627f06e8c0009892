package goeryx

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Config is the configuration of a Sandbox or Session. The Python package validates the
// user's arguments and passes this struct across the bridge once, as JSON.
type Config struct {
	Limits Limits `json:"limits"`
	// Network is nil when networking is off.
	Network *NetConfig `json:"network,omitempty"`
	// Callbacks are the host functions the guest may call, in registration order. The
	// functions themselves stay on the host; Hooks.Callback receives the index into this slice.
	Callbacks []CallbackSpec `json:"callbacks,omitempty"`
	Secrets   []Secret       `json:"secrets,omitempty"`
	Scrub     Scrub          `json:"scrub"`
	Volumes   []Volume       `json:"volumes,omitempty"`
	// VFSMountPath is where a shared VFS is mounted ("" means DefaultVFSMountPath).
	VFSMountPath string `json:"vfs_mount_path,omitempty"`
	// ResultVariable is the captured module-level name ("" means "result").
	ResultVariable string `json:"result_variable,omitempty"`
	// StreamStdout and StreamStderr enable Hooks.Output for fd 1 and fd 2.
	StreamStdout bool `json:"stream_stdout,omitempty"`
	StreamStderr bool `json:"stream_stderr,omitempty"`
}

// Limits mirrors eryx.ResourceLimits. A nil field means None in the Python API.
type Limits struct {
	ExecutionTimeoutMS     *int64 `json:"execution_timeout_ms"`
	CallbackTimeoutMS      *int64 `json:"callback_timeout_ms"`
	MaxMemoryBytes         *int64 `json:"max_memory_bytes"`
	MaxCallbackInvocations *int64 `json:"max_callback_invocations"`
	MaxFuel                *int64 `json:"max_fuel"`
	MaxVFSBytes            *int64 `json:"max_vfs_bytes"`
}

// NetConfig mirrors eryx.NetConfig.
type NetConfig struct {
	MaxConnections   int64    `json:"max_connections"`
	ConnectTimeoutMS int64    `json:"connect_timeout_ms"`
	IOTimeoutMS      int64    `json:"io_timeout_ms"`
	AllowedHosts     []string `json:"allowed_hosts"`
	BlockedHosts     []string `json:"blocked_hosts"`
	// RootCertsDER are extra trusted roots, DER-encoded.
	RootCertsDER [][]byte `json:"root_certs_der,omitempty"`
}

// CallbackSpec describes one host callback to the guest.
type CallbackSpec struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Schema is the JSON-Schema object, or nil when none could be inferred.
	Schema json.RawMessage `json:"schema,omitempty"`
}

// Secret is one entry of Sandbox(secrets=...).
type Secret struct {
	Name         string   `json:"name"`
	Value        string   `json:"value"`
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
}

// Scrub says which channels have secret placeholders replaced by [REDACTED].
type Scrub struct {
	Stdout bool `json:"stdout"`
	Stderr bool `json:"stderr"`
	Result bool `json:"result"`
	Files  bool `json:"files"`
}

// Volume maps a host file or directory into the guest.
type Volume struct {
	HostPath  string `json:"host_path"`
	GuestPath string `json:"guest_path"`
	ReadOnly  bool   `json:"read_only"`
}

// Defaults the Python API documents.
const (
	DefaultVFSMountPath   = "/data"
	DefaultResultVariable = "result"
	DefaultMaxVFSBytes    = 64 << 20
)

// ParseConfig decodes the JSON the Python package sends. Every string must be valid Unicode:
// encoding/json would silently turn invalid UTF-8 and lone surrogate escapes into U+FFFD, so a
// secret value or a callback name would not be what the caller passed (the Python package
// rejects them first; this is the engine's own check).
func ParseConfig(data []byte) (*Config, error) {
	if err := checkJSONUnicode(data); err != "" {
		return nil, &Error{Kind: KindValue, Message: "invalid engine configuration: " + err}
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, &Error{Kind: KindValue, Message: fmt.Sprintf("invalid engine configuration: %v", err)}
	}
	return &c, nil
}

// checkJSONUnicode returns why JSON text data is not valid Unicode (invalid UTF-8, or a \u
// escape of a lone surrogate), or "".
func checkJSONUnicode(data []byte) string {
	if !utf8.Valid(data) {
		return "not valid UTF-8"
	}
	lone := "a string holds a lone surrogate (not valid Unicode)"
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		// A backslash starts an escape only inside a string, and outside one the JSON is
		// invalid anyway: every escape is seen here, each exactly once.
		i++
		if i >= len(data) || data[i] != 'u' {
			continue
		}
		r, ok := hex4(data[i+1:])
		switch {
		case !ok:
			continue // not JSON: the decoder says so
		case r >= 0xDC00 && r <= 0xDFFF:
			return lone
		case r >= 0xD800 && r <= 0xDBFF:
			rest := data[i+5:]
			if len(rest) < 6 || rest[0] != '\\' || rest[1] != 'u' {
				return lone
			}
			if lo, ok := hex4(rest[2:]); !ok || lo < 0xDC00 || lo > 0xDFFF {
				return lone
			}
			i += 10 // the pair
		default:
			i += 4
		}
	}
	return ""
}

// hex4 decodes the 4 hex digits that start b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
