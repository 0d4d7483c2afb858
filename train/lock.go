package train

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/internal/madedirs"
)

// LockFile is the file in a run directory that a training process holds an
// advisory lock on (internal/flock) for as long as it works on the run.
// The operating system drops the lock when the process ends, however it
// ends, so a run killed with SIGKILL leaves no stale lock; the file itself
// stays, holding the pid of the last process that took it.
const LockFile = "lock"

// LockedError is LockRunDir's error when another process holds the run
// directory.
type LockedError struct {
	Dir string
	// Holder names the holder: "pid N" when the lock file is held and
	// names it, else a "pid unknown" that says why it is not known.
	Holder string
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("run %s is locked by another process (%s); wait for it to end, or train into another --out", e.Dir, e.Holder)
}

// RunLock is a held lock on a run directory, and on the directory its
// checkpoints lead to (see LockRunDir).
type RunLock struct {
	f                  *os.File
	releaseDir         func()
	releaseCheckpoints func()
	// removeMade removes what LockRunDir made: the lock file and the
	// directories of the run's path, where they are empty (Abandon).
	removeMade func()
}

// LockRunDir creates dir if needed and takes its lock without waiting: a
// second process (or a second lock in this one) on the same directory gets
// a *LockedError that names the holder's pid where the lock file says it.
// The directory that the run's checkpoints/ leads to, when there is one,
// is locked too: two runs whose checkpoints/ are links to the same
// directory (moved to a larger disk, linked twice by mistake) would prune
// each other's checkpoints, and the second to start is refused. (One after the other, the second, if new, is
// refused for the checkpoints it finds there: checkNewRunDir; resumed, it
// is refused the checkpoints another run owns: checkCheckpointsOwner.) A
// checkpoints/ leading into another run (checkCheckpointsDir), or one no
// checkpoint can be written in (checkpointsWritable), is refused too.
//
// A refusal here, once the directory is held, leaves no lock file or
// directory that LockRunDir made; Abandon does the same for a new run
// refused later.
func LockRunDir(dir string) (*RunLock, error) {
	madeTop, err := madedirs.MkdirAll(dir)
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	// The directory itself first (where the system locks directories): a
	// lock file removed while its trainer runs (taken for a stale one)
	// would be made again by the next, whose lock on it would exclude
	// nothing; and a directory another dinoclip holds (synth writing its
	// data there) is refused before a lock file is left in it.
	releaseDir, err := flock.LockDir(dir)
	if errors.Is(err, flock.ErrLocked) {
		holder := dirHolder
		if h, held := LockHolder(dir); held { // (its pid when the lock file is held too)
			holder = h
		}
		return nil, &LockedError{Dir: dir, Holder: holder}
	}
	if err != nil {
		return nil, fmt.Errorf("run directory %s: %w", dir, err)
	}
	// What is held so far, let go again, last first, on a refusal below.
	undo := []func(){releaseDir}
	refuse := func(err error) (*RunLock, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	f, madeLock, err := lockRunFile(dir, path)
	if err != nil {
		return refuse(err)
	}
	undo = append(undo, func() { flock.Unlock(f); f.Close() })
	removeMade := func() {
		if madeLock {
			os.Remove(path)
		}
		madedirs.Remove(dir, madeTop)
	}
	if removeWhileHeld {
		undo = append(undo, removeMade)
	} else {
		undo = append([]func(){removeMade}, undo...) // (run last)
	}
	// A checkpoints/ leading into another run is refused before anything
	// is written (or locked) where it leads.
	if err := checkCheckpointsDir(dir); err != nil {
		return refuse(err)
	}
	releaseCheckpoints, err := lockCheckpointsDir(dir)
	if err != nil {
		return refuse(err)
	}
	undo = append(undo, releaseCheckpoints)
	if err := checkpointsWritable(dir); err != nil {
		return refuse(err)
	}
	if err := checkCheckpointsOwner(dir); err != nil {
		return refuse(err)
	}
	// Record the holder for the error above. The lock, not the file's
	// content, is what excludes: a torn write here misleads only a message.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &RunLock{f: f, releaseDir: releaseDir, releaseCheckpoints: releaseCheckpoints, removeMade: removeMade}, nil
}

// lockCheckpointsDir locks the directory the run in dir keeps its
// checkpoints in, where it leads (flock.LockDir: none where directories
// cannot be locked); a run without one yet makes its own, which no other
// run's link can lead to.
func lockCheckpointsDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, CheckpointsDir)
	st, err := os.Stat(path)
	if err != nil || !st.IsDir() {
		return func() {}, nil // (checkRunDirFiles says what is wrong with it)
	}
	if run, err := os.Stat(dir); err == nil && os.SameFile(st, run) {
		return func() {}, nil // (locked as the run directory; checkCheckpointsDir refuses it)
	}
	release, err = flock.LockDir(path)
	if errors.Is(err, flock.ErrLocked) {
		where := path
		if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
			where = fmt.Sprintf("%s (%s, where it leads)", path, real)
		}
		return nil, fmt.Errorf("run directory %s: its checkpoints directory %s is in use by another training run: two runs sharing one prune each other's checkpoints; give this run a checkpoints directory of its own", dir, where)
	}
	if err != nil {
		return nil, fmt.Errorf("run directory %s: %w", dir, err)
	}
	return release, nil
}

