//go:build cuda

package cuda

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
	"github.com/dinoclip/dinoclip/npy"
)

// TestGatherRows: gather_rows_f16 against the host conversion, bit for bit,
// on every float16 bit pattern (zeros, subnormals, normals, infinities,
// NaNs with their payloads), with repeated rows and rows wider than a
// block; an index out of range gives a row of NaN.
func TestGatherRows(t *testing.T) {
	d := testDevice(t)
	const nsrc, dim, n = 230, 300, 75 // 69,000 values: every pattern, then random ones
	rng := rand.New(rand.NewPCG(2, 16))
	src := make([]uint16, nsrc*dim)
	for i := range src {
		if i < 1<<16 {
			src[i] = uint16(i)
		} else {
			src[i] = uint16(rng.Uint32())
		}
	}
	rows := make([]int32, n)
	for i := range rows {
		rows[i] = int32(rng.IntN(nsrc))
	}
	rows[0], rows[1], rows[2], rows[n-1] = 0, nsrc-1, nsrc-1, 0
	// Every source row appears somewhere in one of the two launches below,
	// so that every bit pattern is converted.
	all := make([]int32, nsrc)
	for i := range all {
		all[i] = int32(i)
	}
	gsrc := devCopy(t, d, src)
	for _, idx := range [][]int32{rows, all} {
		k := len(idx)
		gidx, dst := devCopy(t, d, idx), devCopy(t, d, nanFill(k*dim))
		on(t, d, func() error { return d.gatherRows(dst, gsrc, gidx, k, dim, nsrc) })
		got := fetch(t, d, dst)
		for i, r := range idx {
			for j := 0; j < dim; j++ {
				h := src[int(r)*dim+j]
				if g, w := math.Float32bits(got[i*dim+j]), math.Float32bits(npy.Float16Value(h)); g != w {
					t.Fatalf("row %d (source row %d), column %d: half %#04x gave bits %#08x, want %#08x", i, r, j, h, g, w)
				}
			}
		}
	}

	bad := devCopy(t, d, []int32{3, -1, nsrc})
	dst := devCopy(t, d, make([]float32, 3*dim))
	on(t, d, func() error { return d.gatherRows(dst, gsrc, bad, 3, dim, nsrc) })
	got := fetch(t, d, dst)
	for i, v := range got {
		if nan := math.IsNaN(float64(v)); nan != (i >= dim) {
			t.Fatalf("out-of-range indices: element %d is %v", i, v)
		}
	}

	small := devAlloc[float32](t, d, dim)
	if err := d.do(func() error { return d.gatherRows(small, gsrc, bad, 3, dim, nsrc) }); err == nil {
		t.Error("gather into a buffer too small: no error")
	}
}

// residentData is a float16 data set in host memory, as an
// nn.Float16Reader that records the ranges it was asked for.
type residentData struct {
	cfg    nn.Config // the model it is drawn for: rows of cfg.InputDim and cfg.OutputDim values
	x, t   []uint16
	ranges [][2]int
}

func newResidentData(c nn.Config, rows int, seed uint64) *residentData {
	rng := rand.New(rand.NewPCG(seed, 77))
	r := &residentData{cfg: c, x: make([]uint16, rows*c.InputDim), t: make([]uint16, rows*c.OutputDim)}
	for i := range r.x {
		r.x[i] = npy.Float16Bits(float32(rng.NormFloat64()))
	}
	for i := range r.t {
		r.t[i] = npy.Float16Bits(float32(0.5 * rng.NormFloat64()))
	}
	return r
}

func (r *residentData) read(lo, hi int, x, t []uint16) error {
	r.ranges = append(r.ranges, [2]int{lo, hi})
	in, out := r.cfg.InputDim, r.cfg.OutputDim
	copy(x, r.x[lo*in:hi*in])
	copy(t, r.t[lo*out:hi*out])
	return nil
}

