//go:build !unix

package retrieval

import (
	"fmt"
	"os"
)

// lockDir creates path exclusively where flock is not available; a killed
// process leaves it behind, and the error says to remove it.
func lockDir(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("another process is appending to it, or one was killed (remove %s if none runs): %w", path, err)
	}
	f.Close()
	return func() { os.Remove(path) }, nil
}