// checkpointsWritable refuses a run whose checkpoints directory (when it
// has one) this process cannot make a checkpoint in: found at the first
// save, that could be an epoch of training on. It makes and removes the
// temporary directory a checkpoint is written into (one a killed process
// leaves is swept as any checkpoint's).
func checkpointsWritable(dir string) error {
	path := filepath.Join(dir, CheckpointsDir)
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		return nil // (a new run makes it; checkRunDirFiles says what else is wrong)
	}
	tmp, release, err := atomicfile.MkdirTemp(path, "writable")
	if err != nil {
		return fmt.Errorf("run directory %s: no checkpoint can be written in its checkpoints directory (%w); make it writable, or train into another --out", dir, err)
	}
	release()
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("run directory %s: removing the checkpoints directory's test of writing: %w", dir, err)
	}
	return nil
}

// CheckpointsOwnerFile is the file, in the directory a run's checkpoints/
// link leads to, that records the run directory whose checkpoints it
// holds: its real path, and on its second line its identity
// (atomicfile.Identity: device and inode, which stay with the directory
// under any path and through a move within its filesystem, and which no
// copy has), each line ended by a newline.
const CheckpointsOwnerFile = ".run"

// maxOwnerRecord bounds what is read of an owner record: a path and an
// identity take far less, and a file of gigabytes is no record.
const maxOwnerRecord = 16 << 10

// ownerRecord is what a CheckpointsOwnerFile records.
type ownerRecord struct{ path, identity string }

// linkedCheckpoints is where the checkpoints/ link of the run in dir
// leads (its real path), and whether it is such a link to a directory it
// reaches; a checkpoints/ that is a directory is the run's own.
func linkedCheckpoints(dir string) (target string, ok bool) {
	path := filepath.Join(dir, CheckpointsDir)
	if !atomicfile.IsLink(path) {
		return "", false
	}
	target, err := atomicfile.RealPath(path)
	if st, serr := os.Stat(target); err != nil || serr != nil || !st.IsDir() {
		return "", false // (checkCheckpointsDir says what is wrong with it)
	}
	return target, true
}

