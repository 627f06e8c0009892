//go:build unix

package goeryx

import (
	"fmt"
	"os"
	"syscall"
)

// checkPrivateDir fails unless dir is a directory (not a link) owned by this user and closed
// to others.
func checkPrivateDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || !ok || int(sys.Uid) != os.Getuid() || st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is not a private directory of this user", dir)
	}
	return nil
}
