package train

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/mmapfault"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
)

// Suffixes of the two files of a training shard (docs/FORMAT.md).
const (
	FeatureSuffix = dataset.FeatureSuffix
	TargetSuffix  = dataset.TargetSuffix
)

// shard is one pair of memory-mapped arrays; start is its first row in the
// dataset's numbering.
type shard struct {
	name              string
	features, targets *npy.Array
	start, rows       int
	copyOf            string // the earlier shard whose two files this one's are (links to them), or ""
}

// Dataset is a directory of training shards, memory-mapped: rows are read
// (and float16 converted) only when a batch asks for them.
type Dataset struct {
	Dir                 string
	Rows                int
	InputDim, OutputDim int
	shards              []shard
}

// OpenDataset opens the shards in dir and checks that they fit together:
// every shard has both files, 2-D float arrays, equal row counts within a
// shard and equal widths across shards. A directory that shows a set being
// written, or one whose writing was interrupted (dataset.CheckComplete:
// a staging directory in dir, or an unfinished dinoclip synth into the
// directory above it), is refused rather than read in part.
func OpenDataset(dir string) (*Dataset, error) {
	dir = atomicfile.ResolveDotDot(dir) // (LINK/.. as the system takes it, before names are joined to it)
	if err := dataset.CheckComplete(dir); err != nil {
		return nil, fmt.Errorf("training data %w", err)
	}
	return openDataset(dir)
}

// OpenUnfinishedDataset is OpenDataset for describing what an unfinished
// dinoclip synth has written so far (dinoclip info): it opens dir even
// when the directory above it shows that run unfinished (a staging
// directory in dir itself is still refused). Training must not use it.
func OpenUnfinishedDataset(dir string) (*Dataset, error) {
	dir = atomicfile.ResolveDotDot(dir) // (LINK/.. as the system takes it, before names are joined to it)
	if err := dataset.CheckStaging(dir); err != nil {
		return nil, fmt.Errorf("training data %w", err)
	}
	return openDataset(dir)
}

// shardFiles maps each shard name among a directory's entries to the
// files of it that are there: bit 1 its features (NAME+FeatureSuffix), bit
// 2 its targets (NAME+TargetSuffix).
func shardFiles(entries []os.DirEntry) map[string]int {
	names := map[string]int{}
	for _, e := range entries {
		switch n := e.Name(); {
		case strings.HasSuffix(n, FeatureSuffix):
			names[strings.TrimSuffix(n, FeatureSuffix)] |= 1
		case strings.HasSuffix(n, TargetSuffix):
			names[strings.TrimSuffix(n, TargetSuffix)] |= 2
		}
	}
	return names
}

// HoldsShards reports whether dir holds the features file of a training
// shard, whole or not: a directory OpenDataset takes for training data
// (and describes what is wrong with, when it refuses it). Targets alone
// (NAME.clip.npy) are CLIP embeddings of any kind, such as the queries
// of a search, not training data.
func HoldsShards(dir string) bool {
	entries, _ := os.ReadDir(dir)
	for _, bits := range shardFiles(entries) {
		if bits&1 != 0 {
			return true
		}
	}
	return false
}

// HoldsWholeShards reports whether dir holds training shards, every one
// whole: a features file with its targets beside it, and no half alone.
// (A half written into it would have OpenDataset refuse it.)
func HoldsWholeShards(dir string) bool { return everyShard(dir, 3) }

// HoldsFeaturesOnly reports whether dir holds features files and no
// targets at all: features extracted alone (the Python extractor's
// --target none), for an index, not for training.
func HoldsFeaturesOnly(dir string) bool { return everyShard(dir, 1) }

// everyShard reports whether dir holds shard files, and every shard name's
// files are those of bits (shardFiles: 1 the features, 2 the targets).
func everyShard(dir string, bits int) bool {
	entries, _ := os.ReadDir(dir)
	shards := shardFiles(entries)
	for _, b := range shards {
		if b != bits {
			return false
		}
	}
	return len(shards) > 0
}

// ShardInfo describes one shard of a Dataset.
type ShardInfo struct {
	Name                    string // the files are Name+FeatureSuffix and Name+TargetSuffix
	Rows                    int
	FeatureType, TargetType string // the arrays' numpy dtypes ("float32", "float16")
}

// Shards describes the dataset's shards, in the order training reads them.
func (d *Dataset) Shards() []ShardInfo {
	out := make([]ShardInfo, len(d.shards))
	for i, s := range d.shards {
		out[i] = ShardInfo{s.name, s.rows, s.features.DType().Name(), s.targets.DType().Name()}
	}
	return out
}

