//go:build !unix

package factory

import "os"

// canLock: no flock here; Prune then evicts nothing (a tree in use cannot be recognised).
const canLock = false

func lockShared(*os.File) error { return nil }

func tryLockExclusive(*os.File) bool { return false }
