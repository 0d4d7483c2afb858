package mountpoint

import (
	"os"
	"strings"
	"testing"
)

// /proc is a mount point (procfs under /); a temporary directory is not.
func TestIs(t *testing.T) {
	dir := t.TempDir()
	proc, err := os.Stat("/proc")
	if err != nil {
		t.Fatal(err)
	}
	here, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !Is("/proc", proc) || Is(dir, here) {
		t.Errorf("Is: /proc %v, %s %v; want true, false", Is("/proc", proc), dir, Is(dir, here))
	}
}

// The mount table's escapes are undone, and /proc is listed in it.
func TestListed(t *testing.T) {
	for in, want := range map[string]string{`/mnt/a\040b`: "/mnt/a b", `/x\134y`: `/x\y`, `/plain`: "/plain", `/odd\04`: `/odd\04`} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
	if !Listed("/proc") || Listed(t.TempDir()) {
		t.Errorf("Listed: /proc %v, a temporary directory %v; want true, false", Listed("/proc"), Listed(t.TempDir()))
	}
}

// A bind mount of a directory of the root filesystem is listed by its
// mount point (the fifth field), not by its source within the filesystem
// (the fourth).
func TestListedBindMount(t *testing.T) {
	const table = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n" +
		"35 22 8:1 /srv/data /home/me/my\\040data rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
	for path, want := range map[string]bool{"/home/me/my data": true, "/": true, "/srv/data": false, "/home/me": false} {
		if got := listedIn(strings.NewReader(table), path); got != want {
			t.Errorf("listedIn(%q) = %v, want %v", path, got, want)
		}
	}
}
