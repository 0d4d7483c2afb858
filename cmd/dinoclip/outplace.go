package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/safetensors"
	"github.com/dinoclip/dinoclip/train"
)

// placeError refuses an output (the value out of flag, holding what,
// e.g. "the average") written into the directory dir of a training run, a
// search index or a search's output, or anywhere under a run's checkpoints
// or an index: it
// would replace one of their files (run.json, the lock, which a second
// trainer could then take, a checkpoint's model or optimizer, an index's
// manifest or shards), change what the directory means (a model file in a
// run directory comes before its best and last), be taken for one of them
// (a directory named step-N in a run's checkpoints, which stops the run
// when it reaches step N: checkpoint.Save does not replace it), or stand
// in the way of one (anything within a checkpoint, which a prune or a
// resume will not remove). Right in dir (or its parent), a run is known by
// any of its names (holdsRun), its checkpoints by the checkpoints in them
// too (train.HoldsCheckpoints); further up, only a checkpoint by its
// optimizer file, a run's checkpoints that the run's files vouch for
// (train.IsCheckpointsDir) and an index by its manifest (a subdirectory of
// a run outside its checkpoints harms nothing).
func placeError(flag, out, dir, what string) error {
	dir = atomicfile.AbsPath(dir)
	has := func(dir, name string) bool { _, err := os.Lstat(filepath.Join(dir, name)); return err == nil }
	isCheckpoints := func(dir string) bool {
		return train.IsCheckpointsDir(dir) || filepath.Base(dir) == train.CheckpointsDir && holdsRun(filepath.Dir(dir)) ||
			train.HoldsCheckpoints(dir)
	}
	switch {
	case has(dir, checkpoint.OptimizerFile) || isCheckpoints(filepath.Dir(dir)):
		// Resumed, a model replaced would meet another model's optimizer
		// state; an optimizer replaced, another's weights.
		return fmt.Errorf("%s %s is in a training checkpoint (%s): write %s outside the run's checkpoints", flag, out, dir, what)
	case isCheckpoints(dir):
		return fmt.Errorf("%s %s is in the checkpoints directory %s of a run: write %s outside the run", flag, out, dir, what)
	case holdsRun(dir):
		return fmt.Errorf("%s %s is in the run directory %s, whose files it could replace and whose name could come to mean it: write %s outside the run", flag, out, dir, what)
	case has(dir, searchInfoFile) && has(dir, searchIDsFile):
		// (A search's output holds nothing else: the next search into it
		// would refuse the directory.)
		return fmt.Errorf("%s %s is in the search output %s, whose files it could replace: write %s outside it", flag, out, dir, what)
	}
	for a := dir; ; a = filepath.Dir(a) {
		switch {
		case a != dir && has(a, checkpoint.OptimizerFile):
			return fmt.Errorf("%s %s is in a training checkpoint (%s): write %s outside the run's checkpoints", flag, out, a, what)
		case a != dir && train.IsCheckpointsDir(a):
			return fmt.Errorf("%s %s is in the checkpoints directory %s of a run: write %s outside the run", flag, out, a, what)
		case retrieval.IsIndex(a):
			return fmt.Errorf("%s %s is in the search index %s, whose files it could replace: write %s outside the index", flag, out, a, what)
		case retrieval.IsUnfinishedIndex(a):
			// (A file there would have the rerun that finishes it refuse
			// the directory as used for something else.)
			return fmt.Errorf("%s %s is in the search index %s, whose first append was stopped before its manifest (run the same dinoclip index again to finish it): write %s outside the index", flag, out, a, what)
		case a != dir && has(a, searchInfoFile) && has(a, searchIDsFile):
			// (A directory made in it would have the next search into it
			// refuse it.)
			return fmt.Errorf("%s %s is inside the search output %s: write %s outside it", flag, out, a, what)
		}
		if filepath.Dir(a) == a {
			return nil
		}
	}
}

// outsideRunsAndIndexes refuses an output file out (--out's value), holding
// what, that is written where a training run or a search index keeps its
// files (placeError). Where out leads is judged, as it is written: through its
// links (atomicfile.Destination), which is returned; and by its name too,
// for a run's checkpoints/ may be a link to a directory elsewhere, whose
// name and parent say nothing.
func outsideRunsAndIndexes(out, what string) (string, error) {
	dest, err := atomicfile.Destination(out)
	if err != nil {
		return "", err
	}
	return dest, destPlaceError("--out", out, dest, what)
}

