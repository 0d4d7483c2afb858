package atomicfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A Sweep is what SweepStale did with the temporaries it found, by path.
type Sweep struct {
	// Removed are those whose writer had ended (RemoveStale removed them).
	Removed []string
	// Live are those left because their writer may be at work: it holds
	// them, they changed within StaleAge, or this system has no locks to
	// tell.
	Live []string
	// Failed are those whose writer had ended but that were not removed:
	// Path names one, Err says why (a directory holding what no writer
	// of it writes, say).
	Failed []*fs.PathError
}

// EveryBase, as SweepStale's base, sweeps the temporaries of every name.
const EveryBase = ""

// SweepStale removes from dir the temporaries of base (TempOf) that
// writers killed before renaming them into place left, as RemoveStale
// does: with holds nil, files (Write's); with holds not nil, directories
// holding nothing but files holds names (MkdirTemp's). An entry of
// another kind under such a name (a link, a file where a directory is
// written) is no writer's, and is left alone unreported, as is every
// other name. A dir that cannot be read has nothing swept: the writer
// that comes next says why it cannot write there.
func SweepStale(dir, base string, holds func(name string) bool) Sweep {
	return sweep(dir, func(b string) bool { return base == EveryBase || b == TempBase(base) }, holds, fixedAge(StaleAge))
}

// SweepOwn removes from dir the temporary files of bases that nobody
// holds, however new: those of files that only a holder of the caller's
// lock writes (a run's files, under the run's lock), so that no writer of
// them is at work between creating and locking, or closing and renaming,
// one. It returns what it did, as SweepStale does.
func SweepOwn(dir string, bases ...string) Sweep {
	return sweep(dir, func(b string) bool {
		return slices.ContainsFunc(bases, func(base string) bool { return TempBase(base) == b })
	}, nil, fixedAge(0))
}

// SweepOwnDirs is SweepOwn of the temporary directories of base that hold
// nothing but files holds names (MkdirTemp's): those that only a holder
// of the caller's lock makes, and holds from before it makes one until it
// has renamed it into place, so that one nobody holds is a killed
// writer's however new.
func SweepOwnDirs(dir, base string, holds func(name string) bool) Sweep {
	return sweep(dir, func(b string) bool { return b == TempBase(base) }, holds, fixedAge(0))
}

// SweepDeadDirs is SweepStale of the temporary directories of base that
// hold nothing but files holds names (MkdirTempRemovedOnExit's), however
// new where they hold a file: their writer locks one before it writes
// into it, so one that nobody holds with a file in it is a killed
// writer's (a run rerun at once after a kill found it too young to
// tell). An empty one may be its writer's between making and locking it,
// and is removed once stale.
func SweepDeadDirs(dir, base string, holds func(name string) bool) Sweep {
	return sweep(dir, func(b string) bool { return b == TempBase(base) }, holds, func(p string) time.Duration {
		if entries, err := os.ReadDir(p); err == nil && len(entries) > 0 {
			return 0
		}
		return StaleAge
	})
}

// SweepStaleExcept is SweepStale of every base but those given (swept by
// SweepOwn).
func SweepStaleExcept(dir string, own ...string) Sweep {
	return sweep(dir, func(b string) bool {
		return !slices.ContainsFunc(own, func(base string) bool { return TempBase(base) == b })
	}, nil, fixedAge(StaleAge))
}

// fixedAge is the same age for every temporary.
func fixedAge(age time.Duration) func(path string) time.Duration {
	return func(string) time.Duration { return age }
}

// sweep is SweepStale of the temporaries whose base is taken, unmodified
// for ageOf their path (0: whatever their times say, a clock ahead
// included).
func sweep(dir string, take func(base string) bool, holds func(name string) bool, ageOf func(path string) time.Duration) Sweep {
	var s Sweep
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if b, ok := TempOf(e.Name()); !ok || !take(b) || !(holds == nil && e.Type().IsRegular() || holds != nil && e.IsDir()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		switch removed, err := removeStale(p, holds, ageOf(p)); {
		case removed:
			s.Removed = append(s.Removed, p)
		case err != nil:
			s.Failed = append(s.Failed, &fs.PathError{Op: "remove", Path: p, Err: err})
		default:
			s.Live = append(s.Live, p)
		}
	}
	return s
}

// Merge adds what another sweep did to s's.
func (s *Sweep) Merge(other Sweep) {
	s.Removed = append(s.Removed, other.Removed...)
	s.Failed = append(s.Failed, other.Failed...)
	s.Live = append(s.Live, other.Live...)
}

// reportedRemovals is how many removals Report names, the last line
// counting the rest.
const reportedRemovals = 10

// Report says on w, a line each, what the sweep of the temporaries of out
// removed (past reportedRemovals, the first of them and a count: an index
// killed sweeps hundreds) and failed to remove, and in one warning line
// what it left because their writer may be at work: for the user who
// killed a dinoclip while it wrote out, the one to remove them if none is.
func (s Sweep) Report(w io.Writer, out string) {
	for i, p := range s.Removed {
		if i == reportedRemovals-1 && len(s.Removed) > reportedRemovals {
			fmt.Fprintf(w, "dinoclip: removed %d more files in %s, left by a dinoclip killed while writing %s\n", len(s.Removed)-i, filepath.Dir(p), out)
			break
		}
		fmt.Fprintf(w, "dinoclip: removed %s, left by a dinoclip killed while writing %s\n", p, out)
	}
	for _, e := range s.Failed {
		fmt.Fprintf(w, "dinoclip: warning: removing %s, left by a dinoclip killed while writing %s: %v\n", e.Path, out, e.Err)
	}
	if len(s.Live) > 0 {
		fmt.Fprintf(w, "dinoclip: warning: %s: left by a dinoclip killed while writing %s, or being written by another one now: remove once no other dinoclip writes %s\n",
			strings.Join(s.Live, ", "), out, out)
	}
}
