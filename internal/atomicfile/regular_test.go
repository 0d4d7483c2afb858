package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// OpenRegular opens a regular file (creating a missing one with O_CREATE,
// never through a name made meanwhile), and refuses a link (also a
// dangling one), a directory, and a missing file without O_CREATE.
func TestOpenRegular(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("mine"), 0o644)
	f, err := OpenRegular(plain, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(f); string(b) != "mine" {
		t.Errorf("read %q from the plain file", b)
	}
	f.Close()

	made := filepath.Join(dir, "made")
	f, err = OpenRegular(made, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, err := os.Lstat(made); err != nil || !st.Mode().IsRegular() {
		t.Errorf("O_CREATE made no regular file: %v", err)
	}
	if _, err := OpenRegular(filepath.Join(dir, "missing"), os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file without O_CREATE: %v, want fs.ErrNotExist", err)
	}

	link, dangling := filepath.Join(dir, "link"), filepath.Join(dir, "dangling")
	os.Symlink(plain, link)
	os.Symlink(filepath.Join(dir, "nowhere"), dangling)
	for _, tc := range []struct {
		path, kind string
		flag       int
	}{
		{link, "a symbolic link", os.O_RDWR},
		{dangling, "a symbolic link", os.O_RDWR | os.O_CREATE},
		{dir, "a directory", os.O_RDONLY},
	} {
		f, err := OpenRegular(tc.path, tc.flag, 0o644)
		var nr *NotRegularError
		if !errors.As(err, &nr) || nr.Kind != tc.kind || nr.Path != tc.path {
			t.Errorf("%s: %v, want a NotRegularError naming %s", tc.path, err, tc.kind)
		}
		if f != nil {
			f.Close()
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("O_CREATE on a dangling link created the file it leads to")
	}
	if b, _ := os.ReadFile(plain); string(b) != "mine" {
		t.Errorf("the link's target changed: %q", b)
	}
}

// RealPath resolves as the system does: a ".." after a link leads out of
// where the link leads, not back out of the link's own directory.
func TestRealPath(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "other", "deep"), 0o755)
	os.WriteFile(filepath.Join(dir, "m"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "other", "m"), []byte("y"), 0o644)
	os.Symlink(filepath.Join(dir, "other", "deep"), filepath.Join(dir, "L"))
	got, err := RealPath(dir + "/L/../m")
	if want := filepath.Join(dir, "other", "m"); err != nil || got != want {
		t.Errorf("RealPath(L/../m) = %s, %v; want %s, where the system reads", got, err, want)
	}
	t.Chdir(dir)
	if got, err := RealPath("L/../m"); err != nil || got != filepath.Join(dir, "other", "m") {
		t.Errorf("RealPath of a relative L/../m = %s, %v", got, err)
	}
	// A working directory reached through a link is resolved too.
	os.Symlink(filepath.Join(dir, "other"), filepath.Join(dir, "W"))
	t.Chdir(filepath.Join(dir, "W"))
	t.Setenv("PWD", filepath.Join(dir, "W")) // (as a shell sets it: Getwd returns it)
	if got, err := RealPath("m"); err != nil || got != filepath.Join(dir, "other", "m") {
		t.Errorf("RealPath of m in a linked working directory = %s, %v", got, err)
	}
	if _, err := RealPath(filepath.Join(dir, "missing")); err == nil {
		t.Error("RealPath of a missing file: no error")
	}
	// RealOrAbs: resolved where it can be, else absolute; AbsPath keeps "".
	if got := RealOrAbs("m"); got != filepath.Join(dir, "other", "m") {
		t.Errorf("RealOrAbs(m) = %s", got)
	}
	if got := RealOrAbs("missing"); got != filepath.Join(dir, "W", "missing") {
		t.Errorf("RealOrAbs of a missing file = %s, want it made absolute", got)
	}
	if got := AbsPath(""); got != "" {
		t.Errorf(`AbsPath("") = %q`, got)
	}
}

// ResolveDotDot takes LINK/.. as the system does, keeps the rest of the
// path as written (a name not made yet, a link after the last ".."), and
// leaves a path without ".." alone.
func TestResolveDotDot(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "other", "deep"), 0o755)
	os.Symlink(filepath.Join(dir, "other", "deep"), filepath.Join(dir, "L"))
	os.Symlink(filepath.Join(dir, "other"), filepath.Join(dir, "M"))
	for _, c := range []struct{ in, want string }{
		{dir + "/L/../set", filepath.Join(dir, "other", "set")},
		{dir + "/L/../new/run/", filepath.Join(dir, "other", "new", "run")},
		{dir + "/L/../../M", filepath.Join(dir, "M")}, // the link after the last ".." kept
		{dir + "/L/..", filepath.Join(dir, "other")},
		{dir + "/L/x", dir + "/L/x"},                       // no "..": as written
		{dir + "/missing/../set", dir + "/missing/../set"}, // does not resolve: as written
		{dir + "/L/..x/y", dir + "/L/..x/y"},               // "..x" is a name
	} {
		if got := ResolveDotDot(c.in); got != c.want {
			t.Errorf("ResolveDotDot(%s) = %s, want %s", c.in, got, c.want)
		}
	}
	if _, err := ResolveDotDotOut(dir + "/missing/../set"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ResolveDotDotOut of missing/../set: %v, want no such file", err)
	}
	if got, err := ResolveDotDotOut(dir + "/L/../new"); err != nil || got != filepath.Join(dir, "other", "new") {
		t.Errorf("ResolveDotDotOut(L/../new) = %s, %v", got, err)
	}
	t.Chdir(dir)
	if got := ResolveDotDot("L/../set"); got != filepath.Join("other", "set") && got != filepath.Join(dir, "other", "set") {
		t.Errorf("ResolveDotDot(L/../set) in its directory = %s", got)
	}
}

// endless is a reader that never ends (a pipe fed forever).
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.read += int64(len(p))
	return len(p), nil
}

// ReadAtMost reads up to its limit and refuses more, having read one
// byte past it, so an endless reader is not read to the end of memory.
func TestReadAtMost(t *testing.T) {
	if b, err := ReadAtMost(strings.NewReader("four"), 4); err != nil || string(b) != "four" {
		t.Errorf("ReadAtMost(four, 4) = %q, %v", b, err)
	}
	var tl *TooLargeError
	if _, err := ReadAtMost(strings.NewReader("four"), 3); !errors.As(err, &tl) || tl.Limit != 3 {
		t.Errorf("ReadAtMost(four, 3): %v, want a TooLargeError of limit 3", err)
	}
	r := &endless{}
	if _, err := ReadAtMost(r, 1000); !errors.As(err, &tl) || r.read > 1<<20 {
		t.Errorf("ReadAtMost(endless, 1000): %v after %d bytes read", err, r.read)
	}
}

// A file larger than the limit is refused by its size, before any of it
// is read: here a file open for writing only, whose read would fail
// otherwise.
func TestReadRefusesBySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	var tl *TooLargeError
	if _, err := readOpen(f, path, 1<<20-1); !errors.As(err, &tl) {
		t.Errorf("a file one byte over the limit: %v, want a TooLargeError before any read", err)
	}
	if _, err := readOpen(f, path, 1<<20); err == nil || errors.As(err, &tl) {
		t.Errorf("a file at the limit, not readable: %v, want the read's error", err)
	}
}
