package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// warnLeftovers warns on w of what an earlier process killed while writing
// out left beside it: the temporary files and directories that
// internal/atomicfile and writeSearch write under a hidden name and rename
// into place (".BASE.tmp-*"), which a kill -9 leaves behind. They are not
// removed: one may be another process's, still writing the same out.
func warnLeftovers(w io.Writer, out string) {
	clean := filepath.Clean(out)
	found, _ := filepath.Glob(filepath.Join(filepath.Dir(clean), "."+globEscape(filepath.Base(clean))+".tmp-*"))
	if len(found) == 0 {
		return
	}
	fmt.Fprintf(w, "dinoclip: warning: %s: left by a dinoclip killed while writing %s (or being written by another one now): remove once no other dinoclip writes %s\n",
		strings.Join(found, ", "), out, out)
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}
