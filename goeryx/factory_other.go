//go:build !unix

package goeryx

import (
	"fmt"
	"os"
)

// checkPrivateDir fails unless dir is a directory (not a link).
func checkPrivateDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}
