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
// left beside it: the temporaries that internal/atomicfile writes under a
// hidden name and renames into place (".BASE.tmp-N": files, or with holds
// not nil directories holding only the files holds names, as writeSearch
// writes, its earlier output moved aside too), once
// no writer holds them (see atomicfile.RemoveStale), saying so on w. The
// ones it cannot tell from a live writer's (too recent, or no file locks
// on this system) are warned of and left; any other name, or an entry of
// another kind (a link, a file where a directory is written), is no
// writer's and is left alone.
func sweepLeftovers(w io.Writer, out string, holds func(name string) bool) {
	clean := filepath.Clean(out)
	parent, base := filepath.Dir(clean), filepath.Base(clean)
	entries, _ := os.ReadDir(parent)
	var left []string
	for _, e := range entries {
		if b, ok := atomicfile.TempOf(e.Name()); !ok || b != base || !(e.Type().IsRegular() && holds == nil || e.IsDir() && holds != nil) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if removed, err := atomicfile.RemoveStale(p, holds); removed {
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
