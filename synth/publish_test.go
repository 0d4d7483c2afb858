package synth

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/internal/mountpoint"
)

// entryNames lists the names in dir, sorted.
func entryNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// makeAged makes the directory dir holding files (name -> content), its
// times set back by age.
func makeAged(t *testing.T, dir string, files map[string]string, age time.Duration) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-age)
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, old, old)
	}
	if err := os.Chtimes(dir, old, old); err != nil {
		t.Fatal(err)
	}
}

// A .partial in a data directory may be another program's (rsync
// --partial-dir), or an older synth's that an interrupted run left beside
// an incomplete set: synth refuses the directory, with or without
// overwrite, and removes nothing in it; one elsewhere is no concern.
func TestLeavesPartialDirAlone(t *testing.T) {
	opts := smallOptions(1)
	parent := t.TempDir()
	dir := filepath.Join(parent, "train")
	partial := filepath.Join(dir, ".partial")
	makeAged(t, partial, map[string]string{"shard-00000.dino.npy": "rsync's", "notes": "mine"}, time.Hour)
	beside := filepath.Join(parent, ".partial")
	makeAged(t, beside, map[string]string{"x": "mine"}, time.Hour)
	for _, overwrite := range []bool{false, true} {
		opts.Overwrite = overwrite
		_, err := WriteTrainingData(dir, opts, 20, 10, false)
		if err == nil || !strings.Contains(err.Error(), partial) || !strings.Contains(err.Error(), "removes no directory") {
			t.Errorf("overwrite %v: writing beside %s: %v, want a refusal naming it", overwrite, partial, err)
		}
		if err := CheckTrainingData(dir, opts, 20, 10); err == nil || !strings.Contains(err.Error(), partial) {
			t.Errorf("overwrite %v: CheckTrainingData: %v, want a refusal naming %s", overwrite, err, partial)
		}
		if _, err := WriteEvalSet(dir, opts, 4, 1, "e"); err == nil || !strings.Contains(err.Error(), partial) {
			t.Errorf("overwrite %v: evaluation set beside %s: %v", overwrite, partial, err)
		}
		if got := dirFiles(t, partial); len(got) != 2 || string(got["notes"]) != "mine" || string(got["shard-00000.dino.npy"]) != "rsync's" {
			t.Fatalf("overwrite %v: %s now holds %v", overwrite, partial, slices.Collect(maps.Keys(got)))
		}
		if names := entryNames(t, dir); !slices.Equal(names, []string{".partial"}) {
			t.Errorf("overwrite %v: a refused write left %v in %s", overwrite, names, dir)
		}
	}
	// Once it is gone, the set is written; the .partial beside it stays.
	os.RemoveAll(partial)
	if _, err := WriteTrainingData(dir, opts, 20, 10, false); err != nil {
		t.Fatal(err)
	}
	if got := dirFiles(t, beside); string(got["x"]) != "mine" {
		t.Errorf("%s: %v", beside, got)
	}
}

