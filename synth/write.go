package synth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/npy"
)

// Names of the files of a data set (docs/FORMAT.md).
const (
	FeatureSuffix = ".dino.npy" // a training shard's DINOv2 features
	TargetSuffix  = ".clip.npy" // a training shard's CLIP embeddings

	ImageFeaturesFile = "images.dino.npy"
	ImageCLIPFile     = "images.clip.npy"
	CaptionCLIPFile   = "captions.clip.npy"
	CaptionImageFile  = "captions.image.npy"
	EvalInfoFile      = "eval.json"
)

// MaxShards is the most shards one training set may have: ShardName's five
// digits keep lexical order equal to numeric order (the order readers take
// shards in) only up to here.
const MaxShards = 100000

// ShardName returns the NAME of training shard i: shard-00000, shard-00001,
// ...; its files are NAME+FeatureSuffix and NAME+TargetSuffix.
func ShardName(i int) string { return fmt.Sprintf("shard-%05d", i) }

// File describes one file a writer wrote.
type File struct {
	Path string
	// Shape and DType describe an array; for eval.json they are nil and
	// zero (not a valid dtype).
	Shape []int
	DType npy.DType
}

// WriteTrainingData writes rows training rows of the world of opts to dir
// as shards of rowsPerShard rows (the last one may be shorter), in float16
// or float32, and returns the files written in order.
//
// dir is created if missing. If it already holds shard files (any
// *.dino.npy or *.clip.npy, which a reader would take as part of the data)
// WriteTrainingData refuses, unless opts.Overwrite is set: then it deletes
// them first, so that no stale shard outlives the new set. The shards are
// staged in dir and moved in once all are written (stageInto), so an
// interrupted or failed run leaves no shard that looks like a whole data
// set; a second run writing the same dir at once is refused.
func WriteTrainingData(dir string, opts Options, rows, rowsPerShard int, float16 bool) ([]File, error) {
	return WriteTrainingDataContext(context.Background(), dir, opts, rows, rowsPerShard, float16)
}

