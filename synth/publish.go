package synth

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/internal/madedirs"
	"github.com/dinoclip/dinoclip/internal/mountpoint"
)

// How a data set is published (stageInto).
//
// The files are written into a staging directory that only synth makes,
// named so that synth can tell its own: beside the data directory DIR,
// .BASE.synth.tmp-N (BASE is DIR's name, N random digits:
// atomicfile.MkdirTemp's name for BASE.synth); or, when there can be none
// beside DIR (its parent is not writable, or DIR is a mount point),
// dataset.StagingPrefix+N inside DIR. The staging directory is locked while its
// writer lives (atomicfile.MkdirTempRemovedOnExit), so that the next run
// tells a killed run's from a live one's; and it holds nothing but the
// set's files, which is all that run removes. Until the set is put in
// place, a process ended at once (a signal: atomicfile.RemoveUnfinished)
// removes it.
//
// Once every file is written the set is published in one step when DIR
// allows it: a staging directory beside an empty DIR is renamed onto it;
// beside a DIR that holds nothing but an old set (overwrite), it is
// exchanged with DIR (renameat2 RENAME_EXCHANGE on Linux; elsewhere, or on
// a filesystem without it, DIR is renamed aside and the new set renamed in,
// so that for that moment there is no DIR, never a mixed one), and the old
// set removed. A DIR that holds other files too keeps them: the new files
// move in one by one, and while they do DIR holds a dataset.StagingPrefix+N
// directory, which readers (dataset.CheckComplete: train.OpenDataset,
// retrieval.LoadSet, dinoclip info) take for an incomplete set. A run
// killed then leaves it; the next run into DIR removes it (the set beside
// it is that run's, incomplete, and is replaced without overwrite).
//
// The names are package dataset's, which readers share
// (dataset.StagingPrefix, dataset.LegacyStagingDir).

// isShardFile reports whether name is a file a reader takes for part of a
// training set: an existing set that is refused without overwrite, and
// replaced with it.
func isShardFile(name string) bool {
	return strings.HasSuffix(name, dataset.FeatureSuffix) || strings.HasSuffix(name, dataset.TargetSuffix)
}

// isOwnShardFile reports whether name is a file of a shard as synth names
// it (ShardName followed by dataset.FeatureSuffix or dataset.TargetSuffix): what synth
// writes into a staging directory, and so all it removes of one.
func isOwnShardFile(name string) bool {
	stem, ok := strings.CutSuffix(name, dataset.FeatureSuffix)
	if !ok {
		stem, ok = strings.CutSuffix(name, dataset.TargetSuffix)
	}
	digits, ok2 := strings.CutPrefix(stem, shardNamePrefix)
	if !ok || !ok2 || len(digits) < shardNameDigits {
		return false
	}
	return strings.Trim(digits, "0123456789") == ""
}

// evalFiles are the files of an evaluation set.
var evalFiles = []string{dataset.ImageFeaturesFile, dataset.ImageCLIPFile, dataset.CaptionCLIPFile, dataset.CaptionImageFile, dataset.EvalInfoFile}

func isEvalFile(name string) bool { return slices.Contains(evalFiles, name) }

// stagingBeside is the base name synth gives
// atomicfile.MkdirTempRemovedOnExit (or TempPath) for a staging directory
// beside the data directory named base.
func stagingBeside(base string) string { return base + "." + dataset.StagingBase }

// LeftoverBytes is the size of the staging directories that killed runs
// left for the data directories sets of out (dataset.TrainDir,
// dataset.EvalDir; beside each, and inside it),
// which the next run into them removes before it writes: space a check of
// the free disk counts as free. A staging directory whose writer holds its
// lock (a run at work), or whose lock cannot be told, is not counted: it
// stays.
func LeftoverBytes(out string, sets ...string) int64 {
	var n int64
	// (What its sweep keeps is not counted: a directory holding a file
	// that no writer of the set's makes.)
	add := func(dir string, own func(name string) bool) {
		if !lockFree(dir) || atomicfile.HoldsOnly(dir, own) != nil {
			return
		}
		filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					n += info.Size()
				}
			}
			return nil
		})
	}
	for _, set := range sets {
		own := isOwnShardFile
		if set == dataset.EvalDir {
			own = isEvalFile
		}
		// Beside the set's directory itself (stageInto's), a link to it
		// followed.
		dir := filepath.Join(out, set)
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		parent, base := filepath.Dir(dir), filepath.Base(dir)
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if b, ok := atomicfile.TempOf(e.Name()); ok && e.IsDir() && b == stagingBeside(base) {
				add(filepath.Join(parent, e.Name()), own)
			}
		}
		inside, _ := os.ReadDir(dir)
		for _, e := range inside {
			if e.IsDir() && dataset.IsStagingName(e.Name()) {
				add(filepath.Join(dir, e.Name()), own)
			}
		}
	}
	return n
}