// batch is the float32 batch of the listed rows, as the host would upload.
func (r *residentData) batch(rows []int32) (x, t []float32) {
	in, out := r.cfg.InputDim, r.cfg.OutputDim
	x, t = make([]float32, len(rows)*in), make([]float32, len(rows)*out)
	for i, row := range rows {
		for j := 0; j < in; j++ {
			x[i*in+j] = npy.Float16Value(r.x[int(row)*in+j])
		}
		for j := 0; j < out; j++ {
			t[i*out+j] = npy.Float16Value(r.t[int(row)*out+j])
		}
	}
	return x, t
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v, want %v (bit for bit)", what, i, got[i], want[i])
		}
	}
}

// TestResidentMatchesForwardBackward: training on resident float16 data
// (uploaded in many chunks) is ForwardBackward on the same rows converted
// on the host, bit for bit: the losses, the gradients and, after AdamW
// steps, the parameters; in float32 and in bf16 mode (whose batch of 37
// rows pads the weight gradients' K).
func TestResidentMatchesForwardBackward(t *testing.T) {
	t.Run("fp32", func(t *testing.T) { testResidentMatches(t, NewEngine) })
	t.Run("bf16", func(t *testing.T) { testResidentMatches(t, NewBF16Engine) })
}

func testResidentMatches(t *testing.T, newEngine func(nn.Config) (*Engine, error)) {
	c := enginetest.Config
	const rows, batch, steps = 203, 37, 4
	data := newResidentData(c, rows, 1)
	saved := residentChunkBytes
	residentChunkBytes = int64(2 * (c.InputDim + c.OutputDim) * 10) // 10 rows a chunk
	t.Cleanup(func() { residentChunkBytes = saved })

	res, err := newEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	host, err := newEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	params := nn.InitParameters[float32](c, 9)
	for _, e := range []*Engine{res, host} {
		if err := e.SetParameters(params); err != nil {
			t.Fatal(err)
		}
	}
	if err := res.LoadResident(rows, batch, data.read); err != nil {
		t.Fatal(err)
	}
	next := 0
	for _, r := range data.ranges {
		if r[0] != next || r[1] <= r[0] || r[1]-r[0] > 10 {
			t.Fatalf("read ranges %v: not consecutive chunks of at most 10 rows", data.ranges)
		}
		next = r[1]
	}
	if next != rows || len(data.ranges) != 21 {
		t.Fatalf("read ranges %v: want 21 chunks covering [0, %d)", data.ranges, rows)
	}
	if want := int64(2 * rows * (c.InputDim + c.OutputDim)); res.residentByteSize < want {
		t.Fatalf("resident bytes %d, want at least %d", res.residentByteSize, want)
	}

	rng := rand.New(rand.NewPCG(4, 4))
	gr, gh := make([]float32, c.NumParams()), make([]float32, c.NumParams())
	for s := 1; s <= steps; s++ {
		idx := make([]int32, batch)
		for i := range idx {
			idx[i] = int32(rng.IntN(rows))
		}
		idx[0] = rows - 1
		lr, err := res.ForwardBackwardRows(idx)
		if err != nil {
			t.Fatal(err)
		}
		x, tg := data.batch(idx)
		lh, err := host.ForwardBackward(x, tg, batch)
		if err != nil {
			t.Fatal(err)
		}
		if math.Float64bits(lr) != math.Float64bits(lh) {
			t.Fatalf("step %d: resident loss %v, host batch %v", s, lr, lh)
		}
		if err := res.Gradients(gr); err != nil {
			t.Fatal(err)
		}
		if err := host.Gradients(gh); err != nil {
			t.Fatal(err)
		}
		sameBits(t, "gradient", gr, gh)
		hp := nn.AdamWStep{Step: s, LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
		if err := res.Step(hp); err != nil {
			t.Fatal(err)
		}
		if err := host.Step(hp); err != nil {
			t.Fatal(err)
		}
	}
	if err := res.Parameters(gr); err != nil {
		t.Fatal(err)
	}
	if err := host.Parameters(gh); err != nil {
		t.Fatal(err)
	}
	sameBits(t, "parameter", gr, gh)

	// The host path still works beside resident data, and loading again
	// replaces the data without keeping the old allocation.
	x, tg := data.batch([]int32{5, 6})
	if _, err := res.Loss(x, tg, 2); err != nil {
		t.Fatal(err)
	}
	before := res.dev.inUse
	if err := res.LoadResident(rows, batch, newResidentData(c, rows, 2).read); err != nil {
		t.Fatal(err)
	}
	if res.dev.inUse != before {
		t.Errorf("reloading the resident data: %d bytes in use, %d before", res.dev.inUse, before)
	}
}

// TestResidentErrors: what does not fit wraps nn.ErrNotResident before
// anything is read; a failing read and bad indices are errors; nothing
// stays allocated after a failed load.
func TestResidentErrors(t *testing.T) {
	c := enginetest.Config
	e, err := NewEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.SetParameters(nn.InitParameters[float32](c, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ForwardBackwardRows([]int32{0}); err == nil || !strings.Contains(err.Error(), "LoadResident") {
		t.Errorf("ForwardBackwardRows before LoadResident: %v", err)
	}
	data := newResidentData(c, 50, 3)
	boom := errors.New("disk on fire")
	calls := 0
	saved := residentChunkBytes
	residentChunkBytes = 1 // one row a chunk, so that the read fails midway
	t.Cleanup(func() { residentChunkBytes = saved })
	err = e.LoadResident(50, 8, func(lo, hi int, x, t []uint16) error {
		if calls++; calls == 3 { // rows 0 and 1 are uploaded by then
			return boom
		}
		return data.read(lo, hi, x, t)
	})
	if !errors.Is(err, boom) || errors.Is(err, nn.ErrNotResident) {
		t.Errorf("failing read: %v", err)
	}
	if e.residentByteSize != 0 || e.resident != 0 {
		t.Error("a failed load left resident data")
	}
	if _, err := e.ForwardBackwardRows([]int32{0}); err == nil {
		t.Error("ForwardBackwardRows after a failed load: no error")
	}
	notHeld := errors.New("a value beyond float16's range")
	err = e.LoadResident(50, 8, func(lo, hi int, x, t []uint16) error { return errors.Join(nn.ErrNotResident, notHeld) })
	if !errors.Is(err, nn.ErrNotResident) {
		t.Errorf("a read that cannot be held: %v, want it to wrap ErrNotResident", err)
	}

	if err := e.LoadResident(50, 8, data.read); err != nil {
		t.Fatal(err)
	}
	for _, rows := range [][]int32{nil, {0, 50}, {-1}} {
		if _, err := e.ForwardBackwardRows(rows); err == nil {
			t.Errorf("ForwardBackwardRows(%v) on 50 rows: no error", rows)
		}
	}

	// 4096 + 4096 halves a row, 16 KiB: a quarter more rows than the
	// device's whole memory holds (the emulation's 64 GiB, a GPU's own).
	residentChunkBytes = saved
	wide := nn.Config{InputDim: 4096, HiddenDim: 4, OutputDim: 4096, Blocks: 0}
	w, err := NewEngine(wide)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var total int64
	on(t, w.dev, func() (err error) { _, total, err = w.dev.drv.MemInfo(); return err })
	rows := int(total / (2 * 8192) * 5 / 4)
	read := false
	err = w.LoadResident(rows, 8, func(lo, hi int, x, t []uint16) error { read = true; return errors.New("read") })
	if !errors.Is(err, nn.ErrNotResident) || read {
		t.Fatalf("%d rows, %.0f GiB of data on a device of %.0f GiB: %v (read called: %v), want ErrNotResident before any read",
			rows, float64(rows)*2*8192/gib, float64(total)/gib, err, read)
	}
	t.Log(err)
	if w.residentByteSize != 0 {
		t.Error("data that does not fit left an allocation")
	}
}
