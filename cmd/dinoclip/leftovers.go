package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
)

// sweepLeftovers removes what an earlier process killed while writing out
// left beside it: the temporaries that internal/atomicfile (files) and
// writeSearch (directories: dirs) write under a hidden name and rename
// into place (".BASE.tmp-*"), once no writer holds them (see
// atomicfile.RemoveStale), saying so on w. The ones it cannot tell from a
// live writer's (too recent, or no file locks on this system) are warned
// of and left; entries of another kind (a link, a file where a directory
// is written) are no writer's and are left alone.
func sweepLeftovers(w io.Writer, out string, dirs bool) {
	clean := filepath.Clean(out)
	parent, prefix := filepath.Dir(clean), "."+filepath.Base(clean)+".tmp-"
	entries, _ := os.ReadDir(parent)
	var left []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || !(e.Type().IsRegular() && !dirs || e.IsDir() && dirs) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if removed, err := atomicfile.RemoveStale(p); removed {
			fmt.Fprintf(w, "dinoclip: removed %s, left by a dinoclip killed while writing %s\n", p, out)
		} else if err != nil {
			fmt.Fprintf(w, "dinoclip: warning: removing %s, left by a dinoclip killed while writing %s: %v\n", p, out, err)
		} else {
			left = append(left, p)
		}
	}
	if len(left) == 0 {
		return
	}
	fmt.Fprintf(w, "dinoclip: warning: %s: left by a dinoclip killed while writing %s, or being written by another one now: remove once no other dinoclip writes %s\n",
		strings.Join(left, ", "), out, out)
}