// CheckTrainingData refuses what WriteTrainingData would refuse for these
// arguments without writing anything (but for an error of opts, which
// Options.Validate reports): sizes it cannot write, an existing set in dir
// without opts.Overwrite, a dataset.LegacyStagingDir in dir. A caller that writes
// more than one set refuses before it writes the first.
func CheckTrainingData(dir string, opts Options, rows, rowsPerShard int) error {
	if err := CheckTrainingSizes(dir, opts, rows, rowsPerShard); err != nil {
		return err
	}
	return checkDir(dir, "training shards", isShardFile, opts.Overwrite)
}

// CheckTrainingSizes refuses the sizes WriteTrainingData would refuse,
// without looking at dir (named in the message): for a caller that makes
// directories before it checks the rest.
func CheckTrainingSizes(dir string, opts Options, rows, rowsPerShard int) error {
	_, _, err := trainingShards(dir, opts, rows, rowsPerShard)
	return err
}

// CheckEvalDir refuses the directory dir as WriteEvalSet would, without
// writing anything (CheckEvalSet checks the sizes).
func CheckEvalDir(dir string, overwrite bool) error {
	return checkDir(dir, "an evaluation set", isEvalFile, overwrite)
}

// trainingShards checks the sizes of a training set and returns its number
// of shards and the rows of its largest one.
func trainingShards(dir string, opts Options, rows, rowsPerShard int) (shards, largest int, err error) {
	if rows < 1 || rowsPerShard < 1 {
		return 0, 0, fmt.Errorf("synth: training data in %s: %d rows in shards of %d; both must be at least 1", dir, rows, rowsPerShard)
	}
	rowsPerShard = min(rowsPerShard, rows) // the largest shard written
	shards = rows / rowsPerShard
	if rows%rowsPerShard != 0 {
		shards++
	}
	if shards > MaxShards {
		return 0, 0, fmt.Errorf("synth: training data in %s: %d rows in shards of %d make %d shards, more than %d; use larger shards", dir, rows, rowsPerShard, shards, MaxShards)
	}
	if err := checkSize("rows per shard", rowsPerShard, max(opts.InputDim, opts.OutputDim), "smaller shards"); err != nil {
		return 0, 0, err
	}
	return shards, rowsPerShard, nil
}

func checkDir(dir, what string, isDataFile func(string) bool, overwrite bool) error {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // made by the writer (or, a dangling link, refused by it)
	}
	if err != nil {
		return fmt.Errorf("synth: output directory: %w", err)
	}
	existing, staging, err := inspectDir(dir, real, isDataFile)
	if err != nil {
		return err
	}
	return refuseExisting(dir, what, existing, overwrite || len(staging) > 0)
}

// inspectDir lists the data files (for which isDataFile is true) and synth's
// staging directories in real, the directory dir leads to, and refuses a
// dataset.LegacyStagingDir there.
func inspectDir(dir, real string, isDataFile func(string) bool) (existing, staging []string, err error) {
	entries, err := os.ReadDir(real)
	if err != nil {
		return nil, nil, fmt.Errorf("synth: output directory: %w", err)
	}
	for _, e := range entries {
		switch name := e.Name(); {
		case name == dataset.LegacyStagingDir && e.IsDir():
			p := filepath.Join(dir, name)
			return nil, nil, fmt.Errorf("synth: %s exists: the staging directory an older dinoclip synth left when it was interrupted "+
				"(the set in %s is then incomplete), or another program's (rsync --partial-dir); dinoclip synth removes no directory "+
				"it did not make. Remove %s if nothing is using it, and run again (with --force if %s still holds a data set)", p, dir, p, dir)
		case e.IsDir() && dataset.IsStagingName(name):
			staging = append(staging, name)
		case !e.IsDir() && isDataFile(name):
			existing = append(existing, name)
		}
	}
	return existing, staging, nil
}

