package atomicfile

import (
	"maps"
	"os"
	"slices"
	"sync"
)

// unfinished is the set of temporaries this process is writing that
// RemoveUnfinished removes: Write's files until they are renamed into
// place (or removed), MkdirTempRemovedOnExit's directories,
// SymlinkRemovedOnExit's links and WriteBytesRemovedOnExit's files until
// their forget; and UndoOnExit's undos, by the order they were registered
// in.
var unfinished = struct {
	sync.Mutex
	paths map[string]int
	undos map[int]func()
	next  int // the key of the next undo
}{paths: map[string]int{}, undos: map[int]func(){}}

// makeTempRemovedOnExit makes a temporary for base in dir as makeTemp
// does, and has RemoveUnfinished remove it (a directory whole) until
// forget is called, which must come before the temporary is renamed into
// place: once RemoveUnfinished has begun, forget waits for the end of the
// process, so that nothing is renamed while it is being emptied. Both
// happen under the lock RemoveUnfinished takes, so a process ended at once
// has never made a temporary it would not remove (a signal between the
// two would leave it for a later sweep). It serves Write's files, and
// MkdirTempRemovedOnExit's directories.
func makeTempRemovedOnExit(dir, base string, make func(path string) error) (path string, forget func(), err error) {
	unfinished.Lock()
	path, err = makeTemp(dir, base, make)
	if err == nil {
		unfinished.paths[path]++
	}
	unfinished.Unlock()
	if err != nil {
		return path, nil, err
	}
	return path, forgetter(path), nil
}

// SymlinkRemovedOnExit makes path a symbolic link to target, as os.Symlink
// does, and has RemoveUnfinished remove it until forget is called, unless
// it leads somewhere by then: a link made to be renamed into place once
// the work it leads to is done (a checkpoint being saved, renamed into
// place whole), which an exit before then would leave leading nowhere,
// and an exit after, between the work's rename and the link's, leaves as
// the pointer to it. forget comes before the rename, as
// makeTempRemovedOnExit's.
func SymlinkRemovedOnExit(target, path string) (forget func(), err error) {
	unfinished.Lock()
	err = os.Symlink(target, path)
	if err == nil {
		unfinished.paths[path]++
	}
	unfinished.Unlock()
	if err != nil {
		return nil, err
	}
	return forgetter(path), nil
}

// WriteBytesRemovedOnExit is WriteBytes of a new file that a process
// ended at once (RemoveUnfinished) removes until forget is called: a
// record that work is under way, which an exit before the work has
// changed anything must not leave. forget comes before the work's first
// change, as makeTempRemovedOnExit's before the rename: once
// RemoveUnfinished has begun, it waits for the end of the process.
func WriteBytesRemovedOnExit(path string, data []byte) (forget func(), err error) {
	// (Before the file is there: an exit while it is written leaves none.)
	unfinished.Lock()
	unfinished.paths[path]++
	unfinished.Unlock()
	forget = forgetter(path)
	if err := WriteBytes(path, data); err != nil {
		forget()
		return nil, err
	}
	return forget, nil
}

// UndoOnExit has RemoveUnfinished call undo once it has removed the
// temporaries, until forget is called: the removal of what a writer made
// for its temporary (a directory made to hold it, empty once it is
// removed). forget comes before that is needed, as makeTempRemovedOnExit's
// before the rename: once RemoveUnfinished has begun, it waits for the end
// of the process. undo must write nothing through this package, whose
// writers wait for RemoveUnfinished's lock.
func UndoOnExit(undo func()) (forget func()) {
	unfinished.Lock()
	key := unfinished.next
	unfinished.next++
	unfinished.undos[key] = undo
	unfinished.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			unfinished.Lock()
			delete(unfinished.undos, key)
			unfinished.Unlock()
		})
	}
}

// forgetter is the forget of a temporary at path: RemoveUnfinished no
// longer removes it (once for each time it was made).
func forgetter(path string) func() {
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
		if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSymlink != 0 {
			if _, err := os.Stat(p); err == nil {
				continue // a SymlinkRemovedOnExit link to work done
			}
		}
		// Again when a writer made a file in the directory meanwhile (it
		// then waits in makeTempRemovedOnExit, and makes no other).
		for try := 0; try < 3 && os.RemoveAll(p) != nil; try++ {
		}
	}
	// The latest first: what was made for a temporary after another is
	// within what was made for that one, or beside it.
	for _, key := range slices.Backward(slices.Sorted(maps.Keys(unfinished.undos))) {
		unfinished.undos[key]()
	}
	// (Never unlocked: the process is ending, and a temporary renamed
	// into place now could be one this emptied.)
}
