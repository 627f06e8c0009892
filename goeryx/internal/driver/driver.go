// Package driver holds the guest driver: the Python module that runs inside every guest
// interpreter and serves the engine's requests (docs/PROTOCOL.md).
package driver

import (
	_ "embed"
	"encoding/json"

	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

//go:embed driver.py
var body string

// The guest networking section of the driver (net.py) and the socket and ssl shims it
// installs, which it receives as string constants.
var (
	//go:embed net.py
	netBody string
	//go:embed guest_socket.py
	socketShim string
	//go:embed guest_ssl.py
	sslShim string
	//go:embed guest_select.py
	selectShim string
)

// pyString is a Python string literal holding s (a JSON string is one).
func pyString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Source is the driver as eryx_boot runs it: the protocol prelude, driver.py, then the
// networking section with its shims.
func Source() string {
	return protocol.Prelude() + body +
		"\n_NET_SOCKET_SRC = " + pyString(socketShim) + "\n_NET_SSL_SRC = " + pyString(sslShim) +
		"\n_NET_SELECT_SRC = " + pyString(selectShim) + "\n" +
		netBody
}