// refuseExisting refuses the data files existing of dir unless overwrite.
func refuseExisting(dir, what string, existing []string, overwrite bool) error {
	if len(existing) == 0 || overwrite {
		return nil
	}
	shown := existing
	if len(shown) > 3 {
		shown = append(shown[:3:3], "...")
	}
	return fmt.Errorf("synth: %s already holds %s (%d files: %s); set the overwrite option (dinoclip synth --force) to replace them",
		dir, what, len(existing), strings.Join(shown, ", "))
}

// stageInto writes a data set into dir, made if missing (see "How a data
// set is published" at the top of this file). It refuses when dir already holds files of a data set
// (those for which isDataFile is true; what names them in the error)
// unless overwrite is set, or they are the incomplete set of an
// interrupted run: then they are replaced (an old shard that the new set
// does not replace, for shards have free names, would otherwise be read as
// part of it). fill writes the files into the staging directory it is
// given, under their names in dir, and returns them (with their paths in
// dir). A run that fails (a full disk) or is cancelled leaves dir as it
// was. A lock on dir refuses a second writer while one is at work.
//
// isOwnFile is true for the names fill writes: all that a staging
// directory left by a killed run may hold for it to be removed. What is
// removed of killed runs, or left because a run may be at work, is said
// on opts.Log.
func stageInto(dir, what string, isDataFile, isOwnFile func(name string) bool, opts Options, fill func(staging string) ([]File, error)) (_ []File, err error) {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	made, err := madedirs.MkdirAll(dir)
	if err != nil {
		return nil, fmt.Errorf("synth: output directory: %w", err)
	}
	// A process ended at once leaves none either (they are empty once the
	// staging directory is removed), until the set is put in place.
	forgetMade := atomicfile.UndoOnExit(func() { madedirs.Remove(dir, made) })
	defer forgetMade()
	// The directory itself, not a link to it: it is what is replaced.
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("synth: output directory: %w", err)
	}
	unlock, err := lockDirStable(dir, real)
	if err != nil {
		return nil, err // (one holding the lock may be writing into what was made)
	}
	defer func() {
		// A run that fails (a full disk, say) leaves no empty directory it
		// made, which would look like a set to write into; it removes them
		// before it lets go of the lock, so as not to remove one another
		// run has locked meanwhile.
		if err != nil {
			madedirs.Remove(dir, made)
		}
		unlock()
	}()
	existing, staging, err := inspectDir(dir, real, isDataFile)
	if err != nil {
		return nil, err
	}
	// A staging directory in dir is an interrupted run's: while this run
	// holds dir's lock, no other synth is at work in it.
	for _, name := range staging {
		p := filepath.Join(real, name)
		if !unheld(p, isOwnFile) {
			return nil, fmt.Errorf("synth: %s: the staging directory of a dinoclip synth that was interrupted while moving its set in, "+
				"or is still at work (this system cannot tell which); remove it if no dinoclip synth is running, and run again", filepath.Join(dir, name))
		}
		switch err := atomicfile.RemoveDir(p, isOwnFile); {
		case err == nil:
			fmt.Fprintf(log, "dinoclip: removed %s, left by a dinoclip interrupted while moving a data set into %s: the part it moved in is replaced\n", filepath.Join(dir, name), dir)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("synth: removing an interrupted run's staging directory: %w", err)
		}
	}
	replace := opts.Overwrite || len(staging) > 0 // (an interrupted run's set is incomplete)
	if err := refuseExisting(dir, what, existing, replace); err != nil {
		return nil, err
	}
	// Staging directories beside dir that killed runs left, however new
	// (a run killed a moment ago left one as big as the set, which the
	// free disk was judged with): only a holder of dir's lock, this run
	// now, makes one. One that holds anything else than files isOwnFile
	// names is kept.
	parent, base := filepath.Dir(real), filepath.Base(real)
	atomicfile.SweepOwnDirs(parent, stagingBeside(base), isOwnFile).Report(log, dir)

	tmp, release, forget, beside, err := makeStaging(real, parent, base)
	if err != nil {
		return nil, fmt.Errorf("synth: staging directory: %w", err)
	}
	defer release()
	defer forget()
	files, err := fill(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	atomicfile.SyncDir(tmp)
	// From here a process ended at once leaves the staging directory, and
	// the directories made: the set is being put in place.
	forget()
	forgetMade()
	if opts.Publishing != nil {
		opts.Publishing()
	}
	if err := publish(dir, real, what, tmp, beside, files, isDataFile, replace); err != nil {
		return nil, err
	}
	return files, nil
}

