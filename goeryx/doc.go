// Package goeryx is the engine of the eryx Python sandbox: it runs untrusted Python code in
// CPython compiled to WebAssembly (wasm32-wasip1), executed by wazero inside the host process.
//
// A [Runtime] is the compiled guest (one per process is enough). From it come a [Sandbox],
// where every Execute gets a fresh interpreter, and a [Session], whose interpreter persists
// across runs. A [VFS] is an in-memory file store that several sandboxes, sessions and the host
// can share. The engine has no Python-host dependencies: the Python package drives it through
// the C bridge in cbridge/, which passes a JSON [Config] and implements [Hooks].
package goeryx