// checkCheckpointsOwner refuses a run whose checkpoints/ link leads to the
// checkpoints of another run (CheckpointsOwnerFile). A copy of a run (cp
// -a keeps the link) would otherwise prune the original's checkpoints,
// one run after the other, which the lock (two at once) does not see.
// The recorded run is this one when its path is this directory. Another
// is refused while its directory still holds a run whose checkpoints/
// leads there, whatever this one's identity (inode numbers repeat across
// filesystems: a volume's root, a snapshot's copy); and, when it is out of
// reach (gone, or on a disk not mounted now), or there with checkpoints
// of its own (the record came with checkpoints moved by hand from a copy
// of it), unless its recorded identity is this directory's (reached by
// another path, or moved within its filesystem): a copy cannot tell which.
// A record without an identity (where the system gives none) whose run is
// gone is no owner: claimCheckpointsDir replaces it, as it does a record
// that is none (a run from before records).
func checkCheckpointsOwner(dir string) error {
	target, linked := linkedCheckpoints(dir)
	if !linked {
		target = filepath.Join(dir, CheckpointsDir) // (recorded too: claimCheckpointsDir)
	}
	owner := filepath.Join(target, CheckpointsOwnerFile)
	if st, err := os.Lstat(owner); err == nil && st.IsDir() {
		return fmt.Errorf("run directory %s: %s, where dinoclip records which run's checkpoints these are, is a directory: move it away", dir, owner)
	}
	if !linked {
		return nil
	}
	rec, ok := readOwnerRecord(owner)
	switch {
	case !ok || atomicfile.SameFile(rec.path, dir):
		return nil
	case leadsTo(rec.path, target):
		return fmt.Errorf("run directory %s: its checkpoints directory %s leads to %s, the checkpoints of the run in %s, whose checkpoints/ leads there too (a copy of that run, or a link made to its checkpoints?): training here would prune that run's checkpoints; give this run its own (replace the link by a copy: cp -rL, or by a link to a directory of its own), or, if that run no longer uses them, remove %s",
			dir, filepath.Join(dir, CheckpointsDir), target, rec.path, owner)
	case rec.identity != "" && !hasIdentity(dir, rec.identity) && isRun(rec.path):
		return fmt.Errorf("run directory %s: its checkpoints directory %s leads to %s, which records the run in %s as theirs, whose own checkpoints/ does not lead there, and which is not this directory by its identity (this run a copy of that one, whose checkpoints were moved here by hand before it trained again?): training here could prune the checkpoints of another copy whose checkpoints/ leads there too; if no other run's checkpoints/ leads there, remove %s",
			dir, filepath.Join(dir, CheckpointsDir), target, rec.path, owner)
	case rec.identity != "" && !hasIdentity(dir, rec.identity):
		return fmt.Errorf("run directory %s: its checkpoints directory %s leads to %s, the checkpoints of the run that was in %s, which is gone or out of reach now (a disk not mounted?) and is not this directory by its identity (a copy of that run?): training here could prune that run's checkpoints; give this run its own (replace the link by a copy: cp -rL, or by a link to a directory of its own); or, if this directory is that run (moved to another filesystem, restored from a backup, reached from another host) or that run is gone for good, remove %s",
			dir, filepath.Join(dir, CheckpointsDir), target, rec.path, owner)
	}
	return nil
}

// claimCheckpointsDir records this run (dir) as the owner of the directory
// its checkpoints/ link leads to (see checkCheckpointsOwner), once the
// command is sure to go on: a refused one takes no ownership away. A
// checkpoints/ directory of the run's own is recorded too, though nothing
// reads its record there: moved to a larger disk by hand and linked back,
// it takes the record with it, and a copy of the run made after that (cp
// -a keeps the link) is refused the checkpoints, as where the run had
// recorded itself through the link; with no record, the first of the two
// to resume would take them and prune the other's.
func claimCheckpointsDir(dir string) error {
	target, ok := linkedCheckpoints(dir)
	if !ok {
		target = filepath.Join(dir, CheckpointsDir)
		if st, err := os.Lstat(target); err != nil || !st.IsDir() {
			return nil // (checkCheckpointsDir says what is wrong with it)
		}
	}
	self, err := atomicfile.RealPath(dir)
	if err != nil {
		return fmt.Errorf("run directory %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("run directory %s: %w", dir, err)
	}
	want := ownerRecord{self, atomicfile.Identity(st)}
	owner := filepath.Join(target, CheckpointsOwnerFile)
	// What a claim killed while it wrote left (only a holder of the
	// checkpoints' lock writes the record).
	atomicfile.SweepOwn(target, CheckpointsOwnerFile)
	if rec, ok := readOwnerRecord(owner); ok && rec == want {
		return nil
	}
	// The run's own record, whatever is there (read-only, a link: not
	// followed), is replaced.
	os.Remove(owner)
	if err := atomicfile.WriteBytes(owner, []byte(want.path+"\n"+want.identity+"\n")); err != nil {
		return fmt.Errorf("run directory %s: recording it as the owner of its checkpoints: %w", dir, err)
	}
	return nil
}

// readOwnerRecord reads the owner record at path; false when there is
// none: no file, not a regular file, or not a record (too long, no
// absolute path). The identity is the last line (a path may hold
// newlines), when it reads as one.
func readOwnerRecord(path string) (ownerRecord, bool) {
	f, err := atomicfile.OpenRegular(path, os.O_RDONLY, 0)
	if err != nil {
		return ownerRecord{}, false
	}
	defer f.Close()
	b, err := atomicfile.ReadAtMost(f, maxOwnerRecord)
	text, ended := strings.CutSuffix(string(b), "\n")
	if err != nil || !ended {
		return ownerRecord{}, false
	}
	rec := ownerRecord{path: text}
	if i := strings.LastIndexByte(text, '\n'); i >= 0 && isIdentity(text[i+1:]) {
		rec = ownerRecord{text[:i], text[i+1:]}
	}
	return rec, filepath.IsAbs(rec.path)
}

// isIdentity reports whether s reads as an atomicfile.Identity ("dev:ino",
// decimal) or is empty (a system that gives none).
func isIdentity(s string) bool {
	dev, ino, ok := strings.Cut(s, ":")
	isNumber := func(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }
	return s == "" || ok && isNumber(dev) && isNumber(ino)
}

// HoldsCheckpoints reports whether dir holds a step checkpoint (a
// directory of a checkpoint's name with an optimizer file): a run's
// checkpoints, whatever the path it is reached by (moved to a larger disk
// before any run recorded itself there, a bind mount).
func HoldsCheckpoints(dir string) bool {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, _, ok := parseCheckpointName(e.Name()); ok && e.IsDir() {
			if _, err := os.Lstat(filepath.Join(dir, e.Name(), checkpoint.OptimizerFile)); err == nil {
				return true
			}
		}
	}
	return false
}

