package main

import (
	"io"
	"path/filepath"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
)

// sweepLeftovers removes what an earlier process killed while writing out
// left beside it: the temporaries that internal/atomicfile writes under a
// hidden name and renames into place (files, or with holds not nil
// directories holding only the files holds names, as writeSearch writes,
// its earlier output moved aside too), once no writer holds them
// (atomicfile.SweepStale), saying so on w. The ones it cannot tell from a
// live writer's (too recent, or no file locks on this system) are warned
// of and left.
func sweepLeftovers(w io.Writer, out string, holds func(name string) bool) {
	clean := filepath.Clean(out)
	atomicfile.SweepStale(filepath.Dir(clean), filepath.Base(clean), holds).Report(w, out)
}
