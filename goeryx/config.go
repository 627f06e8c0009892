package goeryx

import (
	"encoding/json"
	"fmt"
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

// ParseConfig decodes the JSON the Python package sends.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, &Error{Kind: KindValue, Message: fmt.Sprintf("invalid engine configuration: %v", err)}
	}
	return &c, nil
}
