package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
)

// tinyData writes rows of in -> out training pairs with a learnable linear
// relation, split into shards of shardRows, as float16 or float32.
func tinyData(t testing.TB, dir string, rows, shardRows, in, out int, float16 bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(42, 42))
	w := make([]float64, in*out)
	for i := range w {
		w[i] = rng.NormFloat64()
	}
	write := npy.WriteFloat32
	if float16 {
		write = npy.WriteFloat16
	}
	for s, lo := 0, 0; lo < rows; s, lo = s+1, lo+shardRows {
		n := min(shardRows, rows-lo)
		x, y := make([]float32, n*in), make([]float32, n*out)
		for r := 0; r < n; r++ {
			for i := 0; i < in; i++ {
				x[r*in+i] = float32(rng.NormFloat64())
			}
			for j := 0; j < out; j++ {
				var acc float64
				for i := 0; i < in; i++ {
					acc += w[j*in+i] * float64(x[r*in+i])
				}
				y[r*out+j] = float32(math.Tanh(acc))
			}
		}
		name := filepath.Join(dir, "shard-"+string(rune('a'+s)))
		if err := write(name+FeatureSuffix, []int{n, in}, x); err != nil {
			t.Fatal(err)
		}
		if err := write(name+TargetSuffix, []int{n, out}, y); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDatasetReadsShardsInOrder(t *testing.T) {
	dir := t.TempDir()
	tinyData(t, dir, 50, 20, 3, 2, false)
	d, err := OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Rows != 50 || d.InputDim != 3 || d.OutputDim != 2 {
		t.Fatalf("dataset of %d rows, %d -> %d", d.Rows, d.InputDim, d.OutputDim)
	}
	// Row 45 is row 5 of the third shard.
	x, y := make([]float32, 3), make([]float32, 2)
	if err := d.ReadRows([]int32{45}, x, y); err != nil {
		t.Fatal(err)
	}
	want, _, err := npy.ReadFloat32(filepath.Join(dir, "shard-c"+FeatureSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x, want[5*3:6*3]) {
		t.Fatalf("row 45 is %v, want %v", x, want[15:18])
	}
}

func TestPermutationIsDeterministicPerEpoch(t *testing.T) {
	a, b := Permutation(1000, 7, 3), Permutation(1000, 7, 3)
	if !slices.Equal(a, b) {
		t.Fatal("same seed and epoch, different order")
	}
	if slices.Equal(a, Permutation(1000, 7, 4)) || slices.Equal(a, Permutation(1000, 8, 3)) {
		t.Fatal("another epoch or seed gives the same order")
	}
	sorted := slices.Clone(a)
	slices.Sort(sorted)
	for i, v := range sorted {
		if int(v) != i {
			t.Fatalf("not a permutation: %d at %d", v, i)
		}
	}
}

func TestOrderBatches(t *testing.T) {
	o, err := NewOrder(103, 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	if o.StepsPerEpoch() != 10 {
		t.Fatalf("%d steps per epoch, want 10 (103 rows, whole batches of 10)", o.StepsPerEpoch())
	}
	perm := Permutation(103, 1, 2)
	if got := o.BatchRows(2, 4); !slices.Equal(got, perm[40:50]) {
		t.Fatalf("batch 4 of epoch 2 is %v, want %v", got, perm[40:50])
	}
	if _, err := NewOrder(5, 10, 1); err == nil || !strings.Contains(err.Error(), "fewer than one batch") {
		t.Fatalf("5 rows, batch 10: error %v", err)
	}
}

// Every kind of bad input gives an error that says what is wrong.
func TestDatasetErrors(t *testing.T) {
	good := func(t *testing.T) string {
		dir := t.TempDir()
		tinyData(t, dir, 20, 10, 3, 2, false)
		return dir
	}
	rewrite := func(t *testing.T, path string, edit func([]byte) []byte) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, edit(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, want string
		break_     func(t *testing.T, dir string)
	}{
		{"empty directory", "no shards", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
			os.Mkdir(dir, 0o755)
		}},
		{"missing targets", "has no shard-b.clip.npy", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "shard-b"+TargetSuffix))
		}},
		{"truncated", "shard-a.dino.npy", func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, "shard-a"+FeatureSuffix), func(b []byte) []byte { return b[:len(b)-5] })
		}},
		{"fortran order", "Fortran", func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, "shard-a"+FeatureSuffix), func(b []byte) []byte {
				return bytes.Replace(b, []byte("'fortran_order': False"), []byte("'fortran_order': True "), 1)
			})
		}},
		{"wrong dtype", "want a 2-D float16, float32 or float64 matrix", func(t *testing.T, dir string) {
			if err := npy.WriteInt64(filepath.Join(dir, "shard-a"+FeatureSuffix), []int{10, 3}, make([]int64, 30)); err != nil {
				t.Fatal(err)
			}
		}},
		{"row count mismatch", "10 feature rows but 9 target rows", func(t *testing.T, dir string) {
			if err := npy.WriteFloat32(filepath.Join(dir, "shard-a"+TargetSuffix), []int{9, 2}, make([]float32, 18)); err != nil {
				t.Fatal(err)
			}
		}},
		{"width mismatch", "shard shard-b is [4 -> 2] wide", func(t *testing.T, dir string) {
			if err := npy.WriteFloat32(filepath.Join(dir, "shard-b"+FeatureSuffix), []int{10, 4}, make([]float32, 40)); err != nil {
				t.Fatal(err)
			}
		}},
		{"targets 0 wide", "shard-a.clip.npy: a [10 0] array: its rows hold no values", func(t *testing.T, dir string) {
			if err := npy.WriteFloat32(filepath.Join(dir, "shard-a"+TargetSuffix), []int{10, 0}, nil); err != nil {
				t.Fatal(err)
			}
		}},
		{"features 0 wide", "shard-b.dino.npy: a [10 0] array: its rows hold no values", func(t *testing.T, dir string) {
			if err := npy.WriteFloat32(filepath.Join(dir, "shard-b"+FeatureSuffix), []int{10, 0}, nil); err != nil {
				t.Fatal(err)
			}
		}},
		{"empty shards", "all shards are empty", func(t *testing.T, dir string) {
			for _, s := range []string{"shard-a", "shard-b"} {
				npy.WriteFloat32(filepath.Join(dir, s+FeatureSuffix), []int{0, 3}, nil)
				npy.WriteFloat32(filepath.Join(dir, s+TargetSuffix), []int{0, 2}, nil)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := good(t)
			tc.break_(t, dir)
			d, err := OpenDataset(dir)
			if err == nil {
				d.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	t.Run("NaN", func(t *testing.T) {
		dir := good(t)
		x := make([]float32, 30)
		x[3*4+1] = float32(math.NaN())
		if err := npy.WriteFloat32(filepath.Join(dir, "shard-a"+FeatureSuffix), []int{10, 3}, x); err != nil {
			t.Fatal(err)
		}
		d, err := OpenDataset(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		err = d.ReadRows([]int32{2, 4}, make([]float32, 6), make([]float32, 4))
		if err == nil || !strings.Contains(err.Error(), "shard-a.dino.npy: row 4, column 1 is NaN") {
			t.Fatalf("error %v", err)
		}
	})
}

// ReadFloat16 gives float16 shards' bits as they are and float32 shards'
// values rounded to float16, across shard boundaries; Float16 tells the
// two apart.
func TestReadFloat16(t *testing.T) {
	for _, f16 := range []bool{true, false} {
		dir := t.TempDir()
		tinyData(t, dir, 50, 20, 3, 2, f16)
		d, err := OpenDataset(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if d.Float16() != f16 {
			t.Fatalf("Float16() = %v for float16 shards %v", d.Float16(), f16)
		}
		const lo, hi = 15, 45 // the end of shard a, all of b, the start of c
		x, y := make([]uint16, (hi-lo)*3), make([]uint16, (hi-lo)*2)
		if err := d.ReadFloat16(lo, hi, x, y); err != nil {
			t.Fatal(err)
		}
		rows := make([]int32, hi-lo)
		for i := range rows {
			rows[i] = int32(lo + i)
		}
		fx, fy := make([]float32, len(x)), make([]float32, len(y))
		if err := d.ReadRows(rows, fx, fy); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			got  []uint16
			vals []float32
		}{{x, fx}, {y, fy}} {
			for i, v := range c.vals {
				if c.got[i] != npy.Float16Bits(v) {
					t.Fatalf("float16 shards %v: value %d is %#04x, want %#04x (%v)", f16, i, c.got[i], npy.Float16Bits(v), v)
				}
				if f16 && npy.Float16Value(c.got[i]) != v {
					t.Fatalf("float16 shards: value %d is %v, the file has %v", i, npy.Float16Value(c.got[i]), v)
				}
			}
		}
		// The rounded host batches are these values.
		if err := d.readRowsFloat16(rows, fx, fy); err != nil {
			t.Fatal(err)
		}
		for i, v := range fx {
			if v != npy.Float16Value(x[i]) {
				t.Fatalf("readRowsFloat16: value %d is %v, ReadFloat16 gives %v", i, v, npy.Float16Value(x[i]))
			}
		}
		for _, r := range [][2]int{{-1, 3}, {40, 51}, {5, 4}} {
			n := max(r[1]-r[0], 0)
			if err := d.ReadFloat16(r[0], r[1], make([]uint16, n*3), make([]uint16, n*2)); err == nil {
				t.Errorf("rows [%d, %d) of 50: no error", r[0], r[1])
			}
		}
		if err := d.ReadFloat16(0, 2, make([]uint16, 5), make([]uint16, 4)); err == nil {
			t.Error("a short buffer: no error")
		}
	}
}

// ReadFloat16 reports a NaN or an infinity with its file and row, in
// float16 and float32 shards, and a float32 beyond float16's range as
// nn.ErrNotResident.
func TestReadFloat16Errors(t *testing.T) {
	for _, tc := range []struct {
		f16   bool
		value float32
		want  string
		not   bool // wraps nn.ErrNotResident
	}{
		{true, float32(math.Inf(1)), "shard-b.clip.npy: row 4, column 1 is +Inf", false},
		{false, float32(math.NaN()), "shard-b.clip.npy: row 4, column 1 is NaN", false},
		{false, -70000, "shard-b.clip.npy: row 4, column 1 is -70000, beyond float16's range", true},
	} {
		dir := t.TempDir()
		tinyData(t, dir, 50, 20, 3, 2, tc.f16)
		write := npy.WriteFloat32
		if tc.f16 {
			write = npy.WriteFloat16
		}
		y := make([]float32, 20*2)
		y[4*2+1] = tc.value
		if err := write(filepath.Join(dir, "shard-b"+TargetSuffix), []int{20, 2}, y); err != nil {
			t.Fatal(err)
		}
		d, err := OpenDataset(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		err = d.ReadFloat16(0, 50, make([]uint16, 150), make([]uint16, 100))
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, nn.ErrNotResident) != tc.not {
			t.Errorf("%v in a float16 %v shard: error %v", tc.value, tc.f16, err)
		}
	}
}

// float64 shards are read (as the error for other dtypes says), their
// values rounded to float32.
func TestDatasetFloat64(t *testing.T) {
	dir := t.TempDir()
	x, y := []float64{1, 2, 3, 4, 5, 1.0 / 3}, []float64{0.5, -0.25, 1e-3}
	if err := npy.WriteFloat64(filepath.Join(dir, "s"+FeatureSuffix), []int{3, 2}, x); err != nil {
		t.Fatal(err)
	}
	if err := npy.WriteFloat64(filepath.Join(dir, "s"+TargetSuffix), []int{3, 1}, y); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	gx, gy := make([]float32, 2), make([]float32, 1)
	if err := d.ReadRows([]int32{2}, gx, gy); err != nil {
		t.Fatal(err)
	}
	if gx[0] != 5 || gx[1] != float32(1.0/3) || gy[0] != float32(1e-3) {
		t.Fatalf("row 2: %v, %v", gx, gy)
	}
}

// A float64 value beyond float32's range reads as Inf: the error says so
// rather than claim the file holds an infinity; a float32 Inf is named
// plainly.
func TestDatasetFloat64BeyondFloat32(t *testing.T) {
	for _, c := range []struct {
		float64 bool
		want    string
	}{{true, "row 1, column 0 is +Inf in float32 (infinite, or a float64 beyond float32's range)"}, {false, "row 1, column 0 is +Inf"}} {
		dir := t.TempDir()
		x := []float64{1, 2, 1e300, 4}
		var err error
		if c.float64 {
			err = npy.WriteFloat64(filepath.Join(dir, "s"+FeatureSuffix), []int{2, 2}, x)
		} else {
			err = npy.WriteFloat32(filepath.Join(dir, "s"+FeatureSuffix), []int{2, 2}, []float32{1, 2, float32(math.Inf(1)), 4})
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := npy.WriteFloat32(filepath.Join(dir, "s"+TargetSuffix), []int{2, 1}, []float32{1, 1}); err != nil {
			t.Fatal(err)
		}
		d, err := OpenDataset(dir)
		if err != nil {
			t.Fatal(err)
		}
		err = d.ReadRows([]int32{1}, make([]float32, 2), make([]float32, 1))
		if err == nil || !strings.HasSuffix(err.Error(), c.want) {
			t.Errorf("float64 %v: error %v, want one ending %q", c.float64, err, c.want)
		}
		h := make([]uint16, 4)
		if err := d.ReadFloat16(0, 2, h, make([]uint16, 2)); err == nil || !strings.HasSuffix(err.Error(), c.want) {
			t.Errorf("float64 %v, ReadFloat16: error %v, want one ending %q", c.float64, err, c.want)
		}
		d.Close()
	}
}

// A data directory that holds a writer's staging directory is an
// incomplete set (a dinoclip synth moving it in, or one killed while it
// did: an older synth's .partial, today's .synth.tmp-N; rsync's
// --partial-dir): it is refused, not read in part.
func TestDatasetRefusesIncomplete(t *testing.T) {
	dir := t.TempDir()
	tinyData(t, dir, 40, 10, 4, 2, false)
	for _, name := range []string{".partial", ".synth.tmp-12345"} {
		staging := filepath.Join(dir, name)
		if err := os.Mkdir(staging, 0o755); err != nil {
			t.Fatal(err)
		}
		d, err := OpenDataset(dir)
		if err == nil {
			d.Close()
		}
		if !errors.Is(err, dataset.ErrIncomplete) || !strings.Contains(err.Error(), staging) || !strings.Contains(err.Error(), "incomplete") {
			t.Errorf("with %s: %v, want an error calling the set incomplete", name, err)
		}
		if err := dataset.CheckComplete(dir); !errors.Is(err, dataset.ErrIncomplete) {
			t.Errorf("CheckComplete with %s: %v", name, err)
		}
		os.Remove(staging)
	}
	// A plain file of such a name is no staging directory, and a
	// directory named like one but for its digits is a user's: synth
	// neither makes nor removes it, so readers do not refuse it either.
	os.WriteFile(filepath.Join(dir, ".partial"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, ".synth.tmp-backup"), 0o755)
	d, err := OpenDataset(dir)
	if err != nil || d.Rows != 40 {
		t.Fatalf("a whole set: %v", err)
	}
	d.Close()
}

// A data directory inside a dinoclip synth --out that holds the
// unfinished-run marker (an interrupted synth --force: train may be the new
// set and eval the old one) is refused, also through a link to it;
// OpenUnfinishedDataset, for describing it, opens it.
func TestDatasetRefusesUnfinishedSynth(t *testing.T) {
	out := t.TempDir()
	dir := filepath.Join(out, "train")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tinyData(t, dir, 40, 10, 4, 2, false)
	if err := os.WriteFile(filepath.Join(out, dataset.UnfinishedFile), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, link} {
		d, err := OpenDataset(p)
		if err == nil {
			d.Close()
		}
		if !errors.Is(err, dataset.ErrIncomplete) || !strings.Contains(err.Error(), "interrupted") {
			t.Errorf("OpenDataset(%s) under an unfinished synth: %v, want a refusal", p, err)
		}
	}
	d, err := OpenUnfinishedDataset(dir)
	if err != nil || d.Rows != 40 {
		t.Fatalf("OpenUnfinishedDataset: %v", err)
	}
	d.Close()
}

// A training set of more rows than a run numbers (MaxRows, int32) opens
// (info describes it) but is refused by a run before anything is computed,
// not minutes and gigabytes into the first epoch, where row 2^31 came out
// negative. Sparse files: two shards of 2^30 float16 rows each, and one
// row more.
func TestRunRefusesTooManyRows(t *testing.T) {
	dir := t.TempDir()
	sparse := func(name string, rows int) {
		h, err := npy.EncodeHeader(npy.Float16, []int{rows, 1})
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(h); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(int64(len(h)) + 2*int64(rows)); err != nil {
			t.Skipf("no sparse files here: %v", err)
		}
	}
	for i, rows := range []int{1 << 30, 1<<30 + 1} {
		for _, suffix := range []string{FeatureSuffix, TargetSuffix} {
			sparse(fmt.Sprintf("shard-%d%s", i, suffix), rows)
		}
	}
	d, err := OpenDataset(dir)
	if err != nil {
		t.Fatalf("a set of 2^31 + 1 rows does not open: %v", err)
	}
	defer d.Close()
	e, err := nn.NewCPUEngine[float32](nn.Config{InputDim: 1, HiddenDim: 2, OutputDim: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr := &Trainer{Engine: e, Data: d, Options: DefaultOptions(), RunDir: filepath.Join(t.TempDir(), "run")}
	if _, err := tr.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "more than the 2147483647 a run numbers") {
		t.Errorf("a run on 2^31 + 1 rows: %v, want a refusal", err)
	}
	if _, err := os.Stat(tr.RunDir); !os.IsNotExist(err) {
		t.Errorf("the refused run made its directory: %v", err)
	}
}
