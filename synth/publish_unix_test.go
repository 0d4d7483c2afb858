//go:build unix

package synth

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dinoclip/dinoclip/internal/dataset"
)

// renameDir replaces an empty directory in one step, as rename(2) does
// (os.Rename refuses any directory there).
func TestRenameDirOntoEmpty(t *testing.T) {
	parent := t.TempDir()
	src, dst := filepath.Join(parent, "src"), filepath.Join(parent, "dst")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := renameDir(src, dst); err != nil {
		t.Fatalf("renameDir onto an empty directory: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "f")); err != nil || string(b) != "x" {
		t.Errorf("after renameDir: %q, %v", b, err)
	}
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := renameDir(src, dst); err == nil {
		t.Error("renameDir replaced a directory that is not empty")
	}
}

// A data set that replaces another keeps its directory's group and its
// setgid bit (which gives files made in it that group).
func TestReplacedSetKeepsGroupAndSetgid(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "train")
	opts := smallOptions(1)
	if _, err := WriteTrainingData(dir, opts, 20, 10, false); err != nil {
		t.Fatal(err)
	}
	gid := os.Getgid()
	if os.Geteuid() == 0 {
		gid = 4242 // any group will do for root
	}
	if err := os.Chown(dir, -1, gid); err != nil {
		t.Skip(err)
	}
	if err := os.Chmod(dir, 0o2770|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode()&fs.ModeSetgid == 0 {
		t.Skip("this filesystem keeps no setgid bit")
	}
	opts.Overwrite = true
	if _, err := WriteTrainingData(dir, opts, 20, 10, false); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&fs.ModeSetgid == 0 || st.Mode().Perm() != 0o770 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("replaced set's directory: mode %v, group %d; want setgid 0770, group %d", st.Mode(), st.Sys().(*syscall.Stat_t).Gid, gid)
	}
	shard, err := os.Stat(filepath.Join(dir, ShardName(0)+dataset.FeatureSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if g := int(shard.Sys().(*syscall.Stat_t).Gid); g != gid {
		t.Errorf("a shard's group is %d, want the directory's, %d", g, gid)
	}
}
