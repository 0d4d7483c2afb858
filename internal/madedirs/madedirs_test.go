package madedirs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// MkdirAll names the topmost directory it made; Remove takes the made
// ones away again up to it, and stops at one that gained a file.
func TestMkdirAllRemove(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b", "c")
	top, err := MkdirAll(dir)
	if err != nil || top != filepath.Join(base, "a") {
		t.Fatalf("MkdirAll: top %q, %v; want %s", top, err, filepath.Join(base, "a"))
	}
	if again, err := MkdirAll(dir); err != nil || again != "" {
		t.Fatalf("MkdirAll of an existing directory: top %q, %v; want none", again, err)
	}
	if err := os.WriteFile(filepath.Join(base, "a", "keep.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	Remove(dir, top)
	if _, err := os.Stat(filepath.Join(base, "a", "b")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a/b, made and empty, is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(base, "a", "keep.txt")); err != nil {
		t.Errorf("a, holding a file, was removed: %v", err)
	}
	Remove(filepath.Join(base, "a"), "")
	if _, err := os.Stat(filepath.Join(base, "a")); err != nil {
		t.Errorf("Remove with no top removed a: %v", err)
	}
	if _, err := os.Stat(base); err != nil {
		t.Errorf("the directory above top was removed: %v", err)
	}
	// A top that is not above dir: nothing is removed.
	other := filepath.Join(base, "x", "y")
	os.MkdirAll(other, 0o755)
	Remove(other, filepath.Join(base, "elsewhere"))
	if _, err := os.Stat(other); err != nil {
		t.Errorf("Remove with a top not above dir removed it: %v", err)
	}
}

// Existing is the deepest directory of a path that exists.
func TestExisting(t *testing.T) {
	base := t.TempDir()
	if got := Existing(filepath.Join(base, "a", "b")); got != base {
		t.Errorf("Existing(base/a/b) = %s, want %s", got, base)
	}
	if got := Existing(base); got != base {
		t.Errorf("Existing(base) = %s, want itself", got)
	}
}

// A symbolic link that leads nowhere, as the directory or above it, is
// named in the error (the system says only "file exists"), and nothing is
// made where it leads.
func TestMkdirAllDanglingLink(t *testing.T) {
	base := t.TempDir()
	link := filepath.Join(base, "out")
	if err := os.Symlink("nowhere", link); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	for _, dir := range []string{link, filepath.Join(link, "sub")} {
		_, err := MkdirAll(dir)
		if want := link + " is a symbolic link that leads nowhere (to nowhere: "; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("MkdirAll(%s): %v, want an error saying %q", dir, err, want)
		}
	}
	// Round a loop of links, too.
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	os.Symlink("b", a)
	os.Symlink("a", b)
	if _, err := MkdirAll(a); err == nil || !strings.Contains(err.Error(), a+" is a symbolic link that leads nowhere (to b: too many levels of symbolic links)") {
		t.Errorf("MkdirAll of a link in a loop: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("MkdirAll made where the link leads (%v)", err)
	}
}
