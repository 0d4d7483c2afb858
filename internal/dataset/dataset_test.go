package dataset

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Only StagingPrefix followed by digits names a staging directory.
func TestIsStagingName(t *testing.T) {
	for name, want := range map[string]bool{
		StagingPrefix + "0": true, StagingPrefix + "123456": true,
		StagingPrefix: false, StagingPrefix + "backup": false, StagingPrefix + "12x": false,
		".train.synth.tmp-12": false, "synth.tmp-12": false, LegacyStagingDir: false,
	} {
		if got := IsStagingName(name); got != want {
			t.Errorf("IsStagingName(%q) = %v, want %v", name, got, want)
		}
	}
}

// The unfinished-run marker counts only as a regular file in the
// directory above: a directory or link of that name does not.
func TestCheckUnfinished(t *testing.T) {
	out := t.TempDir()
	dir := filepath.Join(out, "eval")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(out, UnfinishedFile)
	if err := os.Mkdir(marker, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckComplete(dir); err != nil {
		t.Errorf("with a directory named %s: %v", UnfinishedFile, err)
	}
	os.Remove(marker)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckComplete(dir); !errors.Is(err, ErrIncomplete) {
		t.Errorf("with %s: %v, want ErrIncomplete", marker, err)
	}
	if err := CheckComplete(out); err != nil {
		t.Errorf("the --out directory itself: %v", err)
	}
	// Another data set beside synth's is no synth's.
	other := filepath.Join(out, "cc12m")
	os.Mkdir(other, 0o755)
	if err := CheckComplete(other); err != nil {
		t.Errorf("a data set beside synth's train and eval: %v", err)
	}
}
