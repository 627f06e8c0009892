//go:build unix

package factory

import (
	"os"

	"golang.org/x/sys/unix"
)

// canLock: flock(2) on directories is available, so trees in use can be told apart.
const canLock = true

func lockShared(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH)
		if err != unix.EINTR {
			return err
		}
	}
}

func tryLockExclusive(f *os.File) bool {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}