func openDataset(dir string) (*Dataset, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("training data: %w", err)
	}
	names := shardFiles(entries)
	if len(names) == 0 {
		return nil, fmt.Errorf("training data %s: no shards (pairs of NAME%s and NAME%s)", dir, FeatureSuffix, TargetSuffix)
	}
	if HoldsFeaturesOnly(dir) {
		return nil, fmt.Errorf("training data %s: features without targets (no NAME%s at all: features extracted alone, with --target none, which dinoclip index reads): training needs the targets; extract them with --target image or text", dir, TargetSuffix)
	}
	sorted := slices.Sorted(maps.Keys(names))
	for _, n := range sorted { // (in name order: the first lone half named is the same each time)
		switch names[n] {
		case 1:
			return nil, fmt.Errorf("training data %s: %s%s has no %s%s beside it", dir, n, FeatureSuffix, n, TargetSuffix)
		case 2:
			return nil, fmt.Errorf("training data %s: %s%s has no %s%s beside it", dir, n, TargetSuffix, n, FeatureSuffix)
		}
	}
	d := &Dataset{Dir: dir}
	byFiles := map[[2]string]string{} // a shard's name by the identities of its two files
	for _, n := range sorted {
		s, err := openShard(dir, n)
		if err != nil {
			d.Close()
			return nil, err
		}
		if ids, ok := shardIdentity(dir, n); ok {
			if ids[0] == ids[1] {
				s.close()
				d.Close()
				return nil, fmt.Errorf("training data %s: shard %s's %s and %s are one file (links to it): its features would be their own targets", dir, n, FeatureSuffix, TargetSuffix)
			}
			if first, ok := byFiles[ids]; ok {
				s.copyOf = first
			} else {
				byFiles[ids] = n
			}
		}
		if len(d.shards) == 0 {
			d.InputDim, d.OutputDim = s.features.RowLen(), s.targets.RowLen()
		}
		if s.features.RowLen() != d.InputDim || s.targets.RowLen() != d.OutputDim {
			err := fmt.Errorf("training data %s: shard %s is [%d -> %d] wide but %s is [%d -> %d]",
				dir, n, s.features.RowLen(), s.targets.RowLen(), d.shards[0].name, d.InputDim, d.OutputDim)
			s.close()
			d.Close()
			return nil, err
		}
		s.start = d.Rows
		d.Rows += s.rows
		d.shards = append(d.shards, s)
	}
	if d.Rows == 0 {
		d.Close()
		return nil, fmt.Errorf("training data %s: all shards are empty", dir)
	}
	return d, nil
}

// shardIdentity is the identity of shard name's two files in dir
// (atomicfile.Identity); false where the system gives none.
func shardIdentity(dir, name string) ([2]string, bool) {
	var ids [2]string
	for i, suffix := range []string{FeatureSuffix, TargetSuffix} {
		st, err := os.Stat(filepath.Join(dir, name+suffix))
		if err != nil {
			return ids, false
		}
		if ids[i] = atomicfile.Identity(st); ids[i] == "" {
			return ids, false
		}
	}
	return ids, true
}

// Copies lists the shards whose two files are those of an earlier shard
// (links to them), each as [shard, the earlier one]: a set linked
// together from others with a shard taken twice, whose rows every epoch
// then trains on twice.
func (d *Dataset) Copies() [][2]string {
	var out [][2]string
	for _, s := range d.shards {
		if s.copyOf != "" {
			out = append(out, [2]string{s.name, s.copyOf})
		}
	}
	return out
}

// MaxRows is the most training rows a run takes: rows are numbered by int32
// in the shuffle (Permutation) and the batches. A larger set opens (info
// describes it); Trainer.Run refuses it (checkTrainable).
const MaxRows = math.MaxInt32

// checkTrainable refuses a set of more rows than a run numbers: row 2^31
// came out negative minutes and gigabytes into the first epoch.
func (d *Dataset) checkTrainable() error {
	if d.Rows > MaxRows {
		return fmt.Errorf("training data %s: %d rows, more than the %d a run numbers (int32, in each epoch's shuffle); train on a part of it", d.Dir, d.Rows, MaxRows)
	}
	return nil
}

