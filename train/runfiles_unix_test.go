//go:build unix

package train

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/nn"
)

// runWithin runs tr (resumed or new) and fails the test if it has not
// returned within a minute: a named pipe opened for reading or writing
// waits for a writer or reader that never comes.
func runWithin(t *testing.T, tr *Trainer, resume bool) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := tr.Run(context.Background(), resume); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("the run (resume %v) hangs", resume)
		return nil
	}
}

// A run directory's run.json, lock or metrics.jsonl that is a symbolic
// link is refused, on resume and for a new run, before anything is
// written through it: metrics records used to be appended to what it led
// to, the lock's target truncated and a pid written into it. The file it
// leads to is left as it was.
func TestRunFileLinksRefused(t *testing.T) {
	for _, name := range []string{MetricsFile, LockFile, RunFile} {
		for _, resume := range []bool{true, false} {
			dataDir, runDir := stoppedRun(t, 5)
			if !resume {
				// A run that died before its first checkpoint: a new run
				// may be started in its directory.
				for _, n := range []string{checkpoint.LastLink, checkpoint.BestLink, CheckpointsDir} {
					os.RemoveAll(filepath.Join(runDir, n))
				}
			}
			path := filepath.Join(runDir, name)
			victim := filepath.Join(t.TempDir(), "victim.txt")
			const content = "not the run's\n"
			if err := os.WriteFile(victim, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Remove(path)
			if err := os.Symlink(victim, path); err != nil {
				t.Fatal(err)
			}
			err := runWithin(t, newTrainer(t, dataDir, runDir, nil), resume)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "a symbolic link") {
				t.Errorf("%s a link (resume %v): error %v, want one naming it a symbolic link", name, resume, err)
			}
			if b, _ := os.ReadFile(victim); string(b) != content {
				t.Errorf("%s a link (resume %v): what it leads to was written: %q", name, resume, b)
			}
			if st, err := os.Lstat(path); err != nil || st.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s a link (resume %v): the link was replaced", name, resume)
			}
		}
	}
}

// A checkpoints directory that is a link (to another run's) is refused:
// the resume used to write its checkpoints into the other run's and prune
// that run's own.
func TestCheckpointsLinkRefused(t *testing.T) {
	_, other := stoppedRun(t, 5) // of the same step: the last link leads into its checkpoints
	dataDir, runDir := stoppedRun(t, 5)
	snapshot := func() map[string]string {
		files := map[string]string{}
		filepath.WalkDir(other, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := os.ReadFile(p)
				files[p] = string(b)
			}
			return err
		})
		return files
	}
	before := snapshot()
	path := filepath.Join(runDir, CheckpointsDir)
	// The run's own checkpoints moved aside, the name leads into the other
	// run: its checkpoints, the run directory itself, one checkpoint.
	if err := os.Rename(path, filepath.Join(runDir, ".own-checkpoints")); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{filepath.Join(other, CheckpointsDir), other, filepath.Join(other, checkpointName(5))} {
		os.Remove(path)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		err := runWithin(t, newTrainer(t, dataDir, runDir, nil), true)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "in the run in "+other) {
			t.Errorf("resume with checkpoints a link to %s: %v", target, err)
		}
		after := snapshot()
		if !maps.Equal(after, before) {
			t.Errorf("with checkpoints a link to %s, the other run changed", target)
		}
	}
}

// A named pipe for metrics.jsonl, run.json or the lock is refused rather
// than opened: reading or writing one would wait forever.
func TestRunFilePipesRefused(t *testing.T) {
	for _, name := range []string{MetricsFile, RunFile, LockFile} {
		dataDir, runDir := stoppedRun(t, 5)
		path := filepath.Join(runDir, name)
		os.Remove(path)
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Skipf("no named pipes here: %v", err)
		}
		err := runWithin(t, newTrainer(t, dataDir, runDir, nil), true)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "a named pipe") {
			t.Errorf("%s a named pipe: %v", name, err)
		}
		if err := CheckResumable(runDir); err == nil || errors.As(err, new(*LockedError)) {
			t.Errorf("CheckResumable with %s a named pipe: %v", name, err)
		}
	}
}

