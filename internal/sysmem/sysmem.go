package sysmem

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Available is the number of bytes the process can allocate without
// swapping or being killed: Linux's MemAvailable estimate (/proc/meminfo),
// lowered to what a cgroup v2 memory limit leaves (memory.max minus
// memory.current) and to what an address-space limit (ulimit -v) leaves,
// when the process runs under them. ok is false where
// neither can be read (other systems): the caller then checks nothing.
func Available() (avail uint64, ok bool) {
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	avail, ok = memAvailable(meminfo)
	if !ok {
		return 0, false
	}
	if left, limited := cgroupLeft(readFile("/sys/fs/cgroup/memory.max"), readFile("/sys/fs/cgroup/memory.current")); limited && left < avail {
		avail = left
	}
	if left, limited := addressSpaceLeft(readFile("/proc/self/status")); limited && left < avail {
		avail = left
	}
	return avail, true
}

// statusKB reads a "Key: N kB" line of /proc/meminfo or /proc/self/status
// in bytes.
func statusKB(text []byte, key string) (uint64, bool) {
	s := bufio.NewScanner(bytes.NewReader(text))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) != 3 || f[0] != key || f[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil || kb > 1<<53 {
			return 0, false
		}
		return kb * 1024, true
	}
	return 0, false
}

func readFile(name string) []byte {
	b, _ := os.ReadFile(name)
	return b
}

// memAvailable reads the MemAvailable line of /proc/meminfo ("MemAvailable:
// 12345 kB").
func memAvailable(meminfo []byte) (uint64, bool) { return statusKB(meminfo, "MemAvailable:") }

// cgroupLeft is memory.max - memory.current of a cgroup v2, limited false
// when there is no limit ("max") or the files cannot be read.
func cgroupLeft(max, current []byte) (left uint64, limited bool) {
	m, err := strconv.ParseUint(strings.TrimSpace(string(max)), 10, 64)
	if err != nil {
		return 0, false
	}
	c, err := strconv.ParseUint(strings.TrimSpace(string(current)), 10, 64)
	if err != nil {
		return 0, false
	}
	if c >= m {
		return 0, true
	}
	return m - c, true
}