// A run killed while it wrote its set leaves a staging directory beside
// the data directory, and the data directory empty: the next run is not
// refused, and removes the leftover once its lock is free, however new
// (a run rerun at once after a kill left its space taken, which the free
// disk had been judged with), but nothing that synth did not make, nor a
// run's that holds its lock; it says on opts.Log what it removed and what
// it left.
func TestRerunAfterKillWhileStaging(t *testing.T) {
	opts := smallOptions(2)
	var log bytes.Buffer
	opts.Log = &log
	parent := t.TempDir()
	dir := filepath.Join(parent, "train")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shard := map[string]string{"shard-00000.dino.npy": "x", ".shard-00001.dino.npy.tmp-42": "y"}
	makeAged(t, filepath.Join(parent, ".train.synth.tmp-111"), shard, 2*time.Minute)                                   // a killed run's: removed
	makeAged(t, filepath.Join(parent, ".train.synth.tmp-222"), shard, 0)                                               // a run killed just now: removed
	makeAged(t, filepath.Join(parent, ".train.synth.tmp-666"), shard, time.Hour)                                       // a live run's (its lock held)
	makeAged(t, filepath.Join(parent, ".train.synth.tmp-333"), map[string]string{"notes.txt": "mine"}, time.Hour)      // holds what synth writes not
	makeAged(t, filepath.Join(parent, ".train.synth.tmp-x9"), shard, time.Hour)                                        // not synth's name
	makeAged(t, filepath.Join(parent, ".eval.synth.tmp-444"), shard, time.Hour)                                        // another set's
	makeAged(t, filepath.Join(parent, ".train.synth.tmp-555"), map[string]string{"mybackup.dino.npy": "z"}, time.Hour) // no name synth gives a shard
	unlock, err := flock.LockDir(filepath.Join(parent, ".train.synth.tmp-666"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := WriteTrainingData(dir, opts, 50, 10, false); err != nil {
		t.Fatalf("the run again: %v", err)
	}
	if n := len(entryNames(t, dir)); n != 10 {
		t.Errorf("%s holds %d entries, want 10 shard files", dir, n)
	}
	want := []string{".eval.synth.tmp-444", ".train.synth.tmp-333", ".train.synth.tmp-555", ".train.synth.tmp-666", ".train.synth.tmp-x9", "train"}
	if runtime.GOOS == "windows" { // no locks: no leftover is known to be a killed run's
		want = slices.Insert(want, 1, ".train.synth.tmp-111", ".train.synth.tmp-222")
	}
	if got := entryNames(t, parent); !slices.Equal(got, want) {
		t.Errorf("beside %s: %v, want %v", dir, got, want)
	}
	said := log.String()
	at := func(name string) string { return filepath.Join(parent, name) }
	wants := []string{
		"removed " + at(".train.synth.tmp-111") + ", left by a dinoclip killed while writing " + dir + "\n",
		"removed " + at(".train.synth.tmp-222") + ", left by a dinoclip killed while writing " + dir + "\n",
		"warning: " + at(".train.synth.tmp-666") + ": left by a dinoclip killed while writing " + dir + ", or being written by another one now",
		"warning: removing " + at(".train.synth.tmp-333") + ", left by a dinoclip killed while writing " + dir + ": ",
		"warning: removing " + at(".train.synth.tmp-555") + ", ",
	}
	if runtime.GOOS == "windows" { // no locks: every one may be a live run's
		wants = []string{"warning: " + strings.Join([]string{at(".train.synth.tmp-111"), at(".train.synth.tmp-222"), at(".train.synth.tmp-333"), at(".train.synth.tmp-555"), at(".train.synth.tmp-666")}, ", ") + ": left by"}
	}
	for _, want := range wants {
		if !strings.Contains(said, want) {
			t.Errorf("the run says\n%s\nwant %q", said, want)
		}
	}
	for _, notSwept := range []string{".train.synth.tmp-x9", ".eval.synth.tmp-444"} {
		if strings.Contains(said, notSwept) {
			t.Errorf("the run speaks of %s, no leftover of %s:\n%s", notSwept, dir, said)
		}
	}
}

// A run killed while it moved its set in beside other files leaves part of
// the set and its staging directory in the data directory: the next run is
// not refused (that set is no whole one to keep), removes the staging
// directory however young, saying so, and writes the whole set; the other
// files stay.
func TestRerunAfterKillWhileMoving(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("without locks, a young staging directory cannot be told from a live one")
	}
	opts := smallOptions(3)
	var log bytes.Buffer
	full := filepath.Join(t.TempDir(), "full")
	files, err := WriteTrainingData(full, opts, 60, 10, false)
	if err != nil {
		t.Fatal(err)
	}
	want := dirFiles(t, full)
	dir := filepath.Join(t.TempDir(), "train")
	staging := filepath.Join(dir, ".synth.tmp-777")
	os.MkdirAll(staging, 0o755)
	os.WriteFile(filepath.Join(dir, "NOTES.txt"), []byte("mine"), 0o644)
	for i, f := range files {
		to := dir
		if i >= len(files)/2 {
			to = staging
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(f.Path)), want[filepath.Base(f.Path)], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts.Log = &log
	if _, err := WriteTrainingData(dir, opts, 60, 10, false); err != nil {
		t.Fatalf("the run again: %v", err)
	}
	if want := "removed " + staging + ", left by a dinoclip interrupted while moving a data set into " + dir; !strings.Contains(log.String(), want) {
		t.Errorf("the run again says\n%s\nwant %q", log.String(), want)
	}
	got := dirFiles(t, dir)
	if string(got["NOTES.txt"]) != "mine" {
		t.Errorf("NOTES.txt: %q", got["NOTES.txt"])
	}
	delete(got, "NOTES.txt")
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("%s holds %v, want the whole set %v", dir, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	if _, err := os.Stat(staging); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the staging directory is left: %v", err)
	}

	// A complete set, with no staging directory, still needs overwrite.
	if _, err := WriteTrainingData(dir, opts, 60, 10, false); err == nil || !strings.Contains(err.Error(), "already holds training shards") {
		t.Errorf("over a complete set: %v", err)
	}
}

// An overwrite replaces the old set whole, in one step: a reader sees the
// old set or the new one, never a mix or part of one, and a run that fails
// keeps the old set. The directory keeps its mode.
func TestOverwriteReplacesWholeSet(t *testing.T) {
	for _, exchangeWorks := range []bool{true, false} {
		t.Run(map[bool]string{true: "exchange", false: "rename-aside"}[exchangeWorks], func(t *testing.T) {
			if !exchangeWorks {
				exchangeDirs = func(a, b string) error { return errors.New("no exchange") }
				defer func() { exchangeDirs = atomicfile.ExchangeDirs }()
			}
			opts := smallOptions(4)
			opts.InputDim, opts.OutputDim = 4, 2
			parent := t.TempDir()
			dir := filepath.Join(parent, "train")
			if _, err := WriteTrainingData(dir, opts, 20, 1, false); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			old := dirFiles(t, dir)

			// A cancelled overwrite leaves the old set as it was.
			opts.Overwrite = true
			if _, err := WriteTrainingDataContext(&cancelAfter{context.Background(), 5}, dir, opts, 15, 1, false); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled overwrite: %v", err)
			}
			if got := dirFiles(t, dir); !maps.EqualFunc(got, old, bytes.Equal) {
				t.Fatalf("a cancelled overwrite changed the old set: %d files, want %d", len(got), len(old))
			}

			// Readers watch while sets of 40 and 30 files replace each other.
			sizes := map[int]bool{40: true, 30: true}
			var stop atomic.Bool
			var wg sync.WaitGroup
			var bad atomic.Value
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					d, err := os.Open(dir)
					var entries []os.DirEntry
					if err == nil {
						entries, err = d.ReadDir(-1)
						// A listing of a directory replaced meanwhile is
						// the old set's, being removed: not what dir holds.
						held, _ := d.Stat()
						d.Close()
						if now, serr := os.Stat(dir); held == nil || serr != nil || !os.SameFile(held, now) {
							continue
						}
					}
					if err != nil {
						if errors.Is(err, os.ErrNotExist) && !exchangeWorks {
							continue // the moment with no directory
						}
						bad.Store(err.Error())
						return
					}
					n := 0
					for _, e := range entries {
						if isShardFile(e.Name()) {
							n++
						}
					}
					if !sizes[n] {
						bad.Store("a reader saw a set of " + strconv.Itoa(n) + " files")
						return
					}
				}
			}()
			for i := range 6 {
				if _, err := WriteTrainingData(dir, opts, 15+5*(i%2), 1, false); err != nil {
					t.Error(err)
					break
				}
			}
			stop.Store(true)
			wg.Wait()
			if b := bad.Load(); b != nil {
				t.Error(b)
			}
			if n := len(entryNames(t, dir)); n != 40 {
				t.Errorf("%s holds %d entries, want the last set's 40", dir, n)
			}
			if got := entryNames(t, parent); !slices.Equal(got, []string{"train"}) {
				t.Errorf("beside %s: %v, want nothing (no staging directory or old set left)", dir, got)
			}
			if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o750 {
				t.Errorf("%s: mode %v (%v), want 0750 kept", dir, st.Mode().Perm(), err)
			}
		})
	}
}

