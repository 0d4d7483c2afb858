package flocktest

import (
	"os"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/internal/flock"
)

// Hold takes a lock on the file or directory at path, exclusive as a
// writer at work holds it or shared as a reader looking whether one is at
// work does (info, eval, a search), until the test ends, or for d when d
// is more than 0.
func Hold(t testing.TB, path string, exclusive bool, d time.Duration) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := flock.TryLock(f, exclusive); err != nil {
		t.Fatal(err)
	}
	if d > 0 {
		time.AfterFunc(d, func() { flock.Unlock(f) })
	}
}
