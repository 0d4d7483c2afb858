package dataset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
)

const (
	// StagingBase is the base name dinoclip synth gives
	// atomicfile.MkdirTempRemovedOnExit for a staging directory inside a
	// data directory: it is named StagingPrefix followed by digits
	// (IsStagingName). Beside the data directory DIR, its staging
	// directories are named after DIR's name + "." + StagingBase the same
	// way.
	StagingBase = "synth"
	// StagingPrefix starts the name of a staging directory inside a data
	// directory: while one is there, the set is being moved in, or its
	// writer was interrupted while moving it in.
	StagingPrefix = "." + StagingBase + ".tmp-"
	// LegacyStagingDir is the staging directory that dinoclip synth once
	// kept inside a data directory while moving a set in (as rsync
	// --partial-dir does): one left there means an incomplete set.
	LegacyStagingDir = ".partial"
	// UnfinishedFile is the regular file dinoclip synth keeps in its --out
	// directory (and demo in its DIR/data) while it writes the data
	// directories in it (train, eval): while it is there they may be a mix
	// of an old run's set and a new one's.
	UnfinishedFile = ".synth-unfinished"
	// TrainDir and EvalDir are the data directories dinoclip synth
	// writes in its --out, the ones UnfinishedFile speaks for.
	TrainDir = "train"
	EvalDir  = "eval"
)

// ErrIncomplete is the error (wrapped) of a data directory whose set is
// being written, or whose writer was interrupted: a reader would see part
// of it, or a set that does not belong with its neighbour.
var ErrIncomplete = errors.New("incomplete")

// IsStagingName reports whether name is StagingPrefix followed by one or
// more digits: a staging directory dinoclip synth makes inside a data
// directory.
func IsStagingName(name string) bool {
	base, ok := atomicfile.TempOf(name)
	return ok && base == StagingBase
}

// CheckComplete returns an error wrapping ErrIncomplete when the data
// directory dir holds a staging directory (CheckStaging), or when the
// directory above it holds UnfinishedFile (CheckUnfinished); nil
// otherwise, also when dir cannot be read (the reader says why).
func CheckComplete(dir string) error {
	if err := CheckStaging(dir); err != nil {
		return err
	}
	return CheckUnfinished(dir)
}

// CheckStaging returns an error wrapping ErrIncomplete when the data
// directory dir holds a staging directory: StagingPrefix and digits, or
// LegacyStagingDir.
func CheckStaging(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !(name == LegacyStagingDir || IsStagingName(name)) {
			continue
		}
		p := filepath.Join(dir, name)
		return fmt.Errorf("%s is %w: it holds %s, the staging directory of a dinoclip synth that is writing the set or was interrupted "+
			"while moving it in (or of another program, as rsync --partial-dir); run that dinoclip synth again (or finish the copy) "+
			"before reading it, or remove %s if the set is whole", dir, ErrIncomplete, p, p)
	}
	return nil
}

// CheckUnfinished returns an error wrapping ErrIncomplete when dir is a
// TrainDir or EvalDir (as named, or where its links lead) whose parent
// holds UnfinishedFile as a regular file: a dinoclip synth or demo into
// it is running, or was interrupted, and dir may hold a set that does not
// belong with the one beside it. (Another data set in that parent is no
// synth's.)
func CheckUnfinished(dir string) error {
	var parents []string
	paths := []string{dir}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		paths = append(paths, real)
	}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if base := filepath.Base(abs); err != nil || base != TrainDir && base != EvalDir {
			continue
		}
		if parent := filepath.Dir(abs); !slices.Contains(parents, parent) {
			parents = append(parents, parent)
		}
	}
	for _, parent := range parents {
		if HasUnfinished(parent) {
			marker := filepath.Join(parent, UnfinishedFile)
			return fmt.Errorf("%s is %w: %s shows that a dinoclip synth or demo into %s is running or was interrupted, "+
				"so the data sets there may not belong together; run that dinoclip synth or demo again to finish it "+
				"(or, if they are the sets you want, remove %s)", dir, ErrIncomplete, marker, parent, marker)
		}
	}
	return nil
}

// HasUnfinished reports whether dir holds UnfinishedFile as a regular
// file: a dinoclip synth or demo into dir is running or was interrupted.
func HasUnfinished(dir string) bool {
	st, err := os.Lstat(filepath.Join(dir, UnfinishedFile))
	return err == nil && st.Mode().IsRegular()
}

// Names of the files of a data set (docs/FORMAT.md): a training shard is
// NAME+FeatureSuffix and NAME+TargetSuffix; an evaluation set is the five
// files named after them.
const (
	FeatureSuffix = ".dino.npy" // a training shard's DINOv2 features
	TargetSuffix  = ".clip.npy" // a training shard's CLIP embeddings

	ImageFeaturesFile = "images.dino.npy"
	ImageCLIPFile     = "images.clip.npy"
	CaptionCLIPFile   = "captions.clip.npy"
	CaptionImageFile  = "captions.image.npy"
	EvalInfoFile      = "eval.json"
)
