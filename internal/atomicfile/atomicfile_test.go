package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestWriteReplacesWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteBytes(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(path, func(w io.Writer) error {
		w.Write([]byte("half of the new"))
		return boom
	})
	// (write's own failure as it is, not as one of writing path: "write
	// OUT: IN: row 7 is NaN" blamed the output for its input.)
	if err != boom {
		t.Fatalf("error %v, want boom", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("after a failed write the file holds %q, want the old contents", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("a failed write left %d files behind", len(entries)-1)
	}
	if err := WriteBytes(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("file holds %q, want new", b)
	}
}

// ReplaceAllBytes renames none of its files into place unless every one
// was written: a failure to write the second (here a directory where it
// goes) leaves the first as it was, and no temporary file.
func TestReplaceAllBytesWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "report.json"), filepath.Join(dir, "report.txt")
	if err := WriteBytes(first, []byte("old json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(second, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceAllBytes([]string{first, second}, [][]byte{[]byte("new json"), []byte("new text")}); err == nil || !strings.Contains(err.Error(), second) {
		t.Fatalf("ReplaceAllBytes with a directory at the second file: %v, want an error naming it", err)
	}
	if b, _ := os.ReadFile(first); string(b) != "old json" {
		t.Errorf("the first file after the second failed: %q, want the old one", b)
	}
	os.Remove(second)
	// The second's directory missing: the temporary file is what fails.
	if err := ReplaceAllBytes([]string{first, filepath.Join(dir, "gone", "report.txt")}, [][]byte{[]byte("new json"), []byte("new text")}); err == nil {
		t.Fatal("ReplaceAllBytes into a missing directory: no error")
	}
	if b, _ := os.ReadFile(first); string(b) != "old json" {
		t.Errorf("the first file after the second failed: %q, want the old one", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left in the directory: %v, want %s alone", entries, filepath.Base(first))
	}
	if err := ReplaceAllBytes([]string{first, second}, [][]byte{[]byte("new json"), []byte("new text")}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{first: "new json", second: "new text"} {
		if b, _ := os.ReadFile(path); string(b) != want {
			t.Errorf("%s: %q, want %q", path, b, want)
		}
	}
}

// A symbolic link is followed (its target written, the link kept, also
// when the target does not exist yet); a device, a directory or a
// read-only file is refused and left as it was.
func TestWriteDestinations(t *testing.T) {
	dir := t.TempDir()
	// Into a directory that does not exist: the error names it, not the
	// temporary, and is fs.ErrNotExist.
	missing := filepath.Join(dir, "no", "such")
	if err := WriteBytes(filepath.Join(missing, "f"), nil); !errors.Is(err, fs.ErrNotExist) || !strings.HasSuffix(err.Error(), ": the directory "+missing+" does not exist") {
		t.Errorf("a write into a missing directory: %v", err)
	}
	// A name longer than a file system takes is refused before anything
	// is written (the rename into place refused it, after the work); the
	// longest there is works (its temporary has a shortened name).
	if err := WriteBytes(filepath.Join(dir, strings.Repeat("n", 256)), nil); err == nil || !strings.Contains(err.Error(), "256 bytes long, more than the 255") {
		t.Errorf("a 256-byte name: %v, want a refusal", err)
	}
	if err := WriteBytes(filepath.Join(dir, strings.Repeat("n", 255)), []byte("x")); err != nil {
		t.Errorf("a 255-byte name: %v", err)
	}
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	os.Symlink("target", link) // relative, dangling until written
	for _, data := range []string{"one", "two"} {
		if err := WriteBytes(link, []byte(data)); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the link was replaced (%v)", err)
		}
		if b, err := os.ReadFile(target); err != nil || string(b) != data {
			t.Fatalf("target holds %q (%v), want %q", b, err, data)
		}
	}
	// A relative link under a linked directory: ".." from where the
	// system finds it (real/sub), not from the link's name (d/l).
	os.MkdirAll(filepath.Join(dir, "real", "sub"), 0o755)
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	os.Symlink(filepath.Join(dir, "real", "sub"), filepath.Join(dir, "d", "l"))
	os.Symlink("../x", filepath.Join(dir, "real", "sub", "out"))
	if err := WriteBytes(filepath.Join(dir, "d", "l", "out"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "real", "x")); err != nil || string(b) != "x" {
		t.Errorf("a relative link under a linked directory: real/x holds %q (%v)", b, err)
	}
	// A link whose target has ".." after a linked directory (sub/../f
	// where sub leads to E/deep): the system's E/f, not the link's
	// neighbour f, which filepath.Join's cleaning of "sub/.." would give.
	os.MkdirAll(filepath.Join(dir, "E", "deep"), 0o755)
	os.MkdirAll(filepath.Join(dir, "L", "d"), 0o755)
	os.Symlink("../../E/deep", filepath.Join(dir, "L", "d", "sub"))
	os.WriteFile(filepath.Join(dir, "L", "d", "f.npy"), []byte("neighbour"), 0o644)
	os.Symlink("sub/../f.npy", filepath.Join(dir, "L", "d", "x.npy"))
	for _, p := range []string{filepath.Join(dir, "L", "d", "x.npy"), filepath.Join(dir, "L", "d", "sub") + "/../g.npy"} {
		if err := WriteBytes(p, []byte("new")); err != nil {
			t.Fatal(err)
		}
	}
	// ... also into a directory that does not exist yet: the error names
	// the one the system would look for.
	err := WriteBytes(filepath.Join(dir, "L", "d", "sub")+"/../new/h.npy", []byte("new"))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "E", "new", "h.npy")) {
		t.Errorf("write sub/../new/h.npy: %v, want an error naming E/new/h.npy", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "L", "d", "f.npy")); string(b) != "neighbour" {
		t.Errorf("writing through sub/../f.npy replaced the link's neighbour f.npy: it holds %q", b)
	}
	for _, f := range []string{"f.npy", "g.npy"} {
		if b, err := os.ReadFile(filepath.Join(dir, "E", f)); err != nil || string(b) != "new" {
			t.Errorf("E/%s holds %q (%v), want what was written through the link", f, b, err)
		}
	}
	// A name the system would create no file at, given or through a link,
	// is refused: cleaned, it named another (keep.npy/ and keep.npy/.
	// were written as keep.npy, keep.npy/../y.npy as y.npy).
	os.WriteFile(filepath.Join(dir, "keep.npy"), []byte("keep"), 0o644)
	os.Symlink("keep.npy/", filepath.Join(dir, "slash"))
	keep, fresh := filepath.Join(dir, "keep.npy"), filepath.Join(dir, "fresh")
	for p, want := range map[string]string{
		keep + "/":                  "is a directory's",
		filepath.Join(dir, "slash"): "is a directory's",
		fresh + "/":                 "is a directory's",
		keep + "/.":                 "is a directory's",
		fresh + "/.":                "is a directory's",
		fresh + "/sub/..":           "is a directory's",
		keep + "/../y.npy":          "not a directory",
		fresh + "/../y.npy":         "no such file",
		keep + "/sub/y.npy":         "not a directory",
	} {
		if err := WriteBytes(p, []byte("new")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("write %s: %v, want a refusal saying %q", p, err, want)
		}
	}
	if b, _ := os.ReadFile(keep); string(b) != "keep" {
		t.Errorf("keep.npy holds %q after writes to keep.npy/", b)
	}
	for _, name := range []string{"fresh", "y.npy"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			t.Errorf("a refused write made %s", name)
		}
	}
	loop := filepath.Join(dir, "loop")
	os.Symlink("loop", loop)
	if err := WriteBytes(loop, []byte("x")); err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Errorf("a link to itself: %v", err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	ro := filepath.Join(dir, "ro")
	os.WriteFile(ro, []byte("keep"), 0o444)
	devLink := filepath.Join(dir, "devnull")
	os.Symlink(os.DevNull, devLink)
	cases := []struct{ path, want string }{
		{os.DevNull, "not a regular file"},
		{devLink, "it leads to a device, not a regular file"},
		{sub, "not a regular file"},
		{ro, "read-only"},
	}
	// /dev/stdout on a pipe: a link, through /proc/self/fd, to a pipe by a
	// name ("pipe:[N]") that is no path (it was followed as one).
	if r, w, err := os.Pipe(); err == nil {
		defer r.Close()
		defer w.Close()
		if fd := fmt.Sprintf("/proc/self/fd/%d", w.Fd()); IsLink(fd) {
			cases = append(cases, struct{ path, want string }{fd, "it leads to a named pipe, not a regular file"})
		}
	}
	for _, c := range cases {
		if err := WriteBytes(c.path, []byte("x")); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("write %s: %v, want an error saying %q", c.path, err, c.want)
		}
	}
	if st, err := os.Stat(os.DevNull); err != nil || st.Mode()&os.ModeDevice == 0 {
		t.Fatalf("%s is no longer a device (%v)", os.DevNull, err)
	}
	if b, _ := os.ReadFile(ro); string(b) != "keep" {
		t.Errorf("the read-only file was replaced: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// RemoveStale removes a temporary whose writer is gone (no lock, unchanged
// for StaleAge), and keeps one a writer is at (Write's file, MkdirTemp's
// directory until released) or that changed lately.
func TestRemoveStale(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skipf("file locks on directories are not relied on on %s: RemoveStale keeps everything there", runtime.GOOS)
	}
	dir := t.TempDir()
	old := time.Now().Add(-2 * StaleAge)
	age := func(p string) {
		t.Helper()
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	hitsFile := func(name string) bool { return name == "ids.npy" }
	want := func(what, p string, removed bool) {
		t.Helper()
		got, err := RemoveStale(p, hitsFile)
		if err != nil || got != removed {
			t.Errorf("RemoveStale(%s): %v, %v; want %v", what, got, err, removed)
		}
		if _, err := os.Lstat(p); (err == nil) == removed {
			t.Errorf("%s: after RemoveStale it exists: %v; want %v", what, err == nil, !removed)
		}
	}

	dead := filepath.Join(dir, ".out.tmp-1")
	os.WriteFile(dead, []byte("half"), 0o644)
	want("a fresh temporary", dead, false)
	age(dead)
	want("an old temporary nobody holds", dead, true)

	// A live Write: its temporary, however old, is kept.
	path := filepath.Join(dir, "out")
	err := Write(path, func(w io.Writer) error {
		tmps, _ := filepath.Glob(filepath.Join(dir, ".out.tmp-*"))
		if len(tmps) != 1 {
			return fmt.Errorf("temporaries %v, want one", tmps)
		}
		age(tmps[0])
		want("a temporary Write is writing", tmps[0], false)
		_, err := w.Write([]byte("whole"))
		return err
	})
	if b, _ := os.ReadFile(path); err != nil || string(b) != "whole" {
		t.Fatalf("Write: %v, %q", err, b)
	}

	// A temporary directory, held until released.
	tmpDir, release, err := MkdirTemp(dir, "hits")
	if err != nil {
		t.Fatal(err)
	}
	if base, ok := TempOf(filepath.Base(tmpDir)); !ok || base != "hits" {
		t.Errorf("MkdirTemp(dir, hits) made %s, which TempOf reads as %q, %v", tmpDir, base, ok)
	}
	os.WriteFile(filepath.Join(tmpDir, "ids.npy"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(tmpDir, ".ids.npy.tmp-7"), []byte("x"), 0o644)
	age(tmpDir)
	want("a held temporary directory", tmpDir, false)
	release()
	want("a released temporary directory", tmpDir, true)

	// A directory holding what no writer of it writes (a user's file, a
	// subdirectory: maybe a mount) is left whole, and so is one swept
	// without a list of its files.
	for _, odd := range []string{"notes.txt", "sub/", ".ids.npy.tmp-x"} {
		d := filepath.Join(dir, ".keep.tmp-1")
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "ids.npy"), []byte("x"), 0o644)
		if strings.HasSuffix(odd, "/") {
			os.Mkdir(filepath.Join(d, odd), 0o755)
		} else {
			os.WriteFile(filepath.Join(d, odd), []byte("mine"), 0o644)
		}
		age(d)
		if removed, err := RemoveStale(d, hitsFile); removed || err == nil || !strings.Contains(err.Error(), strings.TrimSuffix(odd, "/")) {
			t.Errorf("RemoveStale of a directory holding %s: %v, %v; want it kept, with an error naming it", odd, removed, err)
		}
		if _, err := os.Stat(filepath.Join(d, odd)); err != nil {
			t.Errorf("RemoveStale removed %s: %v", odd, err)
		}
		os.RemoveAll(d)
	}
	d := filepath.Join(dir, ".keep.tmp-2")
	os.Mkdir(d, 0o755)
	age(d)
	if removed, err := RemoveStale(d, nil); removed || err != nil {
		t.Errorf("RemoveStale(dir, nil): %v, %v; want it kept", removed, err)
	}
}

// TempOf reads the temporary names Write and MkdirTemp give, and no name a
// user would choose.
func TestTempOf(t *testing.T) {
	for name, want := range map[string]string{".out.npy.tmp-123": "out.npy", ".a.tmp-b.tmp-9": "a.tmp-b", ".hits.tmp-0": "hits"} {
		if base, ok := TempOf(name); !ok || base != want {
			t.Errorf("TempOf(%q) = %q, %v; want %q", name, base, ok, want)
		}
	}
	for _, name := range []string{".hits.tmp-mybackup", ".out.npy.tmp-", "out.npy.tmp-1", "..tmp-1", ".tmp-1", ".hits.tmp-12.old1", ".x.tmp-1 "} {
		if base, ok := TempOf(name); ok {
			t.Errorf("TempOf(%q) = %q: a name no writer gives taken for a temporary", name, base)
		}
	}
}

// A name the system allows but too long for the temporary's additions
// (240 to 255 bytes) is written all the same, and its temporaries are
// known as its own: swept after a kill, kept apart from another long
// name's of the same start.
func TestLongNames(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{239, 240, 250, 255} {
		name := strings.Repeat("é", (n-4)/2) + strings.Repeat("x", (n-4)%2) + ".npy"
		if len(name) != n {
			t.Fatalf("a name of %d bytes, want %d", len(name), n)
		}
		path := filepath.Join(dir, name)
		if err := WriteBytes(path, []byte("data")); err != nil {
			t.Fatalf("a name of %d bytes: %v", n, err)
		}
		tmp := TempPath(dir, name)
		if len(filepath.Base(tmp)) > 255 {
			t.Errorf("a name of %d bytes: its temporary's name has %d", n, len(filepath.Base(tmp)))
		}
		if base, ok := TempOf(filepath.Base(tmp)); !ok || base != TempBase(name) {
			t.Errorf("a name of %d bytes: TempOf(its temporary) = %q, %v", n, base, ok)
		}
	}
	// The shortened base, which the Python side computes too (its test
	// pins the same value).
	if got, want := TempBase(strings.Repeat("é", 123)+".npy"), strings.Repeat("é", 115)+"~bf24afa6"; got != want {
		t.Errorf("TempBase of 123 é and .npy = %q, want %q", got, want)
	}
	// A killed writer's temporary of a long name is swept with it, not
	// with another long name of the same first 230 bytes.
	long := strings.Repeat("a", 250)
	left := TempPath(dir, long+"1")
	os.WriteFile(left, nil, 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(left, old, old)
	if s := SweepStale(dir, long+"2", nil); len(s.Removed) != 0 {
		t.Errorf("another long name's sweep removed %v", s.Removed)
	}
	if s := SweepStale(dir, long+"1", nil); len(s.Removed) != 1 {
		t.Errorf("its own sweep removed %v, want %s", s.Removed, left)
	}
}