// isOwnShardFile takes only the names synth gives shard files (ShardName):
// a staging directory holding anything else is no killed run's to remove.
func TestIsOwnShardFile(t *testing.T) {
	for name, want := range map[string]bool{
		ShardName(0) + dataset.FeatureSuffix: true, ShardName(7) + dataset.TargetSuffix: true, ShardName(123456) + dataset.TargetSuffix: true,
		"mybackup.dino.npy": false, "shard-0001.dino.npy": false, "shard-00001.npy": false, "shard-0000x.clip.npy": false,
		"shard-00001.dino.npy.bak": false, ShardName(1): false,
	} {
		if got := isOwnShardFile(name); got != want {
			t.Errorf("isOwnShardFile(%q) = %v, want %v", name, got, want)
		}
	}
}

// A staging directory inside a data directory that holds a user's file
// named like a shard is not removed (nor that file): synth refuses,
// naming it.
func TestKeepsUserFilesInStagingDir(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("without locks, a staging directory cannot be told from a live one")
	}
	dir := filepath.Join(t.TempDir(), "train")
	backup := filepath.Join(dir, dataset.StagingPrefix+"77", "mybackup.dino.npy")
	makeAged(t, filepath.Dir(backup), map[string]string{"mybackup.dino.npy": "mine"}, time.Hour)
	_, err := WriteTrainingData(dir, smallOptions(1), 20, 10, false)
	if err == nil || !strings.Contains(err.Error(), "mybackup.dino.npy") {
		t.Errorf("WriteTrainingData: %v, want an error naming mybackup.dino.npy", err)
	}
	if b, err := os.ReadFile(backup); err != nil || string(b) != "mine" {
		t.Errorf("%s: %q, %v", backup, b, err)
	}
}