func openShard(dir, name string) (shard, error) {
	s := shard{name: name}
	var err error
	if s.features, err = npy.OpenMatrix(filepath.Join(dir, name+FeatureSuffix), "[n, D_in]"); err != nil {
		return s, err
	}
	if s.targets, err = npy.OpenMatrix(filepath.Join(dir, name+TargetSuffix), "[n, D_out]"); err != nil {
		s.features.Close()
		return s, err
	}
	if s.features.Rows() != s.targets.Rows() {
		s.close()
		return s, fmt.Errorf("training data %s: shard %s has %d feature rows but %d target rows",
			dir, name, s.features.Rows(), s.targets.Rows())
	}
	s.rows = s.features.Rows()
	return s, nil
}

func (s shard) close() error {
	return errors.Join(s.features.Close(), s.targets.Close())
}

// Close unmaps every shard.
func (d *Dataset) Close() error {
	var errs []error
	for _, s := range d.shards {
		errs = append(errs, s.close())
	}
	d.shards = nil
	return errors.Join(errs...)
}

// ReadRows converts the dataset rows listed in rows into x [len(rows),
// InputDim] and t [len(rows), OutputDim], and reports a NaN or Inf with the
// file and row it came from.
func (d *Dataset) ReadRows(rows []int32, x, t []float32) error {
	if len(x) != len(rows)*d.InputDim || len(t) != len(rows)*d.OutputDim {
		return fmt.Errorf("training data: buffers of %d and %d values for %d rows", len(x), len(t), len(rows))
	}
	for i, r := range rows {
		s, local, err := d.locate(int(r))
		if err != nil {
			return err
		}
		xr, tr := x[i*d.InputDim:(i+1)*d.InputDim], t[i*d.OutputDim:(i+1)*d.OutputDim]
		if err := readFiniteRow(s.features, local, xr); err != nil {
			return err
		}
		if err := readFiniteRow(s.targets, local, tr); err != nil {
			return err
		}
	}
	return nil
}

func readFiniteRow(a *npy.Array, row int, dst []float32) error {
	if err := a.ReadRows(dst, row, row+1); err != nil {
		return err
	}
	return a.CheckFinite(dst, row)
}

// Float16 reports whether every shard stores float16, so that the float16
// copy of the data that ReadFloat16 gives is the data itself.
func (d *Dataset) Float16() bool {
	for _, s := range d.shards {
		if s.features.DType() != npy.Float16 || s.targets.DType() != npy.Float16 {
			return false
		}
	}
	return true
}

// ReadFloat16 reads the dataset rows [lo, hi) as IEEE 754 binary16 bits
// into x [(hi-lo), InputDim] and t [(hi-lo), OutputDim]; it is the
// nn.Float16Reader of an engine's resident copy. float16 shards are copied
// as they are; other values are rounded to the nearest float16 (ties to
// even), and one beyond float16's range (npy.Float16Finite) is an error wrapping
// nn.ErrNotResident, since the data cannot be held as float16 but trains
// fine from the host. A NaN or Inf is an error naming the file and row, as
// in ReadRows.
func (d *Dataset) ReadFloat16(lo, hi int, x, t []uint16) error {
	if lo < 0 || hi > d.Rows || lo > hi {
		return fmt.Errorf("training data: rows [%d, %d) out of range [0, %d)", lo, hi, d.Rows)
	}
	if len(x) != (hi-lo)*d.InputDim || len(t) != (hi-lo)*d.OutputDim {
		return fmt.Errorf("training data: buffers of %d and %d values for %d rows", len(x), len(t), hi-lo)
	}
	for row := lo; row < hi; {
		s, local, err := d.locate(row)
		if err != nil {
			return err
		}
		n := min(hi-row, s.rows-local)
		i := row - lo
		if err := readFloat16(s.features, local, local+n, x[i*d.InputDim:(i+n)*d.InputDim]); err != nil {
			return err
		}
		if err := readFloat16(s.targets, local, local+n, t[i*d.OutputDim:(i+n)*d.OutputDim]); err != nil {
			return err
		}
		row += n
	}
	return nil
}

// float16Block is the rows readFloat16 converts at a time from a float32
// array: it bounds the float32 scratch, whatever range it is asked for.
const float16Block = 256

