package train

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A run whose checkpoints directory no checkpoint can be written in (here
// a link to /sys, which not even root can make a directory in) is refused
// when it starts, not at its first save an epoch on.
func TestUnwritableCheckpointsRefusedAtStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	os.Mkdir(dir, 0o755)
	if err := os.Symlink("/sys", filepath.Join(dir, CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	if lock, err := LockRunDir(dir); err == nil || !strings.Contains(err.Error(), "no checkpoint can be written in its checkpoints directory") {
		if lock != nil {
			lock.Release()
		}
		t.Fatalf("LockRunDir with checkpoints leading to /sys: %v, want a refusal", err)
	}
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	if _, err := newTrainer(t, dataDir, dir, nil).Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "no checkpoint can be written") {
		t.Fatalf("a run into it: %v, want a refusal before training", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, MetricsFile)); err == nil {
		t.Error("the refused run trained (it wrote metrics)")
	}
	// A writable one passes, and the probe leaves nothing behind.
	ok := filepath.Join(t.TempDir(), "run")
	os.MkdirAll(filepath.Join(ok, CheckpointsDir), 0o755)
	lock, err := LockRunDir(ok)
	if err != nil {
		t.Fatal(err)
	}
	lock.Release()
	if entries, _ := os.ReadDir(filepath.Join(ok, CheckpointsDir)); len(entries) != 0 {
		t.Errorf("the writability probe left %d entries in the checkpoints", len(entries))
	}
}

// Training data at a path that is not UTF-8 is refused at the start: in
// run.json it would read back as another path (its bytes as U+FFFD), and
// a resume would not find it. Through a link named in UTF-8 it trains.
func TestNonUTF8DataPathRefused(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "bad\xffdata")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	runDir := filepath.Join(t.TempDir(), "run")
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "not UTF-8") {
		t.Fatalf("training on data at a path that is not UTF-8: %v, want a refusal", err)
	}
	if _, err := os.Stat(runDir); err == nil {
		t.Error("the refused run made its run directory")
	}
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(dataDir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := newTrainer(t, link, runDir, nil).Run(context.Background(), false); err != nil {
		t.Fatalf("training through a link named in UTF-8: %v", err)
	}
	// A shard so named: no link helps; refused at the start, not at every
	// resume for an input "changed" by its mangled record.
	shards := t.TempDir()
	tinyData(t, shards, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	entries, _ := os.ReadDir(shards)
	for _, e := range entries {
		os.Rename(filepath.Join(shards, e.Name()), filepath.Join(shards, "\xff"+e.Name()))
	}
	if _, err := newTrainer(t, shards, filepath.Join(t.TempDir(), "run"), nil).Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "training shard") || !strings.Contains(err.Error(), "not UTF-8") {
		t.Fatalf("training on a shard named in bytes that are not UTF-8: %v, want a refusal", err)
	}
}

// An owner record reads back as written, whatever the path holds (a
// newline included), and one of an older form (a path alone) or of a
// system without identities reads as a path without one; a record that is
// none (relative, unended, too long) reads as none.
func TestOwnerRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), CheckpointsOwnerFile)
	for _, c := range []struct {
		text string
		want ownerRecord
		ok   bool
	}{
		{"/runs/a\n2049:131\n", ownerRecord{"/runs/a", "2049:131"}, true},
		{"/runs/a\nb\n2049:131\n", ownerRecord{"/runs/a\nb", "2049:131"}, true},
		{"/runs/a\n\n", ownerRecord{"/runs/a", ""}, true},
		{"/runs/a\n", ownerRecord{"/runs/a", ""}, true},
		{"/runs/a\nb\n", ownerRecord{"/runs/a\nb", ""}, true},
		{"runs/a\n1:2\n", ownerRecord{}, false},
		{"/runs/a", ownerRecord{}, false},
		{"/" + strings.Repeat("a", maxOwnerRecord) + "\n", ownerRecord{}, false},
	} {
		os.WriteFile(path, []byte(c.text), 0o644)
		if got, ok := readOwnerRecord(path); ok != c.ok || ok && got != c.want {
			t.Errorf("record %q: %q, %v; want %q, %v", c.text, got, ok, c.want, c.ok)
		}
	}
}
