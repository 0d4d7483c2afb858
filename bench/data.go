package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/train"
)

// DataOptions are the parameters of MeasureData.
type DataOptions struct {
	// Dir is where the shards are written, in a new temporary directory
	// that is removed afterwards ("": the system's temporary directory):
	// DataDirBase's. Point it at the disk the real data will live on.
	Dir string
	// Rows in all, split over Shards shards.
	Rows, Shards        int
	InputDim, OutputDim int
	// Float16 writes both arrays as float16 (the usual storage of
	// features); otherwise float32.
	Float16 bool
	// Batch rows per read, in the order of epoch 0 of train.Order.
	Batch int
	// Cold adds a pass with the files' pages dropped from the page cache.
	Cold bool
	Seed uint64
}

// DataDirBase names the temporary directory MeasureData writes its shards
// in (atomicfile.MkdirTempRemovedOnExit's ".dinoclip-bench-data.tmp-N"):
// it holds the directory's lock while it runs, so that a later run can
// tell the shards a killed one left (tens of megabytes to gigabytes) from
// those of one at work, and remove them (atomicfile.SweepDeadDirs, with
// IsDataFile).
const DataDirBase = "dinoclip-bench-data"

// IsDataFile reports whether name is one of the files MeasureData writes
// in its directory (writeShards').
func IsDataFile(name string) bool {
	return strings.HasPrefix(name, shardPrefix) && (strings.HasSuffix(name, train.FeatureSuffix) || strings.HasSuffix(name, train.TargetSuffix))
}

// shardPrefix starts the names of the shards writeShards writes.
const shardPrefix = "shard-"

// MeasureData writes a dataset of random shards as float16 (or float32)
// .npy files, opens it with train.OpenDataset and times reading one
// epoch of batches, as the trainer reads them (train.Order's permutation,
// train.Dataset.ReadRows, which converts to float32 and checks every value):
// first warm, with the files in the page cache as writing left them, then,
// if o.Cold, after dropping their pages. It reports rows/s and the file
// bytes/s behind them.
func MeasureData(o DataOptions) (DataReport, error) {
	if o.Rows < 1 || o.Shards < 1 || o.Shards > o.Rows || o.Batch < 1 || o.Batch > o.Rows || o.InputDim < 1 || o.OutputDim < 1 {
		return DataReport{}, fmt.Errorf("data benchmark: %d rows in %d shards, batch %d, widths %d -> %d",
			o.Rows, o.Shards, o.Batch, o.InputDim, o.OutputDim)
	}
	parent := o.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	// (Removed too by a process ended at once on a signal, which runs no
	// deferred call: atomicfile.RemoveUnfinished.)
	dir, release, forget, err := atomicfile.MkdirTempRemovedOnExit(parent, DataDirBase)
	if err != nil {
		return DataReport{}, fmt.Errorf("data benchmark: %w", err)
	}
	defer func() {
		release()
		os.RemoveAll(dir)
		forget()
	}()
	files, err := writeShards(dir, o)
	if err != nil {
		return DataReport{}, fmt.Errorf("data benchmark: %w", err)
	}
	itemSize, dtype := 4, "float32"
	if o.Float16 {
		itemSize, dtype = 2, "float16"
	}
	rep := DataReport{Status: Measured}
	pass := func(cache string) error {
		r := DataResult{
			Dir: dir, Rows: o.Rows, Shards: o.Shards, InputDim: o.InputDim, OutputDim: o.OutputDim,
			DType: dtype, Batch: o.Batch, Cache: cache,
		}
		if cache == "cold" {
			if inMemoryFS(dir) {
				r.ColdError = dir + " is on a filesystem held in memory (tmpfs): reads are memory reads; pass a directory on a disk"
			}
			for _, f := range files {
				if err := dropPageCache(f); err != nil {
					r.ColdError = errors.Join(errors.New("could not drop the page cache"), err).Error()
					break
				}
			}
		}
		d, err := train.OpenDataset(dir)
		if err != nil {
			return err
		}
		defer d.Close()
		ord, err := train.NewOrder(d.Rows, o.Batch, o.Seed)
		if err != nil {
			return err
		}
		ord.BatchRows(0, 0) // draw the epoch's permutation before timing
		x, t := make([]float32, o.Batch*d.InputDim), make([]float32, o.Batch*d.OutputDim)
		r.Batches = ord.StepsPerEpoch()
		start := time.Now()
		for k := range r.Batches {
			if err := d.ReadRows(ord.BatchRows(0, k), x, t); err != nil {
				return err
			}
		}
		r.Seconds = time.Since(start).Seconds()
		rows := r.Batches * o.Batch
		r.FileBytes = int64(rows) * int64(o.InputDim+o.OutputDim) * int64(itemSize)
		r.RowsPerSecond = float64(rows) / r.Seconds
		r.FileBytesPerSecond = float64(r.FileBytes) / r.Seconds
		rep.Results = append(rep.Results, r)
		return nil
	}
	if err := pass("warm"); err != nil {
		return rep, fmt.Errorf("data benchmark: %w", err)
	}
	if o.Cold {
		if err := pass("cold"); err != nil {
			return rep, fmt.Errorf("data benchmark: %w", err)
		}
	}
	return rep, nil
}

// Bytes is the size on disk of the shards the data benchmark writes
// (their .npy headers aside).
func (o DataOptions) Bytes() int64 {
	size := int64(4)
	if o.Float16 {
		size = 2
	}
	return int64(o.Rows) * int64(o.InputDim+o.OutputDim) * size
}

// writeShards writes o.Shards pairs of random arrays into dir and returns
// their paths. Each array is drawn and written a chunk of values at a
// time (npy.WriteFloatsFunc), so memory stays small however large the
// shards.
func writeShards(dir string, o DataOptions) ([]string, error) {
	dt := npy.Float32
	if o.Float16 {
		dt = npy.Float16
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0xda7a))
	var files []string
	for s := range o.Shards {
		lo, hi := o.Rows*s/o.Shards, o.Rows*(s+1)/o.Shards
		for _, a := range []struct {
			suffix string
			width  int
		}{{train.FeatureSuffix, o.InputDim}, {train.TargetSuffix, o.OutputDim}} {
			path := filepath.Join(dir, fmt.Sprintf("%s%05d%s", shardPrefix, s, a.suffix))
			err := npy.WriteFloatsFunc(path, dt, []int{hi - lo, a.width}, func(v []float32) {
				for i := range v {
					v[i] = 2*rng.Float32() - 1
				}
			})
			if err != nil {
				return nil, err
			}
			files = append(files, path)
		}
	}
	return files, nil
}
