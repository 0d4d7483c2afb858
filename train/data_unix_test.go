//go:build unix

package train

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A shard whose two files are links (symbolic or hard) to an earlier
// shard's is a copy of it; one that shares only its features file is not.
func TestDatasetCopies(t *testing.T) {
	dir := t.TempDir()
	tinyData(t, dir, 30, 10, 3, 2, false) // shard-a, shard-b, shard-c
	at := func(name, suffix string) string { return filepath.Join(dir, name+suffix) }
	for _, suffix := range []string{FeatureSuffix, TargetSuffix} {
		if err := os.Symlink("shard-a"+suffix, at("shard-d", suffix)); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(at("shard-b", suffix), at("shard-e", suffix)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("shard-c"+FeatureSuffix, at("shard-f", FeatureSuffix)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(at("shard-c", TargetSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(at("shard-f", TargetSuffix), b, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := [][2]string{{"shard-d", "shard-a"}, {"shard-e", "shard-b"}}
	if got := d.Copies(); !slices.Equal(got, want) {
		t.Errorf("Copies: %v, want %v", got, want)
	}
}

// A shard whose targets file is its features file (a link to it, of the
// same width) is refused: the model would learn the identity.
func TestDatasetRefusesSelfTargets(t *testing.T) {
	dir := t.TempDir()
	tinyData(t, dir, 10, 10, 3, 3, false)
	targets := filepath.Join(dir, "shard-a"+TargetSuffix)
	os.Remove(targets)
	if err := os.Symlink("shard-a"+FeatureSuffix, targets); err != nil {
		t.Fatal(err)
	}
	if d, err := OpenDataset(dir); err == nil || !strings.Contains(err.Error(), "are one file") {
		if d != nil {
			d.Close()
		}
		t.Errorf("a shard whose targets are its features: %v, want a refusal", err)
	}
}