// IsCheckpointsDir reports whether dir is, by what a run leaves, a
// training run's checkpoints directory: named so in a run directory that
// holds its run.json and its lock, or holding the owner record of the
// directory a run's checkpoints/ link leads to.
func IsCheckpointsDir(dir string) bool {
	if filepath.Base(dir) == CheckpointsDir {
		run := filepath.Dir(dir)
		runFile, err1 := os.Lstat(filepath.Join(run, RunFile))
		_, err2 := os.Lstat(filepath.Join(run, LockFile))
		if err1 == nil && runFile.Mode().IsRegular() && err2 == nil {
			return true
		}
	}
	_, ok := readOwnerRecord(filepath.Join(dir, CheckpointsOwnerFile))
	return ok
}

// hasIdentity reports whether dir is the directory of the given identity.
func hasIdentity(dir, identity string) bool {
	st, err := os.Stat(dir)
	return err == nil && identity == atomicfile.Identity(st)
}

// isRun reports whether dir holds a run (its run.json).
func isRun(dir string) bool {
	st, err := os.Lstat(filepath.Join(dir, RunFile))
	return err == nil && st.Mode().IsRegular()
}

// leadsTo reports whether run is a run directory whose checkpoints/ leads
// to target.
func leadsTo(run, target string) bool {
	if !isRun(run) {
		return false
	}
	t, err := atomicfile.RealPath(filepath.Join(run, CheckpointsDir))
	return err == nil && t == target
}

// lockHolder is the pid the lock file at path records, as "pid N".
func lockHolder(path string) string {
	// A regular file only, and a pid's worth of it: a lock replaced by a
	// named pipe or a link to /dev/zero must not hang or fill memory.
	f, err := atomicfile.OpenRegular(path, os.O_RDONLY, 0)
	if err != nil {
		return "pid unknown"
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 32))
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		return "pid " + strconv.Itoa(pid)
	}
	return "pid unknown"
}

// checkUnlocked returns a *LockedError when another process holds dir's
// lock, without taking it or creating anything (and runFileError for a
// lock that is not a regular file).
func checkUnlocked(dir string) error {
	path := filepath.Join(dir, LockFile)
	f, err := atomicfile.OpenRegular(path, os.O_RDONLY, 0)
	var nr *atomicfile.NotRegularError
	if errors.As(err, &nr) {
		return runFileError(path, nr.Kind)
	}
	if err == nil {
		defer f.Close()
		if err := flock.TryLock(f, false); errors.Is(err, flock.ErrLocked) {
			return &LockedError{Dir: dir, Holder: lockHolder(path)}
		}
		// The shared lock, if taken, dropped now: Windows may release one
		// some time after its handle closes, and a trainer starting
		// meanwhile would find it held.
		flock.Unlock(f)
	}
	return nil
}

// dirHolder names the holder of a run directory whose lock file no
// process holds.
const dirHolder = "pid unknown: the directory is locked, by a trainer whose lock file was removed, or by a dinoclip synth, demo or index writing into it"

// LockHolder is the holder ("pid N") of the lock of the run in dir, and
// whether a process holds it: training in it now.
func LockHolder(dir string) (string, bool) {
	var locked *LockedError
	if errors.As(checkUnlocked(dir), &locked) {
		return locked.Holder, true
	}
	return "", false
}