// A directory in a data directory named like a staging directory but for
// its digits is a user's: synth writes the set beside it, and readers
// (dataset.CheckComplete) take the set for whole, as synth does.
func TestUserDirNamedLikeStaging(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "train")
	user := filepath.Join(dir, dataset.StagingPrefix+"backup")
	if err := os.MkdirAll(user, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTrainingData(dir, smallOptions(1), 20, 10, false); err != nil {
		t.Fatal(err)
	}
	if err := dataset.CheckComplete(dir); err != nil {
		t.Errorf("the set synth wrote beside %s: %v", user, err)
	}
	if _, err := os.Stat(user); err != nil {
		t.Error(err)
	}
}

// In a data directory that is a mount point (a bind mount, say, whose
// device is its parent's) the set is staged inside, not beside: nothing
// can be renamed onto a mount point. (Mounting needs privileges: the
// decision is tried with isMountPoint replaced.)
func TestStagesInsideMountPoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "train")
	opts := smallOptions(1)
	if _, err := WriteTrainingData(dir, opts, 20, 10, false); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	isMountPoint = func(dir string, st os.FileInfo) bool { return true }
	defer func() { isMountPoint = mountpoint.Is }()
	opts.Overwrite = true
	opts.Seed = 2
	if _, err := WriteTrainingData(dir, opts, 30, 10, false); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("%s, a mount point, was replaced by another directory", dir)
	}
	if names := entryNames(t, dir); len(names) != 6 {
		t.Errorf("%s holds %v, want 3 shards", dir, names)
	}
}

// A write that fails into a directory it made (cancelled here; a full
// disk alike) leaves no empty directory behind that would look like a set
// to write into, and none of the parents it made; one that was there is
// kept.
func TestFailedWriteRemovesTheDirectoriesItMade(t *testing.T) {
	opts := smallOptions(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	parent := t.TempDir()
	dir := filepath.Join(parent, "new", "train")
	if _, err := WriteTrainingDataContext(ctx, dir, opts, 20, 10, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled write: %v, want context.Canceled", err)
	}
	if _, err := os.Lstat(filepath.Join(parent, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed write into a new directory left %s: %v", filepath.Join(parent, "new"), err)
	}
	existing := filepath.Join(parent, "existing")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTrainingDataContext(ctx, existing, opts, 20, 10, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled write: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(existing); err != nil {
		t.Errorf("a failed write removed the directory that was there: %v", err)
	}
}

// LeftoverBytes counts the staging directories that the next run removes
// (their lock free, however new): not a live run's, which stays, or the
// free disk it was judged with was not there.
func TestLeftoverBytesOfKilledRunsOnly(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("directories are not locked on Windows: no leftover is known to be a killed run's")
	}
	out := t.TempDir()
	makeAged(t, filepath.Join(out, ".train.synth.tmp-1"), map[string]string{"shard-00000.dino.npy": "killed"}, 0)
	makeAged(t, filepath.Join(out, ".train.synth.tmp-2"), map[string]string{"shard-00000.dino.npy": "at work"}, time.Hour)
	makeAged(t, filepath.Join(out, ".train.synth.tmp-4"), map[string]string{"notes.txt": "a user's, kept"}, time.Hour)
	makeAged(t, filepath.Join(out, "eval", dataset.StagingBase+".tmp-3"), map[string]string{dataset.EvalInfoFile: "at work, inside"}, time.Hour)
	for _, held := range []string{filepath.Join(out, ".train.synth.tmp-2"), filepath.Join(out, "eval", dataset.StagingBase+".tmp-3")} {
		unlock, err := flock.LockDir(held)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
	}
	if got, want := LeftoverBytes(out, dataset.TrainDir, dataset.EvalDir), int64(len("killed")); got != want {
		t.Errorf("LeftoverBytes: %d, want %d (the killed run's only)", got, want)
	}
}

// A set directory that is a symbolic link has its staging directories
// beside the directory it leads to (stageInto's), where LeftoverBytes
// counts a killed run's.
func TestLeftoverBytesBesideALinkedSet(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("directories are not locked on Windows: no leftover is known to be a killed run's")
	}
	out, elsewhere := t.TempDir(), t.TempDir()
	real := filepath.Join(elsewhere, "mytrain")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(out, dataset.TrainDir)); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	makeAged(t, filepath.Join(elsewhere, ".mytrain.synth.tmp-5"), map[string]string{"shard-00000.dino.npy": "linked"}, 0)
	if got, want := LeftoverBytes(out, dataset.TrainDir), int64(len("linked")); got != want {
		t.Errorf("LeftoverBytes: %d, want %d (the killed run's beside the linked set)", got, want)
	}
}