// WriteTrainingDataContext is WriteTrainingData, stopping between shards
// with ctx's error once ctx is done.
func WriteTrainingDataContext(ctx context.Context, dir string, opts Options, rows, rowsPerShard int, float16 bool) ([]File, error) {
	if rows < 1 || rowsPerShard < 1 {
		return nil, fmt.Errorf("synth: training data in %s: %d rows in shards of %d; both must be at least 1", dir, rows, rowsPerShard)
	}
	rowsPerShard = min(rowsPerShard, rows) // the largest shard written
	shards := rows / rowsPerShard
	if rows%rowsPerShard != 0 {
		shards++
	}
	if shards > MaxShards {
		return nil, fmt.Errorf("synth: training data in %s: %d rows in shards of %d make %d shards, more than %d; use larger shards", dir, rows, rowsPerShard, shards, MaxShards)
	}
	world, err := NewWorld(opts)
	if err != nil {
		return nil, err
	}
	if err := checkSize("rows per shard", rowsPerShard, max(opts.InputDim, opts.OutputDim)); err != nil {
		return nil, err
	}
	isShardFile := func(name string) bool {
		return strings.HasSuffix(name, FeatureSuffix) || strings.HasSuffix(name, TargetSuffix)
	}
	write, dtype := npy.WriteFloat32, npy.Float32
	if float16 {
		write, dtype = npy.WriteFloat16, npy.Float16
	}
	return stageInto(dir, "training shards", isShardFile, opts.Overwrite, func(staging string) ([]File, error) {
		// Generate the next shard while this one is written: the writing
		// (conversion, system calls, fsync) is otherwise time the CPUs
		// idle. The channel is unbuffered, so at most two shards are in
		// memory.
		type shard struct {
			n                 int
			features, targets []float32
			err               error
		}
		generated := make(chan shard)
		stop := make(chan struct{})
		go func() {
			defer close(generated)
			for k := range shards {
				first := k * rowsPerShard
				n := min(rowsPerShard, rows-first)
				features, targets, err := world.TrainingRows(first, n)
				select {
				case generated <- shard{n, features, targets, err}:
				case <-stop:
					return
				}
			}
		}()
		defer func() {
			close(stop)
			for range generated { // wait for the generator to finish
			}
		}()
		var files []File
		k := 0
		for sh := range generated {
			if sh.err != nil {
				return nil, sh.err
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			name := ShardName(k)
			k++
			for _, a := range []struct {
				name string
				dim  int
				data []float32
			}{
				{name + FeatureSuffix, opts.InputDim, sh.features},
				{name + TargetSuffix, opts.OutputDim, sh.targets},
			} {
				shape := []int{sh.n, a.dim}
				if err := write(filepath.Join(staging, a.name), shape, a.data); err != nil {
					return nil, err
				}
				files = append(files, File{Path: filepath.Join(dir, a.name), Shape: shape, DType: dtype})
			}
		}
		return files, nil
	})
}

// stageInto writes a data set into dir, made if missing. It refuses when
// dir already holds files of a data set (those for which isDataFile is
// true; what names them in the error) unless overwrite is set: then it
// deletes them first (an old shard that the new set does not replace, for
// shards have free names, would otherwise be read as part of it). fill
// writes the files into a hidden staging directory in dir (.partial, which
// a reader ignores) under their names in dir and returns them (with their
// paths in dir); once all are written they move into dir, so a run
// interrupted, or failing (a full disk), leaves no set that looks whole,
// and no staging directory either (one a kill -9 leaves is removed by the
// next run). A lock on dir refuses a second writer while one is at work.
func stageInto(dir, what string, isDataFile func(name string) bool, overwrite bool, fill func(staging string) ([]File, error)) ([]File, error) {
	unlock, err := LockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := replaceOld(dir, what, isDataFile, overwrite); err != nil {
		return nil, err
	}
	staging := filepath.Join(dir, ".partial")
	if err := os.RemoveAll(staging); err != nil { // a killed run's
		return nil, fmt.Errorf("synth: removing %s: %w", staging, err)
	}
	if err := os.Mkdir(staging, 0o755); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	files, err := fill(staging)
	if err != nil {
		os.RemoveAll(staging)
		return nil, err
	}
	for _, f := range files {
		if err := os.Rename(filepath.Join(staging, filepath.Base(f.Path)), f.Path); err != nil {
			return nil, fmt.Errorf("synth: %w", err)
		}
	}
	if err := os.Remove(staging); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	atomicfile.SyncDir(dir)
	return files, nil
}

// evalInfo is the content of eval.json.
type evalInfo struct {
	Name   string `json:"name"`
	Source string `json:"source"`
}

// WriteEvalSet writes the evaluation set called name (see World.EvalSet)
// of the world of opts to dir, in float32, with an eval.json that records
// its name and how it was made, and returns the files written in order.
//
// dir is created if missing. If it already holds evaluation set files,
// WriteEvalSet refuses unless opts.Overwrite is set: then it deletes them
// first. The files are staged in dir and moved in once all are written
// (stageInto), so a failed or interrupted run never leaves a set of two
// runs' files.
func WriteEvalSet(dir string, opts Options, images, captionsPerImage int, name string) ([]File, error) {
	world, err := NewWorld(opts)
	if err != nil {
		return nil, err
	}
	set, err := world.EvalSet(name, images, captionsPerImage)
	if err != nil {
		return nil, err
	}
	setFiles := []string{ImageFeaturesFile, ImageCLIPFile, CaptionCLIPFile, CaptionImageFile, EvalInfoFile}
	return stageInto(dir, "an evaluation set", func(n string) bool { return slices.Contains(setFiles, n) }, opts.Overwrite, func(staging string) ([]File, error) {
		var files []File
		for _, a := range []struct {
			name string
			dim  int
			rows int
			data []float32
		}{
			{ImageFeaturesFile, opts.InputDim, set.Images, set.ImageFeatures},
			{ImageCLIPFile, opts.OutputDim, set.Images, set.ImageEmbeddings},
			{CaptionCLIPFile, opts.OutputDim, set.Captions, set.CaptionEmbeddings},
		} {
			shape := []int{a.rows, a.dim}
			if err := npy.WriteFloat32(filepath.Join(staging, a.name), shape, a.data); err != nil {
				return nil, err
			}
			files = append(files, File{Path: filepath.Join(dir, a.name), Shape: shape, DType: npy.Float32})
		}
		index := make([]int64, set.Captions)
		for c, img := range set.CaptionImage {
			index[c] = int64(img)
		}
		if err := npy.WriteInt64(filepath.Join(staging, CaptionImageFile), []int{set.Captions}, index); err != nil {
			return nil, err
		}
		files = append(files, File{Path: filepath.Join(dir, CaptionImageFile), Shape: []int{set.Captions}, DType: npy.Int64})

		source := fmt.Sprintf("dinoclip synth seed=%d input_dim=%d output_dim=%d images=%d captions_per_image=%d",
			opts.Seed, opts.InputDim, opts.OutputDim, images, captionsPerImage)
		if opts.LatentShift != 0 {
			source += fmt.Sprintf(" latent_shift=%g", opts.LatentShift)
		}
		info, err := json.MarshalIndent(evalInfo{Name: name, Source: source}, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("synth: %s: %w", filepath.Join(dir, EvalInfoFile), err)
		}
		if err := writeFileAtomic(filepath.Join(staging, EvalInfoFile), append(info, '\n')); err != nil {
			return nil, err
		}
		return append(files, File{Path: filepath.Join(dir, EvalInfoFile)}), nil
	})
}

// LockDir makes dir if it is missing and takes the lock a writer of it
// holds until unlock, or says that another dinoclip synth holds it. The
// lock is on the directory itself (a system that cannot lock one, Windows,
// goes without).
func LockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("synth: output directory: %w", err)
	}
	unlock, err = flock.LockDir(dir)
	if errors.Is(err, flock.ErrLocked) {
		return nil, fmt.Errorf("synth: %s is being written by another dinoclip synth", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("synth: output directory: %w", err)
	}
	return unlock, nil
}

// replaceOld checks dir for files of an existing data set (see
// stageInto), refusing them unless overwrite is set, and deletes them when
// it is.
func replaceOld(dir, what string, isDataFile func(name string) bool, overwrite bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("synth: output directory: %w", err)
	}
	var existing []string
	for _, e := range entries {
		if !e.IsDir() && isDataFile(e.Name()) {
			existing = append(existing, e.Name())
		}
	}
	if len(existing) == 0 {
		return nil
	}
	if !overwrite {
		shown := existing
		if len(shown) > 3 {
			shown = append(shown[:3:3], "...")
		}
		return fmt.Errorf("synth: %s already holds %s (%d files: %s); set the overwrite option (dinoclip synth --force) to replace them",
			dir, what, len(existing), strings.Join(shown, ", "))
	}
	for _, name := range existing {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("synth: replacing the old data set: %w", err)
		}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it into place, so a reader never sees half a file (docs/FORMAT.md).
func writeFileAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("synth: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("synth: write %s: %w", path, err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; give it a data file's usual mode.
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
