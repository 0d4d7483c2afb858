package atomicfile

import (
	"os"
	"sync"
)

// unfinished is the set of temporaries this process is writing that
// RemoveUnfinished removes: Write's files until they are renamed into
// place (or removed), and the directories given to RemoveOnExit.
var unfinished = struct {
	sync.Mutex
	paths map[string]int
}{paths: map[string]int{}}

// RemoveOnExit has RemoveUnfinished remove the temporary path (a
// directory whole) until forget is called, which must come before path
// is renamed into place: once RemoveUnfinished has begun, forget waits
// for the end of the process, so that a directory is never renamed while
// it is being emptied. It serves Write's files, and a directory whose
// contents are nobody's until it is renamed into place (a checkpoint being
// saved). A directory whose presence means something (a marker that a set
// is being moved in) must not be given: a process ended at once must
// leave it.
func RemoveOnExit(path string) (forget func()) {
	unfinished.Lock()
	unfinished.paths[path]++
	unfinished.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			unfinished.Lock()
			if unfinished.paths[path]--; unfinished.paths[path] <= 0 {
				delete(unfinished.paths, path)
			}
			unfinished.Unlock()
		})
	}
}

// RemoveUnfinished removes the temporaries this process is writing now
// (see unfinished), for a process about to end at once (os.Exit, which
// runs no deferred call, after a second Ctrl-C): a killed process's
// temporaries wait for a later run's sweep (SweepStale), a minute old at
// least. The writers are not stopped: one still writing writes into a
// removed file until the process ends; one about to rename its temporary
// into place waits in forget.
func RemoveUnfinished() {
	unfinished.Lock()
	for p := range unfinished.paths {
		// Again when a writer made a file in the directory meanwhile (it
		// then waits in RemoveOnExit, and makes no other).
		for try := 0; try < 3 && os.RemoveAll(p) != nil; try++ {
		}
	}
	// (Never unlocked: the process is ending, and a temporary renamed
	// into place now could be one this emptied.)
}