// lockDirStable locks real, the directory dir leads to, as LockDir does;
// and since a writer replaces the directory at real by another, it makes
// sure that the directory locked is the one there now.
func lockDirStable(dir, real string) (unlock func(), err error) {
	for try := 0; ; try++ {
		d, err := os.Open(real)
		if err != nil {
			return nil, fmt.Errorf("synth: output directory: %w", err)
		}
		// An error other than ErrLocked is a system that cannot lock a
		// directory (Windows): it goes without, as flock.LockDir does,
		// and holds no handle to it (Windows renames no directory that
		// has one open).
		lockErr := flock.TryLock(d, true)
		if errors.Is(lockErr, flock.ErrLocked) {
			d.Close()
			return nil, busyError{dir}
		}
		if lockErr != nil {
			d.Close()
			return func() {}, nil
		}
		held, err1 := d.Stat()
		now, err2 := os.Stat(real)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return func() { d.Close() }, nil
		}
		d.Close()
		if try == 50 {
			return nil, fmt.Errorf("synth: %s keeps being replaced while this run locks it", dir)
		}
		time.Sleep(10 * time.Millisecond) // (another writer publishing its set)
	}
}

// unheld reports whether nobody holds the lock of the staging directory p:
// its writer has ended. Where directories cannot be locked it falls back
// on atomicfile.RemoveStale's rule (which keeps them all) for a directory
// that holds nothing but files holds names.
func unheld(p string, holds func(string) bool) bool {
	if lockFree(p) {
		return true
	}
	removed, _ := atomicfile.RemoveStale(p, holds)
	return removed
}

// lockFree reports whether the lock of the staging directory p could be
// taken: nobody holds it, on a system that can tell.
func lockFree(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close() // (which lets the lock go)
	return flock.TryLock(f, true) == nil
}

// isMountPoint is mountpoint.Is (a variable: tests try a mount point
// without mounting one).
var isMountPoint = mountpoint.Is

// stageBeside reports whether a staging directory beside real (st its
// information), in parent, could be renamed onto it: real is not the root,
// and not a mount point (which is on another filesystem than its parent,
// or, a bind mount, cannot be renamed onto though on the same one).
func stageBeside(real, parent string, st os.FileInfo) bool {
	return parent != real && !isMountPoint(real, st)
}

// makeStaging makes the staging directory, locked until release, and
// removed whole by a process ended at once until forget
// (atomicfile.MkdirTempRemovedOnExit: the part of a set written is
// nobody's until it is put in place): beside real (beside is true) when
// it can be renamed onto real (stageBeside), else inside it.
func makeStaging(real, parent, base string) (tmp string, release, forget func(), beside bool, err error) {
	st, err := os.Stat(real)
	if err != nil {
		return "", nil, nil, false, err
	}
	if stageBeside(real, parent, st) {
		if tmp, release, forget, err := atomicfile.MkdirTempRemovedOnExit(parent, stagingBeside(base)); err == nil {
			// It takes real's place: give it real's owner (group at least)
			// and mode, setgid and sticky bits included, before a file is
			// written into it (a chown may clear them, and files take
			// their group from a setgid directory).
			sameOwner(tmp, st)
			os.Chmod(tmp, st.Mode()&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky))
			return tmp, release, forget, true, nil
		}
	}
	tmp, release, forget, err = atomicfile.MkdirTempRemovedOnExit(real, dataset.StagingBase)
	return tmp, release, forget, false, err
}

