//go:build !linux

package goeryx

import "os"

// tryLockFile: no inter-process lock here; concurrent cold starts duplicate work, which is
// still correct (every cache file is written atomically).
func tryLockFile(*os.File) (bool, error) { return true, nil }

// fileIdentity: unknown, so stdlib.zip's hash is checked in every process.
func fileIdentity(*os.File) string { return "" }