// destPlaceError is outsideRunsAndIndexes's judgement of out once its
// destination dest (atomicfile.Destination) is known; it also refuses
// the name of a data set's file in the set's directory (dataFileError).
func destPlaceError(flag, out, dest, what string) error {
	if err := placeError(flag, out, filepath.Dir(atomicfile.AbsPath(dest)), what); err != nil {
		return err
	}
	if err := dataFileError(flag, out, dest, what); err != nil {
		return err
	}
	if named := filepath.Dir(atomicfile.AbsPath(filepath.Clean(out))); filepath.Base(named) == train.CheckpointsDir && holdsRun(filepath.Dir(named)) {
		return placeError(flag, out, named, what)
	}
	return nil
}

// dataFileError refuses an output file dest (out, flag's value) that is
// a file of the data set in its directory: an evaluation set's
// (images.clip.npy, eval.json, ...), or half of a training shard whose
// other half is there (NAME.dino.npy beside NAME.clip.npy). Written there,
// it would be read as the set's own: projections as CLIP's embeddings,
// which an evaluation then finds as good as CLIP, or as a shard's targets.
// (A new NAME.clip.npy beside NAME.dino.npy is let be: a user's features
// and their projections, as often as training data. Replacing one is
// refused, though it may be an earlier projection: the message says to
// remove it first.) Nor is a new half without its other half written
// into training data that opens (every shard whole): the data would be
// refused for it.
func dataFileError(flag, out, dest, what string) error {
	dest = atomicfile.AbsPath(dest)
	dir, name := filepath.Dir(dest), filepath.Base(dest)
	if retrieval.IsSetFile(name) && retrieval.HoldsSet(dir) {
		return fmt.Errorf("%s %s is named as a file of the evaluation set in %s, which would read it as its own: write %s elsewhere, or under another name", flag, out, dir, what)
	}
	var pair string
	switch {
	case strings.HasSuffix(name, train.FeatureSuffix):
		pair = strings.TrimSuffix(name, train.FeatureSuffix) + train.TargetSuffix
	case strings.HasSuffix(name, train.TargetSuffix):
		pair = strings.TrimSuffix(name, train.TargetSuffix) + train.FeatureSuffix
	default:
		return nil
	}
	switch paired := fileExists(filepath.Join(dir, pair)); {
	case fileExists(dest) && paired:
		return fmt.Errorf("%s %s would replace half of a training shard (its other half %s is there), which would be read with it: write %s elsewhere or under another name, or remove %s first if it is no training data (an earlier projection)", flag, out, filepath.Join(dir, pair), what, out)
	case !paired && !fileExists(dest) && train.HoldsWholeShards(dir):
		return fmt.Errorf("%s %s would be half of a training shard without its other half (%s) in the training data %s, which would be refused for it: write %s elsewhere, or under a name not ending in %s or %s", flag, out, pair, dir, what, train.FeatureSuffix, train.TargetSuffix)
	}
	return nil
}

