package sysmem

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestMemAvailable(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   12288000 kB\n", 12288000 * 1024, true},
		{"MemTotal: 1 kB\n", 0, false},
		{"MemAvailable: lots kB\n", 0, false},
		{"MemAvailable: 12 MB\n", 0, false},
		{"", 0, false},
	} {
		got, ok := memAvailable([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("memAvailable(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestCgroupLeft(t *testing.T) {
	for _, c := range []struct {
		max, current string
		want         uint64
		limited      bool
	}{
		{"max\n", "1000\n", 0, false},
		{"4096\n", "1000\n", 3096, true},
		{"4096\n", "5000\n", 0, true},
		{"", "", 0, false},
		{"4096\n", "", 0, false},
	} {
		got, limited := cgroupLeft([]byte(c.max), []byte(c.current))
		if got != c.want || limited != c.limited {
			t.Errorf("cgroupLeft(%q, %q) = %d, %v; want %d, %v", c.max, c.current, got, limited, c.want, c.limited)
		}
	}
}

// TestAvailableOnThisMachine checks that Available reads a plausible
// figure on Linux, where CI runs.
func TestAvailableOnThisMachine(t *testing.T) {
	avail, ok := Available()
	if !ok {
		if runtime.GOOS == "linux" {
			t.Fatal("Available() read nothing on Linux")
		}
		t.Skipf("no /proc/meminfo on %s", runtime.GOOS)
	}
	if avail < 1<<20 {
		t.Errorf("Available() = %d bytes: less than 1 MiB is not a running machine", avail)
	}
}

// Under ulimit -v, Available is at most what the limit leaves: the check
// runs in a child process started with the limit set.
func TestAvailableUnderAddressSpaceLimit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("ulimit -v and /proc/self/status: Linux only, not %s", runtime.GOOS)
	}
	if os.Getenv("SYSMEM_CHILD") == "1" {
		avail, ok := Available()
		fmt.Printf("available %d %v\n", avail, ok)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const limitKB = 4 << 20 // 4 GiB: room for the Go runtime's reservations
	cmd := exec.Command("bash", "-c", fmt.Sprintf("ulimit -v %d && exec %q -test.run '^TestAvailableUnderAddressSpaceLimit$'", limitKB, exe))
	cmd.Env = append(os.Environ(), "SYSMEM_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var avail uint64
	var ok bool
	if _, err := fmt.Sscanf(string(out[strings.Index(string(out), "available"):]), "available %d %v", &avail, &ok); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	if !ok || avail >= limitKB<<10 {
		t.Errorf("under ulimit -v %d KiB: Available() = %d, %v; want less than the limit", limitKB, avail, ok)
	}
}

// DiskFree reads the free space of a temporary directory's file system on
// the systems it supports, and nothing of a path that does not exist.
func TestDiskFree(t *testing.T) {
	dir := t.TempDir()
	free, ok := DiskFree(dir)
	switch runtime.GOOS {
	case "linux", "darwin", "freebsd":
		if !ok || free == 0 {
			t.Errorf("DiskFree(%s) = %d, %v: want the free bytes of a writable file system", dir, free, ok)
		}
	default:
		if ok {
			t.Errorf("DiskFree on %s: ok", runtime.GOOS)
		}
	}
	if _, ok := DiskFree(dir + "/missing"); ok {
		t.Error("DiskFree of a missing path: ok")
	}
	// A file system of no size says nothing of its free space (train
	// --out /proc/x was refused for lack of space).
	if free, ok := DiskFree("/proc"); runtime.GOOS == "linux" && ok {
		t.Errorf("DiskFree(/proc) = %d, ok: want nothing of a file system that gives no size", free)
	}
}