// publish puts the set that fill wrote into tmp in place in real (see "How
// a data set is published" at the top of this file). replace allows it to replace the data files
// already there.
func publish(dir, real, what, tmp string, beside bool, files []File, isDataFile func(string) bool, replace bool) error {
	entries, err := os.ReadDir(real)
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("synth: output directory: %w", err)
	}
	var existing []string
	others := 0
	for _, e := range entries {
		switch {
		case !beside && filepath.Join(real, e.Name()) == tmp:
		case !e.IsDir() && isDataFile(e.Name()):
			existing = append(existing, e.Name())
		default:
			others++
		}
	}
	// (Checked again: files may have come while the set was written.)
	if err := refuseExisting(dir, what, existing, replace); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	parent := filepath.Dir(real)
	switch {
	case beside && len(entries) == 0:
		err = renameOntoEmpty(tmp, real)
	case beside && others == 0:
		err = exchangeIn(tmp, real, parent)
	default:
		return moveIn(real, tmp, beside, files, existing)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("synth: publishing the data set in %s: %w", dir, err)
	}
	atomicfile.SyncDir(parent)
	return nil
}

// renameOntoEmpty renames the directory tmp onto real, an empty directory:
// rename(2) replaces it in one step (renameDir). A system whose rename
// does not (Windows) has the empty directory removed first: for that
// moment there is no real.
func renameOntoEmpty(tmp, real string) error {
	err := renameDir(tmp, real)
	if err == nil {
		return nil
	}
	if os.Remove(real) != nil {
		return err
	}
	if err := os.Rename(tmp, real); err != nil {
		os.Mkdir(real, 0o755)
		return err
	}
	return nil
}

// exchangeDirs is atomicfile.ExchangeDirs (a variable: tests try exchangeIn without it).
var exchangeDirs = atomicfile.ExchangeDirs

// exchangeIn puts the directory tmp in the place of real, which holds the
// old set, and removes the old set: in one step where the system can
// exchange two directories; else real is renamed aside (under a staging
// name, so that a run killed then leaves only what the next run's sweep
// removes) and tmp renamed in, so that there is a moment with no real but
// never one with a mixed set.
func exchangeIn(tmp, real, parent string) error {
	if exchangeDirs(tmp, real) == nil {
		atomicfile.SyncDir(parent)
		os.RemoveAll(tmp) // the old set now
		return nil
	}
	// (A name not made: a rename onto it fails should another take it
	// first. Once real is renamed there, real's lock, this run's, guards
	// it from another run's sweep.)
	aside := atomicfile.TempPath(parent, stagingBeside(filepath.Base(real)))
	if err := os.Rename(real, aside); err != nil {
		return err
	}
	if err := os.Rename(tmp, real); err != nil {
		os.Rename(aside, real) // the old set back
		return err
	}
	atomicfile.SyncDir(parent)
	os.RemoveAll(aside)
	return nil
}

// moveIn moves the files of tmp into real, which holds other files than a
// data set's, one by one, after deleting the old set's (existing); while
// it does, real holds a staging directory (tmp itself, when it is in real)
// that tells readers that the set is incomplete. A failure leaves that
// directory in place: the next run removes it.
func moveIn(real, tmp string, beside bool, files []File, existing []string) error {
	marker := tmp
	if beside {
		m, release, err := atomicfile.MkdirTemp(real, dataset.StagingBase)
		if err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("synth: %w", err)
		}
		defer release()
		defer os.RemoveAll(tmp) // emptied, unless a move failed
		marker = m
	}
	atomicfile.SyncDir(real) // the marker first, then the moves
	for _, name := range existing {
		if err := os.Remove(filepath.Join(real, name)); err != nil {
			return fmt.Errorf("synth: replacing the old data set: %w", err)
		}
	}
	for _, f := range files {
		name := filepath.Base(f.Path)
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(real, name)); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	atomicfile.SyncDir(real) // the moves, then the marker's removal
	if err := os.Remove(marker); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	atomicfile.SyncDir(real)
	return nil
}