// otherKindError refuses an output file dest (out, flag's value, holding
// what) that exists, not empty, as another kind of file than the command
// writes: a .npy array where wantNPY, else a safetensors model. project
// over a model or average over features (--model and --out swapped, a
// slip of a name) would lose the file to the output. An empty file (as
// mktemp makes) and one of the output's own kind (an earlier output, even
// cut short) are replaced, as --out says; one that cannot be read is not.
func otherKindError(flag, out, dest, what string, wantNPY bool) error {
	st, err := os.Stat(dest)
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return nil // (none, or what atomicfile refuses to replace)
	}
	isNPY := hasNPYMagic(dest)
	format, err := safetensorsFormat(dest)
	isSafetensors := err == nil
	cutShort := errors.Is(err, safetensors.ErrCutShort) || errors.Is(err, safetensors.ErrDataCutShort)
	mayBeState := false // (a header cut short in its format's value)
	if cut := (*safetensors.DataCutShortError)(nil); errors.As(err, &cut) {
		format = cut.Metadata["format"] // (its header is whole: a state file cut short is still one)
	} else if cutShort {
		format, mayBeState = cutHeaderFormat(dest)
	}
	isState := checkpoint.IsStateFormat(format)
	var kind string
	switch {
	case wantNPY && isNPY, !wantNPY && isSafetensors && !isState:
		return nil
	case isNPY:
		kind = "a .npy array"
	case isState:
		kind = "a training checkpoint's optimizer or float64 state (safetensors)"
	case isSafetensors:
		kind = "a safetensors model"
	case mayBeState:
		kind = "a safetensors file cut short in its header, where its format begins as a training checkpoint's optimizer or float64 state's"
	case !wantNPY && cutShort:
		return nil // (an earlier output cut short, in its header or its data: a .npy cut short keeps its magic)
	case cutShort:
		kind = "a safetensors file cut short"
	default:
		kind = "a file that is neither a .npy array nor a safetensors model"
	}
	return fmt.Errorf("%s %s exists and is %s, which %s would replace: remove it first if it may go, or write %s elsewhere", flag, out, kind, what, what)
}

// cutHeaderFormat is the format the metadata of the safetensors file at
// path gives in the part of its header there is, for a file cut short in
// its header ("" where that part gives none), and, where the cut falls in
// the format's value, whether what is there begins a state's format
// (checkpoint.IsStateFormat). A cut before the format (dinoclip writes
// the metadata's keys in order, its SHA-256 first) leaves nothing to tell
// a state from a model.
func cutHeaderFormat(path string) (format string, mayBeState bool) {
	f, err := atomicfile.OpenToRead(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	head, _ := atomicfile.ReadAtMost(f, 64<<10)
	m := cutFormat.FindSubmatch(head)
	switch {
	case m == nil:
		return "", false
	case len(m[2]) > 0 || checkpoint.IsStateFormat(string(m[1])): // (the value whole, or a state's family whole)
		return string(m[1]), false
	}
	return "", checkpoint.MayBeStateFormat(string(m[1]))
}

// cutFormat finds the format in a safetensors header's metadata: its
// value, and its closing quote where the header goes on past it.
var cutFormat = regexp.MustCompile(`"__metadata__"\s*:\s*\{[^}]*?"format"\s*:\s*"([^"\\]*)("?)`)

// checkOutPlace refuses an output directory out, holding what, among a
// run's or an index's files (placeError): by its absolute path, and by
// where a link there leads (or, for a new one, where its path leads as
// far as it exists).
func checkOutPlace(out, what string) error {
	for _, place := range places(out) {
		if err := placeError("--out", out, filepath.Dir(filepath.Clean(place)), what); err != nil {
			return err
		}
	}
	return nil
}

// checkIntoPlace refuses a directory out, given by flag, that an output's
// files are written into (bench --out's reports and --data-dir's scratch
// shards, synth --out's sets), holding what, when it is a run's or an
// index's, or among their files (placeError on out itself), by its
// absolute path and where it leads.
func checkIntoPlace(flag, out, what string) error {
	for _, place := range places(out) {
		if err := placeError(flag, out, filepath.Clean(place), what); err != nil {
			return err
		}
	}
	return nil
}

// places are the paths an output path out is judged by: absolute, and
// where a link there leads (or, for a new one, where its path leads as far
// as it exists).
func places(out string) []string {
	real, err := atomicfile.RealPath(out)
	if err != nil { // (a new one: as far as its path exists)
		real = atomicfile.ResolveDir(atomicfile.AbsPath(out))
	}
	return []string{atomicfile.AbsPath(out), real}
}

// checkDirOrNone refuses a path that exists as anything but a directory,
// or a link to one, where a command makes a directory or writes into one:
// a file there failed it with "mkdir PATH: not a directory", or on a
// name under it. (A named pipe is told by os.Stat, without the open that
// would wait on it forever.) The error says "PATH is KIND, not a
// directory"; the caller says whose path it is and what goes there.
func checkDirOrNone(path string) error {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		return fmt.Errorf("%s is %s, not a directory", path, atomicfile.Kind(st.Mode()))
	}
	return nil
}
