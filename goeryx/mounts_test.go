package goeryx

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMountPathsKeepClearOfThePythonInstallation: a VFS mount or a volume at, above or below
// the guest prefix would shadow the stdlib and break the interpreter, so the configuration is
// refused with KindValue before any guest work, for Sandboxes and Sessions alike.
func TestMountPathsKeepClearOfThePythonInstallation(t *testing.T) {
	rt := runtimeForTest(t)
	dir := t.TempDir()
	bad := []string{
		"/usr/local/lib/python3.13", "/usr/local/lib/python3.13/json", "/usr/local/lib",
		"/usr/local", "/usr/local/bin", "/usr", "/usr/", "//usr/local/lib", "/usr/./local",
	}
	for _, p := range bad {
		for _, cfg := range []*Config{
			{VFSMountPath: p},
			{Volumes: []Volume{{HostPath: dir, GuestPath: p, ReadOnly: true}}},
		} {
			_, err := rt.NewSandbox(cfg, NewVFS(1<<20), nil)
			requireKindMessage(t, err, KindValue, "overlaps the guest's Python installation under '/usr/local'")
			_, err = rt.NewSession(context.Background(), cfg, NewVFS(1<<20), nil)
			requireKindMessage(t, err, KindValue, "overlaps the guest's Python installation under '/usr/local'")
		}
	}
	for p, msg := range map[string]string{
		"data": "must be an absolute path", "/": "must not be '/'", "/a/../b": "must not contain '..'",
	} {
		_, err := rt.NewSandbox(&Config{VFSMountPath: p}, NewVFS(1<<20), nil)
		requireKindMessage(t, err, KindValue, msg)
		_, err = rt.NewSandbox(&Config{Volumes: []Volume{{HostPath: dir, GuestPath: p}}}, nil, nil)
		requireKindMessage(t, err, KindValue, msg)
	}

	// Neighbours of the prefix are fine, and the interpreter works with them.
	sb, err := rt.NewSandbox(&Config{VFSMountPath: "/usr/share/data",
		Volumes: []Volume{{HostPath: dir, GuestPath: "/usr/localx", ReadOnly: true}}}, NewVFS(1<<20), nil)
	require.NoError(t, err)
	defer sb.Close()
	res, err := sb.Execute(context.Background(), "import json, os; print(json.dumps(sorted(os.listdir('/usr'))))")
	require.NoError(t, err)
	require.Equal(t, `["local", "localx", "share"]`, res.Stdout)
}

// requireKindMessage: err is an *Error of kind whose message contains msg.
func requireKindMessage(t *testing.T, err error, kind ErrorKind, msg string) {
	t.Helper()
	require.Contains(t, requireKind(t, err, kind).Message, msg)
}
