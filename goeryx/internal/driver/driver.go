// Package driver holds the guest driver: the Python module that runs inside every guest
// interpreter and serves the engine's requests (docs/PROTOCOL.md).
package driver

import (
	_ "embed"

	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

//go:embed driver.py
var body string

// Source is the driver as eryx_boot runs it: the protocol prelude, then driver.py.
func Source() string { return protocol.Prelude() + body }
