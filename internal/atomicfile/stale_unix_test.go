//go:build unix

package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A named pipe among the temporaries is nobody's: RemoveStale neither
// removes it nor opens it (which would wait for a writer forever).
func TestRemoveStaleNamedPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), ".out.tmp-fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * StaleAge)
	if err := unix.Utimes(fifo, []unix.Timeval{unix.NsecToTimeval(old.UnixNano()), unix.NsecToTimeval(old.UnixNano())}); err != nil {
		t.Fatal(err)
	}
	done := make(chan bool, 1)
	go func() {
		removed, _ := RemoveStale(fifo, func(string) bool { return true })
		done <- removed
	}()
	select {
	case removed := <-done:
		if removed {
			t.Error("RemoveStale removed a named pipe")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RemoveStale opened a named pipe: still waiting after 30 s")
	}
}

// A new file gets 0666 less the umask, a new directory 0777 less it (a
// private umask keeps them private); a replaced file keeps its mode.
func TestModes(t *testing.T) {
	defer unix.Umask(unix.Umask(0o077))
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteBytes(path, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("a new file under umask 077: mode %v, want 0600", st.Mode().Perm())
	}
	os.Chmod(path, 0o640)
	if err := WriteBytes(path, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("a replaced file of mode 0640: mode %v, want it kept", st.Mode().Perm())
	}
	d, release, err := MkdirTemp(dir, "hits")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if st, _ := os.Stat(d); st.Mode().Perm() != 0o700 {
		t.Errorf("a temporary directory under umask 077: mode %v, want 0700", st.Mode().Perm())
	}
}

// A temporary directory made under umask 777 (mode 000) is removed all
// the same, where its owner could not list it to check what it holds.
// (Root lists any directory: there the test only checks the removal.)
func TestRemoveDirOfModeZero(t *testing.T) {
	dir := t.TempDir()
	old := unix.Umask(0o777)
	d, release, err := MkdirTemp(dir, "hits")
	unix.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if st, _ := os.Stat(d); st.Mode().Perm() != 0 {
		t.Fatalf("a temporary directory under umask 777: mode %v, want 000", st.Mode().Perm())
	}
	if err := RemoveDir(d, func(string) bool { return true }); err != nil {
		t.Fatalf("RemoveDir of a directory of mode 000: %v", err)
	}
	if _, err := os.Lstat(d); err == nil {
		t.Error("the directory is still there")
	}
	// What a killed writer left under umask 777, a file and a directory
	// of mode 000, is swept as any other leftover.
	file, dirLeft := TempPath(dir, "out.npy"), TempPath(dir, "hits")
	os.WriteFile(file, []byte("partial"), 0)
	os.Mkdir(dirLeft, 0)
	past := time.Now().Add(-time.Hour)
	for _, p := range []string{file, dirLeft} {
		os.Chmod(p, 0)
		os.Chtimes(p, past, past)
	}
	if s := SweepStale(dir, "out.npy", nil); len(s.Removed) != 1 {
		t.Errorf("the sweep of a mode-000 leftover file: %+v", s)
	}
	if s := SweepStale(dir, "hits", func(string) bool { return true }); len(s.Removed) != 1 {
		t.Errorf("the sweep of a mode-000 leftover directory: %+v", s)
	}
}
