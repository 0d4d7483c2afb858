package retrieval

import (
	"errors"
	"fmt"
	"os"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/flock"
)

// lockDir takes an exclusive lock on path (created if missing) without
// waiting (internal/flock). The operating system releases it when the
// process dies, so a killed append never leaves the index locked.
//
// The holder may remove the file before it unlocks (a first append that
// failed removes what it made, see IndexWriter.Close). A process that
// opened the file before the removal then locks a file no longer at path,
// so the lock is only taken once the file locked is the one at path; if it
// is not, the lock is tried again on the file there now.
func lockDir(path string) (func(), error) {
	for attempt := 1; ; attempt++ {
		// A plain file only: through a link the lock would create or lock
		// a file outside the index (and Close remove the link).
		f, err := atomicfile.OpenRegular(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		if err := flock.TryLockBriefly(f, true); err != nil { // (over IsIndex's probe)
			f.Close()
			if errors.Is(err, flock.ErrLocked) {
				return nil, fmt.Errorf("another process is appending to it (it holds %s); wait for it to finish", path)
			}
			return nil, err
		}
		held, herr := f.Stat()
		at, aerr := os.Stat(path)
		if herr == nil && aerr == nil && os.SameFile(held, at) {
			return func() { flock.Unlock(f); f.Close() }, nil
		}
		flock.Unlock(f)
		f.Close()
		if attempt == 10 {
			return nil, fmt.Errorf("%s keeps being removed or replaced while it is locked (by another process appending?)", path)
		}
	}
}