// TrainingNow is LockHolder, or, where no process holds the lock file,
// whether another holds the directory's own lock: a trainer whose lock
// file was removed (taken for a stale one), or a dinoclip writing into the
// directory. (Not for a process that may hold the directory itself.)
func TrainingNow(dir string) (string, bool) {
	if holder, held := LockHolder(dir); held {
		return holder, true
	}
	if flock.DirHeld(dir) {
		return dirHolder, true
	}
	return "", false
}

// Abandon is Release for a new run refused before it wrote its run.json:
// it also removes what LockRunDir made (the lock file, and the run
// directory and those above it that it made, where nothing else was put
// in them), so that a refused run leaves nothing behind.
func (l *RunLock) Abandon() error {
	if !removeWhileHeld {
		err := l.Release()
		l.removeMade()
		return err
	}
	l.removeMade()
	return l.Release()
}

// removeWhileHeld says whether what LockRunDir made is removed while its
// locks are held, so that a trainer that takes the directory next finds
// it as it was before: not on Windows, which removes no file that is open
// (there it goes after the locks; a trainer that opened the lock file
// meanwhile keeps it, and the removal fails, harmlessly).
const removeWhileHeld = runtime.GOOS != "windows"

// lockRunFile opens the run's lock file at path, made if missing (made
// says so), and takes its lock without waiting: a second holder gets a
// *LockedError naming the first. Not through a link: the pid written to
// it would truncate what it leads to, and a lock on another file excludes
// no other trainer. The lock counts once the file locked is the one at
// path: a refused trainer removes the lock file it made (Abandon), and
// where directories cannot be locked another may have opened it first,
// then locked a file no longer there, which excludes nobody; it tries the
// file at path again.
func lockRunFile(dir, path string) (f *os.File, made bool, err error) {
	for attempt := 1; ; attempt++ {
		_, err := os.Lstat(path)
		made = errors.Is(err, fs.ErrNotExist)
		if f, err = openRunFile(path, os.O_RDWR); err != nil {
			return nil, false, err
		}
		// Briefly: a reader that looks whether the run is training
		// (checkUnlocked: info, eval) holds a shared lock for an instant.
		if err := flock.TryLockBriefly(f, true); err != nil {
			f.Close()
			if errors.Is(err, flock.ErrLocked) {
				return nil, false, &LockedError{Dir: dir, Holder: lockHolder(path)}
			}
			return nil, false, fmt.Errorf("run directory %s: %w", dir, err)
		}
		held, herr := f.Stat()
		at, aerr := os.Stat(path)
		if herr == nil && aerr == nil && os.SameFile(held, at) {
			return f, made, nil
		}
		flock.Unlock(f)
		f.Close()
		if attempt == 10 {
			return nil, false, fmt.Errorf("run directory %s: its %s keeps being removed or replaced while it is locked (by another trainer starting?)", dir, LockFile)
		}
	}
}

// Release drops the lock: explicitly, as Windows may release a lock some
// time after its handle closes, then by closing the file.
func (l *RunLock) Release() error {
	l.releaseCheckpoints()
	l.releaseDir()
	return errors.Join(flock.Unlock(l.f), l.f.Close())
}

// checkRunFile refuses a file of a run directory (run.json, the lock,
// metrics.jsonl) that exists but is not a regular file: training writes
// them in place, so through a symbolic link it would write (truncate,
// append to, replace) whatever the link leads to, outside the run, and
// reading a named pipe would hang. It looks at the name itself (Lstat),
// never follows it; a file that does not exist passes.
func checkRunFile(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if !st.Mode().IsRegular() {
		return runFileError(path, atomicfile.Kind(st.Mode()))
	}
	return nil
}

// runFileError refuses the run file at path, which is kind.
func runFileError(path, kind string) error {
	return fmt.Errorf("%s is %s, not a regular file: training writes it in place and will not write through it; replace it with a plain copy of the file, or remove it",
		path, kind)
}

// openRunFile opens the run directory's file at path with flag (without
// O_CREATE or O_TRUNC), creating it when it does not exist, and refuses it
// when it is not a regular file (runFileError), also one put in its place
// while it is opened (atomicfile.OpenRegular).
func openRunFile(path string, flag int) (*os.File, error) {
	f, err := atomicfile.OpenRegular(path, flag|os.O_CREATE, 0o644)
	if nr := (*atomicfile.NotRegularError)(nil); errors.As(err, &nr) {
		return nil, runFileError(path, nr.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	return f, nil
}
