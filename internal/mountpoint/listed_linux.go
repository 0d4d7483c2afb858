package mountpoint

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
)

// Listed reports whether path (absolute, links resolved) is a mount point
// in /proc/self/mountinfo.
func Listed(path string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	return listedIn(f, path)
}

// listedIn reports whether path is a mount point of the mount table
// mountinfo: its fifth field, with space, tab, newline and backslash
// written as octal escapes (proc(5)).
func listedIn(mountinfo io.Reader, path string) bool {
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && unescapeMountinfo(fields[4]) == path {
			return true
		}
	}
	return false
}

// unescapeMountinfo undoes mountinfo's \ooo escapes.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
