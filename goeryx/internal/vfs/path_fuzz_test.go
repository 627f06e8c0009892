package vfs

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// pathSeeds are the seed corpus of the path fuzz targets: ordinary paths, dot segments,
// escapes, empty components, trailing slashes, NUL, long names.
var pathSeeds = []string{
	"", ".", "..", "/", "//", "a", "a/b", "/a/b/", "a//b", "./a/./b", "a/../b", "a/b/../..",
	"a/b/../../..", "../a", "/../a", "a/..", "a/../../b", "...", "a/.../b", ".a/..b/b..",
	"a\x00b", "\x00", strings.Repeat("n", MaxNameLen), strings.Repeat("n", MaxNameLen+1),
	strings.Repeat("a/", MaxPathLen/2), strings.Repeat("a/", MaxPathLen/2+1), "a/b/c/../../../../x",
	"link-rel-out", "link-abs-out/x", "link-rel-out-dir/secret", "sub/link-up-out", "link-root/etc",
	"link-in-dir/../../outside", "sub/../../outside/secret",
}

// FuzzGuestPath checks the invariants of guestPath, the resolver of every guest path of the
// Store views and the volumes: it never panics; a path it accepts resolves to clean components
// (no "", ".", ".." or "/" inside, each at most MaxNameLen) that equal the lexical resolution
// of the path below the mount root, so it never escapes it; a path that would climb above the
// root is EPERM; resolving the result again gives the same result (idempotent); and the host
// API's hostPath agrees on every path without "..".
func FuzzGuestPath(f *testing.F) {
	for _, s := range pathSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		comps, dirOnly, errno := guestPath(p)
		switch {
		case len(p) > MaxPathLen:
			require.Equal(t, experimentalsys.ENAMETOOLONG, errno)
			return
		case strings.IndexByte(p, 0) >= 0:
			require.Equal(t, experimentalsys.EINVAL, errno)
			return
		}
		// The first offending component decides: one that climbs above the root (EPERM), or
		// one longer than MaxNameLen.
		var want experimentalsys.Errno
		depth := 0
		for _, c := range strings.Split(p, "/") {
			switch {
			case c == "" || c == ".":
			case c == ".." && depth == 0:
				want = experimentalsys.EPERM
			case c == "..":
				depth--
			case len(c) > MaxNameLen:
				want = experimentalsys.ENAMETOOLONG
			default:
				depth++
			}
			if want != 0 {
				break
			}
		}
		require.Equal(t, want, errno, "%q", p)
		if errno != 0 {
			return
		}
		require.Zero(t, errno, "%q", p)

		for _, c := range comps {
			require.NotContains(t, []string{"", ".", ".."}, c, "%q", p)
			require.NotContains(t, c, "/")
			require.LessOrEqual(t, len(c), MaxNameLen)
		}
		lexical := strings.TrimPrefix(path.Clean("/"+p), "/")
		require.Equal(t, lexical, strings.Join(comps, "/"), "%q resolves lexically below the root", p)
		require.Equal(t, len(comps) > 0 && strings.HasSuffix(p, "/"), dirOnly, "%q", p)

		again, _, errno := guestPath(relPath(comps))
		require.Zero(t, errno)
		require.Equal(t, len(comps), len(again))
		if len(comps) > 0 {
			require.Equal(t, comps, again, "resolving %q again", p)
		}

		hostComps, hostDirOnly, err := hostPath(p)
		if strings.Contains("/"+p+"/", "/../") {
			require.ErrorIs(t, err, ErrInvalidPath)
		} else {
			require.NoError(t, err)
			require.Equal(t, len(comps), len(hostComps))
			if len(comps) > 0 {
				require.Equal(t, comps, hostComps)
			}
			require.Equal(t, dirOnly, hostDirOnly)
		}
	})
}

// FuzzHostDirPath opens, creates and makes directories at fuzzed paths in a host volume
// whose tree holds symbolic links that lead outside (volumeTree): whatever the path, nothing
// outside the volume is created, changed or opened (its files' contents are never returned).
func FuzzHostDirPath(f *testing.F) {
	for _, s := range pathSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		dir, outside := volumeTree(t)
		before := snapshot(t, filepath.Dir(outside))
		v, err := HostDir(dir, Options{})
		require.NoError(t, err)
		defer v.Close()

		for _, flag := range []experimentalsys.Oflag{oRdonly, oRdwr | oCreat, oWronly | oCreat | oTrunc} {
			file, errno := v.OpenFile(p, flag, 0o600)
			if errno != 0 {
				continue
			}
			if isDir, _ := file.IsDir(); !isDir {
				buf := make([]byte, 64)
				n, _ := file.Read(buf)
				require.NotContains(t, []string{"secret", "s2"}, string(buf[:n]), "%q read a file outside", p)
				_, _ = file.Write([]byte("W"))
			}
			file.Close()
		}
		_ = v.Mkdir(p, 0o755)

		after := snapshot(t, filepath.Dir(outside))
		for name, content := range before {
			if name == outside || strings.HasPrefix(name, outside+"/") {
				require.Equal(t, content, after[name], "%q changed %s", p, name)
			}
		}
		for name := range after {
			if _, ok := before[name]; !ok {
				require.True(t, strings.HasPrefix(name, dir+"/"), "%q created %s outside the volume", p, name)
			}
		}
		// The volume's root itself is still a directory.
		st, err := os.Lstat(dir)
		require.NoError(t, err)
		require.True(t, st.IsDir())
		_, err = os.Lstat(filepath.Join(outside, "secret"))
		require.False(t, errors.Is(err, os.ErrNotExist))
	})
}