// LockRunDir and openMetrics refuse a link on their own (whoever calls
// them, whatever was checked before): the lock's target is not truncated,
// no record is appended to the metrics link's.
func TestRunFileOpenersRefuseLinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim.txt")
	const content = `{"type":"train","step":1}` + "\n"
	if err := os.WriteFile(victim, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{LockFile, MetricsFile} {
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := LockRunDir(dir); err == nil {
		l.Release()
		t.Errorf("LockRunDir took a lock through a link")
	} else if !strings.Contains(err.Error(), "a symbolic link") {
		t.Errorf("LockRunDir on a linked lock: %v", err)
	}
	if m, err := openMetrics(context.Background(), filepath.Join(dir, MetricsFile), resumeAt(5, false), slog.New(slog.DiscardHandler)); err == nil {
		m.write(map[string]any{"type": "train", "step": 2})
		m.Close()
		t.Errorf("openMetrics opened a link")
	} else if !strings.Contains(err.Error(), "a symbolic link") {
		t.Errorf("openMetrics on a link: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != content {
		t.Errorf("what the links lead to was written: %q", b)
	}
}

// A run's checkpoints moved to another disk and linked back (a directory
// of no run) are the run's own: the resume writes there.
func TestCheckpointsMovedAndLinked(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	path := filepath.Join(runDir, CheckpointsDir)
	moved := filepath.Join(t.TempDir(), "run-checkpoints")
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, path); err != nil {
		t.Fatal(err)
	}
	if err := runWithin(t, newTrainer(t, dataDir, runDir, nil), true); err != nil {
		t.Fatalf("resume with its checkpoints moved and linked: %v", err)
	}
	if _, err := os.Stat(filepath.Join(moved, filepath.Base(checkpointName(36)), checkpoint.ModelFile)); err != nil {
		t.Errorf("the resumed run's last checkpoint is not in the moved directory: %v", err)
	}
}

// Two runs whose checkpoints/ lead to the same directory (moved to
// another disk, linked twice by mistake) would prune each other's
// checkpoints: while one holds its run's lock, the other's is refused,
// and nothing of it is left locked; once the first lets go, it is taken.
func TestSharedCheckpointsDirLocked(t *testing.T) {
	shared := t.TempDir()
	a, b := t.TempDir(), t.TempDir()
	for _, run := range []string{a, b} {
		if err := os.Symlink(shared, filepath.Join(run, CheckpointsDir)); err != nil {
			t.Fatal(err)
		}
	}
	la, err := LockRunDir(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockRunDir(b); err == nil || !strings.Contains(err.Error(), "is in use by another training run") || !strings.Contains(err.Error(), shared) {
		t.Fatalf("a second run on the same checkpoints: %v", err)
	}
	if err := checkUnlocked(b); err != nil {
		t.Errorf("the refused run's own lock stays held: %v", err)
	}
	if err := la.Release(); err != nil {
		t.Fatal(err)
	}
	lb, err := LockRunDir(b)
	if err != nil {
		t.Fatalf("once the first run let go: %v", err)
	}
	lb.Release()
}

// A checkpoints/ link is judged where it leads, whatever the working
// directory and however the run directory or the link is named: a run's
// own store inside it is accepted also for a relative --out; a relative
// link into another run is refused; so are a link to a directory holding
// the run (its parent, the run itself) and one that leads nowhere now.
func TestCheckpointsLinkJudgedWhereItLeads(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	path := filepath.Join(runDir, CheckpointsDir)
	store := filepath.Join(runDir, "store")
	if err := os.Rename(path, store); err != nil {
		t.Fatal(err)
	}
	link := func(target string) {
		t.Helper()
		os.Remove(path)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ target, want string }{
		{filepath.Dir(runDir), "which holds the run itself"},
		{".", "which holds the run itself"},
		{filepath.Join(runDir, "gone"), "not a directory it can reach"},
	} {
		link(c.target)
		if err := checkCheckpointsDir(runDir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("checkpoints a link to %s: %v, want %q", c.target, err, c.want)
		}
	}
	link(store)
	t.Chdir(filepath.Dir(runDir))
	if err := runWithin(t, newTrainer(t, dataDir, filepath.Base(runDir), nil), true); err != nil {
		t.Fatalf("resume of a relative run directory whose checkpoints lead to its own store: %v", err)
	}

	_, other := stoppedRun(t, 5)
	t.Chdir(filepath.Join(other, CheckpointsDir))
	os.Mkdir("nx", 0o755)
	if err := os.Symlink(filepath.Join("..", filepath.Base(checkpointName(5))), filepath.Join("nx", CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	if err := checkCheckpointsDir("nx"); err == nil || !strings.Contains(err.Error(), "in the run in "+other) {
		t.Errorf("a relative run directory whose checkpoints lead into another run's checkpoint: %v", err)
	}
}

// A resume leaves a hard-linked copy of metrics.jsonl (a backup made with
// cp -al) as it was: the records used to be appended to it too.
func TestResumeLeavesHardLinkedMetrics(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	path := filepath.Join(runDir, MetricsFile)
	backup := filepath.Join(t.TempDir(), MetricsFile)
	if err := os.Link(path, backup); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(backup)
	if err != nil || len(before) == 0 {
		t.Fatalf("the stopped run's metrics: %q, %v", before, err)
	}
	if err := runWithin(t, newTrainer(t, dataDir, runDir, nil), true); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(backup); string(after) != string(before) {
		t.Errorf("the hard-linked copy of metrics.jsonl changed: %d bytes, was %d", len(after), len(before))
	}
	if after, _ := os.ReadFile(path); len(after) <= len(before) || !strings.HasPrefix(string(after), string(before)) {
		t.Errorf("the run's metrics.jsonl (%d bytes) does not continue the stopped run's (%d)", len(after), len(before))
	}
}

// realDir is dir with its links resolved.
func realDir(t *testing.T, dir string) string {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	return real
}

// A copy of a run whose checkpoints/ is a link to a directory elsewhere
// (moved to a larger disk) shares the original's checkpoints: its resume
// is refused, where it pruned them, one run after the other. A run moved
// within its filesystem (the same directory, by its identity) takes its
// checkpoints along; so does the run reached by another path.
func TestCopiedRunSharesNoCheckpoints(t *testing.T) {
	dataDir, original := stoppedRun(t, 5)
	// resumeStopped resumes the run in dir and stops it after a step.
	resumeStopped := func(dir string) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tr := newTrainer(t, dataDir, dir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 1, cancel: cancel} })
		if _, err := tr.Run(ctx, true); !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	external := filepath.Join(t.TempDir(), "checkpoints")
	link := filepath.Join(original, CheckpointsDir)
	if err := os.Rename(link, external); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(external, link); err != nil {
		t.Fatal(err)
	}
	if err := resumeStopped(original); err != nil { // (it claims them)
		t.Fatal(err)
	}
	snapshot := func() []string {
		var names []string
		filepath.WalkDir(external, func(p string, d fs.DirEntry, err error) error {
			names = append(names, p)
			return err
		})
		return names
	}
	before := snapshot()
	copied, itsOwn := filepath.Join(t.TempDir(), "copy"), filepath.Join(t.TempDir(), "checkpoints")
	for _, cp := range [][2]string{{original, copied}, {external, itsOwn}} {
		if out, err := exec.Command("cp", "-a", cp[0], cp[1]).CombinedOutput(); err != nil {
			t.Fatalf("cp -a: %v\n%s", err, out)
		}
	}
	realOriginal, _ := filepath.EvalSymlinks(original)
	err := runWithin(t, newTrainer(t, dataDir, copied, nil), true)
	if err == nil || !strings.Contains(err.Error(), "the checkpoints of the run in "+realOriginal) || !strings.Contains(err.Error(), "remove "+filepath.Join(external, CheckpointsOwnerFile)) {
		t.Fatalf("resume of a copy sharing the original's checkpoints: %v, want a refusal naming the original", err)
	}
	if after := snapshot(); !slices.Equal(after, before) {
		t.Errorf("the refused resume of the copy changed the original's checkpoints:\n%v\nwas\n%v", after, before)
	}
	// ... even when the record's identity is the copy's (inode numbers
	// repeat across filesystems: two volumes' roots, a snapshot's copy):
	// the original, there and leading to them, owns them.
	ownerFile := filepath.Join(external, CheckpointsOwnerFile)
	saved, _ := os.ReadFile(ownerFile)
	st, _ := os.Stat(copied)
	os.WriteFile(ownerFile, []byte(realOriginal+"\n"+atomicfile.Identity(st)+"\n"), 0o644)
	if err := runWithin(t, newTrainer(t, dataDir, copied, nil), true); err == nil || !strings.Contains(err.Error(), "the checkpoints of the run in "+realOriginal) {
		t.Fatalf("resume of a copy whose identity the record holds, the original there: %v, want a refusal", err)
	}
	os.WriteFile(ownerFile, saved, 0o644)
	// A new run into the copy, refused for the run it holds, takes no
	// ownership either (here of checkpoints no run has claimed yet, as a
	// run from before the record leaves them).
	owner := filepath.Join(external, CheckpointsOwnerFile)
	os.Remove(owner)
	before = snapshot()
	if err := runWithin(t, newTrainer(t, dataDir, copied, nil), false); err == nil || !strings.Contains(err.Error(), "already holds a run") {
		t.Fatalf("a new run into a directory holding a run: %v", err)
	}
	if _, err := os.Lstat(owner); err == nil {
		t.Error("the refused new run recorded itself as the owner of the checkpoints")
	}
	if after := snapshot(); !slices.Equal(after, before) {
		t.Errorf("the refused copy changed the original's checkpoints:\n%v\nwas\n%v", after, before)
	}
	if err := resumeStopped(original); err != nil {
		t.Fatalf("the original's resume after the copy was refused: %v", err)
	}
	// The original moved: its checkpoints go with it (and the copy is
	// still refused, by the run that owns them now).
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(original, moved); err != nil {
		t.Fatal(err)
	}
	if err := resumeStopped(moved); err != nil {
		t.Fatalf("resume of the moved original: %v", err)
	}
	realMoved, _ := filepath.EvalSymlinks(moved)
	if err := runWithin(t, newTrainer(t, dataDir, copied, nil), true); err == nil || !strings.Contains(err.Error(), "the checkpoints of the run in "+realMoved) {
		t.Fatalf("resume of the copy after the original moved: %v", err)
	}
	// The run reached by another path (moved, a link left at its old
	// place) is the same run, by either path.
	again := filepath.Join(t.TempDir(), "again")
	if err := os.Rename(moved, again); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(again, moved); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{moved, again, moved} {
		if err := resumeStopped(dir); err != nil {
			t.Fatalf("resume of the run by %s: %v", dir, err)
		}
	}
	// The original out of reach at the path recorded (a disk not mounted,
	// another mount's path): by its recorded identity, the copy is still
	// not it, and is refused until the record is removed.
	owner = filepath.Join(external, CheckpointsOwnerFile)
	rec, err := os.ReadFile(owner)
	if err != nil {
		t.Fatal(err)
	}
	_, identity, _ := strings.Cut(string(rec), "\n")
	os.WriteFile(owner, []byte(filepath.Join(t.TempDir(), "unmounted", "run")+"\n"+identity), 0o644)
	if err := runWithin(t, newTrainer(t, dataDir, copied, nil), true); err == nil || !strings.Contains(err.Error(), "gone or out of reach") {
		t.Fatalf("resume of the copy while the original is out of reach: %v", err)
	}
	// What stands where the record goes: a directory is refused before the
	// resume changes anything; a record of megabytes, or what a claim
	// killed while writing left, is none and is replaced or swept.
	os.Rename(owner, owner+".saved")
	os.Mkdir(owner, 0o755)
	before = snapshot()
	if err := runWithin(t, newTrainer(t, dataDir, again, nil), true); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("resume with a directory where the owner record goes: %v", err)
	}
	if after := snapshot(); !slices.Equal(after, before) {
		t.Errorf("the refused resume changed the checkpoints:\n%v\nwas\n%v", after, before)
	}
	os.Remove(owner)
	os.WriteFile(owner, make([]byte, 1<<20), 0o644)
	leftover := atomicfile.TempPath(external, CheckpointsOwnerFile)
	os.WriteFile(leftover, []byte("half"), 0o644)
	if err := resumeStopped(again); err != nil {
		t.Fatalf("resume with a megabyte of zeros as the owner record: %v", err)
	}
	if _, err := os.Lstat(leftover); err == nil {
		t.Errorf("a killed claim's temporary %s was not swept", leftover)
	}
	if rec, _ := os.ReadFile(owner); !strings.HasPrefix(string(rec), realDir(t, again)+"\n") {
		t.Errorf("the owner record after the resume: %q", rec)
	}
	// Given checkpoints of its own (a copy of them made with it), the
	// copy resumes.
	os.Remove(filepath.Join(copied, CheckpointsDir))
	if err := os.Rename(itsOwn, filepath.Join(copied, CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	if err := runWithin(t, newTrainer(t, dataDir, copied, nil), true); err != nil {
		t.Fatalf("resume of the copy with checkpoints of its own: %v", err)
	}
}

// A run refused a directory another process holds names the holder's pid
// only from a lock file held too, read as a regular file, a pid's worth:
// a lock made a named pipe (or a link to an endless device) neither
// hangs the refusal nor fills memory, and a stale pid is not named.
func TestLockRefusalReadsNoStrangeLock(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(path string) error
	}{
		{"named pipe", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"link to /dev/zero", func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"file of a stale pid", func(p string) error { return os.WriteFile(p, []byte("4242\n"), 0o644) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			release, err := flock.LockDir(dir) // (as synth holds its --out)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			if err := tc.make(filepath.Join(dir, LockFile)); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { _, err := LockRunDir(dir); done <- err }()
			select {
			case err := <-done:
				var locked *LockedError
				if !errors.As(err, &locked) || strings.Contains(err.Error(), "pid 4242") || !strings.Contains(err.Error(), "the directory is locked") {
					t.Errorf("LockRunDir of a held directory, its lock a %s: %v", tc.name, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("LockRunDir of a held directory, its lock a %s, hangs", tc.name)
			}
		})
	}
}

// LockRunDir's own refusals, once it holds the directory, leave no lock
// file it made: here a checkpoints/ link leading nowhere.
func TestLockRunDirRefusalLeavesNoLockFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	if lock, err := LockRunDir(dir); err == nil {
		lock.Release()
		t.Fatal("a run directory whose checkpoints/ leads nowhere: locked")
	}
	if _, err := os.Lstat(filepath.Join(dir, LockFile)); !os.IsNotExist(err) {
		t.Errorf("the refusal left a lock file (%v)", err)
	}
}

// Checkpoints moved to a larger disk by hand and linked back carry the
// record of the run that trained into them (a run records itself in a
// checkpoints/ of its own too): a copy of the run made after the move,
// before either trained again, is refused them, where the first of the
// two to resume took them and pruned the other's. A record that came
// with checkpoints moved from a copy of another run, which trains into
// checkpoints of its own, is refused too, until it is removed, as the
// refusal says.
func TestCheckpointsMovedByHandKeepTheirOwner(t *testing.T) {
	dataDir, original := stoppedRun(t, 5)
	// A directory where the record goes, in checkpoints of the run's own,
	// is refused as such before the resume changes anything.
	planted := filepath.Join(original, CheckpointsDir, CheckpointsOwnerFile)
	saved, err := os.ReadFile(planted)
	if err != nil {
		t.Fatalf("the run's own checkpoints hold no owner record: %v", err)
	}
	os.Remove(planted)
	if err := os.MkdirAll(filepath.Join(planted, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := runWithin(t, newTrainer(t, dataDir, original, nil), true); err == nil || !strings.Contains(err.Error(), planted+", where dinoclip records which run's checkpoints these are, is a directory: move it away") {
		t.Fatalf("resume with a directory where its own checkpoints' owner record goes: %v", err)
	}
	os.RemoveAll(planted)
	os.WriteFile(planted, saved, 0o644)
	twin := filepath.Join(t.TempDir(), "twin")
	if out, err := exec.Command("cp", "-a", original, twin).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	moveAndLink := func(run string) string {
		t.Helper()
		link := filepath.Join(run, CheckpointsDir)
		external := filepath.Join(t.TempDir(), "checkpoints")
		if err := os.Rename(link, external); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(external, link); err != nil {
			t.Fatal(err)
		}
		return external
	}
	external := moveAndLink(original)
	copied := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", original, copied).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	snapshot := func(dir string) []string {
		var names []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			names = append(names, p)
			return err
		})
		return names
	}
	before := snapshot(external)
	err = runWithin(t, newTrainer(t, dataDir, copied, nil), true)
	if err == nil || !strings.Contains(err.Error(), "the checkpoints of the run in "+realDir(t, original)) {
		t.Fatalf("resume of a copy made after the checkpoints were moved: %v, want a refusal naming the original", err)
	}
	if after := snapshot(external); !slices.Equal(after, before) {
		t.Errorf("the refused resume of the copy changed the original's checkpoints:\n%v\nwas\n%v", after, before)
	}
	if err := runWithin(t, newTrainer(t, dataDir, original, nil), true); err != nil {
		t.Fatalf("resume of the original, its checkpoints moved by hand: %v", err)
	}
	// The twin, copied before the move, kept the original's record in
	// its own checkpoints, which it takes along when they are moved.
	twinExternal := moveAndLink(twin)
	owner := filepath.Join(twinExternal, CheckpointsOwnerFile)
	err = runWithin(t, newTrainer(t, dataDir, twin, nil), true)
	if err == nil || !strings.Contains(err.Error(), "records the run in "+realDir(t, original)) || !strings.Contains(err.Error(), "remove "+owner) {
		t.Fatalf("resume of a copy whose checkpoints came with the original's record: %v, want a refusal naming the record", err)
	}
	if err := os.Remove(owner); err != nil {
		t.Fatal(err)
	}
	if err := runWithin(t, newTrainer(t, dataDir, twin, nil), true); err != nil {
		t.Fatalf("resume of the copy once the record is removed: %v", err)
	}
	if rec, _ := os.ReadFile(owner); !strings.HasPrefix(string(rec), realDir(t, twin)+"\n") {
		t.Errorf("the owner record after the copy's resume: %q", rec)
	}
}
