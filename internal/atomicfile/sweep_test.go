package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/internal/flock"
)

// SweepStale removes the temporaries of one base that their writers left,
// files or directories as holds says, and tells them from those a writer
// may be at (left, and warned of) and those it may not remove (left, with
// why); every other name and kind is left alone and unreported. Report
// says all of it.
func TestSweepStale(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skipf("file locks on directories are not relied on on %s: RemoveStale keeps everything there", runtime.GOOS)
	}
	dir := t.TempDir()
	old := time.Now().Add(-2 * StaleAge)
	create := func(name string, files ...string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if files == nil {
			if err := os.WriteFile(p, []byte("half"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				os.WriteFile(filepath.Join(p, f), []byte("x"), 0o644)
			}
		}
		return p
	}
	age := func(p string) {
		t.Helper()
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	stale, fresh := create(".out.npy.tmp-1"), create(".out.npy.tmp-2")
	age(stale)
	others := []string{create(".other.npy.tmp-3"), create(".out.npy.tmp-x"), create(".out.npy.tmp-4", "out.npy")}
	for _, p := range others {
		age(p)
	}
	if err := os.Symlink(stale, filepath.Join(dir, ".out.npy.tmp-5")); err != nil {
		t.Fatal(err)
	}

	s := SweepStale(dir, "out.npy", nil)
	if !slices.Equal(s.Removed, []string{stale}) || !slices.Equal(s.Live, []string{fresh}) || len(s.Failed) != 0 {
		t.Errorf("sweeping files: removed %v, live %v, failed %v; want %s removed and %s live", s.Removed, s.Live, s.Failed, stale, fresh)
	}
	for _, p := range append(others, fresh, filepath.Join(dir, ".out.npy.tmp-5")) {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v; want it left alone", p, err)
		}
	}
	var report bytes.Buffer
	s.Report(&report, "/data/out.npy")
	for _, want := range []string{
		"dinoclip: removed " + stale + ", left by a dinoclip killed while writing /data/out.npy\n",
		"dinoclip: warning: " + fresh + ": left by a dinoclip killed while writing /data/out.npy, or being written by another one now",
	} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, report.String())
		}
	}

	// Directories, with holds: one holding only what holds names is
	// removed, one holding more is not, and the report says why.
	hits := func(name string) bool { return name == "hits.npy" }
	dead := create(".hits.tmp-1", "hits.npy", ".hits.npy.tmp-9")
	mine := create(".hits.tmp-2", "hits.npy", "notes.txt")
	file := create(".hits.tmp-3")
	for _, p := range []string{dead, mine, file} {
		age(p)
	}
	s = SweepStale(dir, "hits", hits)
	if !slices.Equal(s.Removed, []string{dead}) || len(s.Live) != 0 || len(s.Failed) != 1 || s.Failed[0].Path != mine {
		t.Fatalf("sweeping directories: removed %v, live %v, failed %v; want %s removed and %s failed", s.Removed, s.Live, s.Failed, dead, mine)
	}
	for _, p := range []string{mine, file} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v; want it left alone", p, err)
		}
	}
	report.Reset()
	s.Report(&report, "/data/hits")
	if want := "dinoclip: warning: removing " + mine + ", left by a dinoclip killed while writing /data/hits: "; !strings.Contains(report.String(), want) ||
		!strings.Contains(report.String(), "notes.txt") || strings.Contains(report.String(), "or being written") {
		t.Errorf("the report of a directory holding a user's file:\n%s\nwant %q and the file's name, and no live one", report.String(), want)
	}

	// EveryBase: the stale files of every name (those left: the one
	// where a directory is written, another base's), still no directory,
	// link or fresh file.
	other := filepath.Join(dir, ".other.npy.tmp-3")
	if s := SweepStale(dir, EveryBase, nil); !slices.Equal(s.Removed, []string{file, other}) || !slices.Equal(s.Live, []string{fresh}) || len(s.Failed) != 0 {
		t.Errorf("sweeping every name: removed %v, live %v, failed %v; want %s and %s removed and %s live", s.Removed, s.Live, s.Failed, file, other, fresh)
	}

	if s := SweepStale(filepath.Join(dir, "missing"), "hits", hits); s.Removed != nil || s.Live != nil || s.Failed != nil {
		t.Errorf("sweeping a missing directory: %+v", s)
	}
	report.Reset()
	Sweep{}.Report(&report, "/data/hits")
	if report.Len() != 0 {
		t.Errorf("the report of an empty sweep: %q", report.String())
	}
}

// SweepOwn removes the temporaries of its bases however new, unless a
// writer holds one, and leaves other bases alone.
func TestSweepOwn(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skipf("file locks are not relied on on %s", runtime.GOOS)
	}
	dir := t.TempDir()
	mine, held, other := filepath.Join(dir, ".run.json.tmp-1"), filepath.Join(dir, ".run.json.tmp-2"), filepath.Join(dir, ".notes.tmp-3")
	for _, p := range []string{mine, held, other} {
		if err := os.WriteFile(p, []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := flock.TryLock(f, true); err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(time.Hour) // (a clock ahead of this one's, over NFS)
	os.Chtimes(mine, ahead, ahead)
	s := SweepOwn(dir, "run.json", "metrics.jsonl")
	if !slices.Equal(s.Removed, []string{mine}) || !slices.Equal(s.Live, []string{held}) || len(s.Failed) != 0 {
		t.Errorf("removed %v, live %v, failed %v; want %s removed and %s live", s.Removed, s.Live, s.Failed, mine, held)
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("the temporary of another base: %v", err)
	}
	// The other sweep leaves the own bases to SweepOwn: the held one is
	// not reported twice.
	if s := SweepStaleExcept(dir, "run.json", "metrics.jsonl"); !slices.Equal(s.Live, []string{other}) || len(s.Removed) != 0 {
		t.Errorf("SweepStaleExcept: removed %v, live %v; want only %s live", s.Removed, s.Live, other)
	}
}

// Report names the first removals and counts the rest in one line: an
// index killed sweeps hundreds of shard files.
func TestReportCountsManyRemovals(t *testing.T) {
	var s Sweep
	for i := range 25 {
		s.Removed = append(s.Removed, filepath.Join("/data/ix", fmt.Sprintf("keys-%05d.npy", i)))
	}
	var report bytes.Buffer
	s.Report(&report, "/data/ix")
	lines := strings.Split(strings.TrimSuffix(report.String(), "\n"), "\n")
	if len(lines) != reportedRemovals || !strings.Contains(lines[0], "removed /data/ix/keys-00000.npy,") ||
		lines[len(lines)-1] != "dinoclip: removed 16 more files in /data/ix, left by a dinoclip killed while writing /data/ix" {
		t.Errorf("report of 25 removals:\n%s", report.String())
	}
}
