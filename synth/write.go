package synth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/internal/madedirs"
	"github.com/dinoclip/dinoclip/npy"
)

// MaxShards is the most shards one training set may have. A trainer maps
// both files of every shard at once, and Linux's default limit on a
// process's maps (vm.max_map_count, 65530, less the maps kept for the Go
// runtime: internal/mmapfile) leaves room for about 31,700 shards: more
// were written, and could not be opened. (ShardName's five
// digits keep lexical order equal to numeric order, the order readers take
// shards in, up to 100,000.)
const MaxShards = 30000

// ShardName returns the NAME of training shard i: shard-00000, shard-00001,
// ...; its files are NAME+dataset.FeatureSuffix and NAME+dataset.TargetSuffix.
func ShardName(i int) string { return fmt.Sprintf("%s%0*d", shardNamePrefix, shardNameDigits, i) }

// ShardName's parts: a prefix, then the shard's number in at least this
// many digits.
const (
	shardNamePrefix = "shard-"
	shardNameDigits = 5
)

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
// WriteTrainingData refuses, unless opts.Overwrite is set: then they are
// deleted when the new set goes in, so that no stale shard outlives it.
// The shards are staged apart and published once all are written
// (stageInto), so an interrupted or failed run leaves no shard that looks
// like a whole data set, and a failed overwrite keeps the old set; a
// second run writing the same dir at once is refused.
func WriteTrainingData(dir string, opts Options, rows, rowsPerShard int, float16 bool) ([]File, error) {
	return WriteTrainingDataContext(context.Background(), dir, opts, rows, rowsPerShard, float16)
}

// WriteTrainingDataContext is WriteTrainingData, stopping between shards
// with ctx's error once ctx is done.
func WriteTrainingDataContext(ctx context.Context, dir string, opts Options, rows, rowsPerShard int, float16 bool) ([]File, error) {
	shards, rowsPerShard, err := trainingShards(dir, opts, rows, rowsPerShard)
	if err != nil {
		return nil, err
	}
	world, err := NewWorld(opts)
	if err != nil {
		return nil, err
	}
	write, dtype := npy.WriteFloat32, npy.Float32
	if float16 {
		write, dtype = npy.WriteFloat16, npy.Float16
	}
	return stageInto(dir, "training shards", isShardFile, isOwnShardFile, opts, func(staging string) ([]File, error) {
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
		k, written := 0, 0
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
				{name + dataset.FeatureSuffix, opts.InputDim, sh.features},
				{name + dataset.TargetSuffix, opts.OutputDim, sh.targets},
			} {
				shape := []int{sh.n, a.dim}
				if err := write(filepath.Join(staging, a.name), shape, a.data); err != nil {
					return nil, err
				}
				files = append(files, File{Path: filepath.Join(dir, a.name), Shape: shape, DType: dtype})
			}
			written += sh.n
			if opts.Progress != nil {
				opts.Progress(written)
			}
		}
		return files, nil
	})
}

// evalInfo is the content of eval.json.
type evalInfo struct {
	Name   string `json:"name"`
	Source string `json:"source"`
}

// EvalSetName is the name in eval.json of the evaluation set called name
// (World.EvalSet's) of the world of opts: with "-shift-X" for a domain
// shifted by X, so that a model is evaluated on both domains in one run.
func EvalSetName(name string, opts Options) string {
	if opts.LatentShift != 0 {
		return fmt.Sprintf("%s-shift-%g", name, opts.LatentShift)
	}
	return name
}

// WriteEvalSet writes the evaluation set called name (see World.EvalSet)
// of the world of opts to dir, in float32, with an eval.json that records
// its name (EvalSetName) and how it was made, and returns the files
// written in order.
//
// dir is created if missing. If it already holds evaluation set files,
// WriteEvalSet refuses unless opts.Overwrite is set: then they are
// replaced. The files are staged apart and published once all are written
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
	return stageInto(dir, "an evaluation set", isEvalFile, isEvalFile, opts, func(staging string) ([]File, error) {
		var files []File
		for _, a := range []struct {
			name string
			dim  int
			rows int
			data []float32
		}{
			{dataset.ImageFeaturesFile, opts.InputDim, set.Images, set.ImageFeatures},
			{dataset.ImageCLIPFile, opts.OutputDim, set.Images, set.ImageEmbeddings},
			{dataset.CaptionCLIPFile, opts.OutputDim, set.Captions, set.CaptionEmbeddings},
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
		if err := npy.WriteInt64(filepath.Join(staging, dataset.CaptionImageFile), []int{set.Captions}, index); err != nil {
			return nil, err
		}
		files = append(files, File{Path: filepath.Join(dir, dataset.CaptionImageFile), Shape: []int{set.Captions}, DType: npy.Int64})

		source := fmt.Sprintf("dinoclip synth seed=%d input_dim=%d output_dim=%d images=%d captions_per_image=%d",
			opts.Seed, opts.InputDim, opts.OutputDim, images, captionsPerImage)
		if opts.LatentShift != 0 {
			source += fmt.Sprintf(" latent_shift=%g", opts.LatentShift)
		}
		info, err := json.MarshalIndent(evalInfo{Name: EvalSetName(name, opts), Source: source}, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("synth: %s: %w", filepath.Join(dir, dataset.EvalInfoFile), err)
		}
		if err := atomicfile.WriteBytes(filepath.Join(staging, dataset.EvalInfoFile), append(info, '\n')); err != nil {
			return nil, err
		}
		return append(files, File{Path: filepath.Join(dir, dataset.EvalInfoFile)}), nil
	})
}

// busyError is LockDir's refusal of a directory another process holds;
// errors.Is takes it for flock.ErrLocked.
type busyError struct{ dir string }

func (e busyError) Error() string {
	return fmt.Sprintf("synth: %s is in use by another dinoclip (a synth or demo writing it, a training run in it, or an index appended to there)", e.dir)
}

func (e busyError) Unwrap() error { return flock.ErrLocked }

// LockDir makes dir if it is missing and takes the lock a writer of it
// holds until unlock, or says that another dinoclip (synth, or demo,
// which synthesises into its --out) holds it. The
// lock is on the directory itself (a system that cannot lock one, Windows,
// goes without).
func LockDir(dir string) (unlock func(), err error) {
	if _, err := madedirs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("synth: output directory: %w", err)
	}
	unlock, err = flock.LockDir(dir)
	if errors.Is(err, flock.ErrLocked) {
		return nil, busyError{dir}
	}
	if err != nil {
		return nil, fmt.Errorf("synth: output directory: %w", err)
	}
	return unlock, nil
}
