package retrieval

import (
	"errors"
	"fmt"
	"os"

	"github.com/dinoclip/dinoclip/internal/flock"
)

// lockDir takes an exclusive lock on path (created if missing) without
// waiting (internal/flock). The operating system releases it when the
// process dies, so a killed append never leaves the index locked.
func lockDir(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := flock.TryLock(f, true); err != nil {
		f.Close()
		if errors.Is(err, flock.ErrLocked) {
			return nil, fmt.Errorf("another process is appending to it (it holds %s); wait for it to finish", path)
		}
		return nil, err
	}
	return func() { flock.Unlock(f); f.Close() }, nil
}