// readFloat16 reads rows [start, end) of a as float16 bits into dst.
func readFloat16(a *npy.Array, start, end int, dst []uint16) error {
	w := a.RowLen()
	if a.DType() == npy.Float16 {
		raw, err := a.RawRows(start, end)
		if err != nil {
			return err
		}
		// raw aliases the mapping: read it under the fault guard, as npy's
		// own readers do, so that a file truncated underneath is an error.
		if err := mmapfault.Guard(func() {
			for i := range dst {
				dst[i] = binary.LittleEndian.Uint16(raw[2*i:])
			}
		}); err != nil {
			return fmt.Errorf("%s: %w", a.Name(), err)
		}
		for i, h := range dst {
			if h&0x7c00 == 0x7c00 {
				return &npy.NonFiniteError{File: a.Name(), Row: start + i/w, Column: i % w, Value: float64(npy.Float16Value(h))}
			}
		}
		return nil
	}
	scratch := make([]float32, min(end-start, float16Block)*w)
	for r := start; r < end; r += float16Block {
		k := min(end-r, float16Block)
		v := scratch[:k*w]
		if err := a.ReadRows(v, r, r+k); err != nil {
			return err
		}
		if err := roundFloat16(a, r, w, v, dst[(r-start)*w:(r-start+k)*w]); err != nil {
			return err
		}
	}
	return nil
}

// roundFloat16 rounds the rows v (w values each, the first being row row
// of a) to float16 bits into dst. NaN and Inf are errors; a finite
// value that rounds to ±Inf wraps nn.ErrNotResident.
func roundFloat16(a *npy.Array, row, w int, v []float32, dst []uint16) error {
	name := a.Name()
	for i, f := range v {
		h, ok := npy.Float16Finite(f)
		if !ok {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return &npy.NonFiniteError{File: name, Row: row + i/w, Column: i % w, Value: float64(f), Float64: a.DType() == npy.Float64}
			}
			return fmt.Errorf("%w: %s: row %d, column %d is %v, beyond %s", nn.ErrNotResident, name, row+i/w, i%w, f, npy.Float16Range)
		}
		dst[i] = h
	}
	return nil
}

// readRowsFloat16 is ReadRows with every value rounded to float16, as an
// engine's resident copy holds it: for a run that trained on resident data
// and goes on from host batches (see State.Float16).
func (d *Dataset) readRowsFloat16(rows []int32, x, t []float32) error {
	if err := d.ReadRows(rows, x, t); err != nil {
		return err
	}
	for _, b := range []struct {
		v []float32
		w int
	}{{x, d.InputDim}, {t, d.OutputDim}} {
		for i, f := range b.v {
			h, ok := npy.Float16Finite(f)
			if !ok {
				return fmt.Errorf("training data %s: row %d holds %v, beyond %s, and this run trains on the data rounded to float16 (it started with the data resident on the GPU)",
					d.Dir, rows[i/b.w], f, npy.Float16Range)
			}
			b.v[i] = npy.Float16Value(h)
		}
	}
	return nil
}

func (d *Dataset) locate(row int) (*shard, int, error) {
	if row < 0 || row >= d.Rows {
		return nil, 0, fmt.Errorf("training data: row %d out of range [0, %d)", row, d.Rows)
	}
	i := sort.Search(len(d.shards), func(i int) bool { return d.shards[i].start+d.shards[i].rows > row })
	return &d.shards[i], row - d.shards[i].start, nil
}

// Order is the deterministic visiting order of a dataset's rows:
// epoch e is the permutation drawn from (Seed, e), cut into batches of Batch
// rows; rows past the last whole batch sit out that epoch.
type Order struct {
	Rows, Batch int
	Seed        uint64
	epoch       int
	perm        []int32
}

// NewOrder checks that rows hold at least one batch.
func NewOrder(rows, batch int, seed uint64) (*Order, error) {
	if batch < 1 {
		return nil, fmt.Errorf("batch size %d: must be at least 1", batch)
	}
	if rows < batch {
		return nil, fmt.Errorf("the training data has %d rows, fewer than one batch of %d", rows, batch)
	}
	return &Order{Rows: rows, Batch: batch, Seed: seed, epoch: -1}, nil
}

// StepsPerEpoch is the number of whole batches in the data.
func (o *Order) StepsPerEpoch() int { return o.Rows / o.Batch }

// BatchRows returns the rows of batch k of epoch e (both 0-based). The slice is
// valid until a call for another epoch.
func (o *Order) BatchRows(epoch, k int) []int32 {
	if epoch != o.epoch {
		o.perm = Permutation(o.Rows, o.Seed, epoch)
		o.epoch = epoch
	}
	return o.perm[k*o.Batch : (k+1)*o.Batch]
}

// Permutation is a Fisher-Yates shuffle of 0..n-1 from a PCG stream keyed by
// (seed, epoch): the same on every machine and every run.
func Permutation(n int, seed uint64, epoch int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(i)
	}
	rng := rand.New(rand.NewPCG(seed, uint64(epoch)))
	for i := n - 1; i > 0; i-- {
		j := rng.IntN(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}
