//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/dinoclip/dinoclip/internal/leconv"
)

// The check of the bf16 GEMMs at a bf16 engine's open.
//
// The tensor-core kernels of gemm_bf16.cu are proven in the host emulator,
// which implements mma.sync fragments, ldmatrix, cp.async, TMA copies into
// swizzled shared memory, wgmma operand descriptors and mbarriers as
// NVIDIA's PTX documentation describes them, and by ptxas; only a GPU can
// prove that reading right. So before a bf16 engine's first step,
// checkBF16GEMMs runs every GEMM kind on one small problem on each path the
// device has (the mma.sync kernels on every GPU, the wgmma ones on a
// Hopper GPU that loaded the sm_90a cubins) and compares the results with
// a float64 reference on the host:
//
//   - both right: the device runs the wgmma kernels where it has them;
//   - the wgmma kernels wrong (or failing to launch), the mma.sync ones
//     right: the device runs the mma.sync kernels from then on, slower and
//     right, and says so in a warning and in its description
//     (Device.String, which train logs and bench records);
//   - the mma.sync kernels wrong and no right wgmma ones: the engine does
//     not open, and its error says to train in fp32 (the SIMT kernels);
//   - the mma.sync kernels wrong, the wgmma ones right: a warning, and the
//     wgmma kernels run.
//
// It costs milliseconds, once per process. A kernel that faults, or hangs
// on an mbarrier (whose wait traps after 10 s: tensorcore.cuh's
// MBAR_WAIT_LIMIT_NS), leaves the CUDA context unusable: the open then
// fails with an error naming the way around it.

// The check's problem: C[M,N] = A[M,K] B[K,N] (+ bias, + old C), M and N
// of one whole and one ragged tile, K of five whole 64-wide chunks and a
// ragged one (the 4-stage ring wraps), every dimension a multiple of 8 so
// that each layout takes it, on 2 persistent blocks, so that each walks two
// tiles with the ring's phases carried across them, as in a large GEMM.
const (
	checkM, checkN, checkK = 136, 144, 328
	checkBlocks            = 2
)

// checkCase is one launch of the check: a kind, in splits along K (tn
// only).
type checkCase struct {
	kind   gemmKind
	splits int
}

var checkCases = []checkCase{{ntF32, 1}, {ntGELUBF16, 1}, {ntF32Stats, 1}, {ntF32GELU, 1}, {ntBF16Stats, 1},
	{ntF32BF16, 1}, {nnF32, 1}, {nnF32Add, 1}, {tnF32, 1}, {tnF32, 2}}

// checkBufs are the check's device buffers: the logical A and B stored in
// each layout's order, the bias, and the outputs.
type checkBufs struct {
	aMK, aKM, bKN, bNK buf[uint16]
	bias               buf[float32]
	c32, parts, stats  buf[float32]
	c16, act           buf[uint16]
}

// checkOutput is one path's outputs of a case, as float64: C and the
// second output (act's values, or stats' (count, mean, M2) triples).
type checkOutput struct{ c, second []float64 }

// checkProblem is the check's host data: A [M,K] and B [K,N] as bf16
// bits, the bias, the old C of nnF32Add, and in float64 the product A B
// and S = sum_p |A[i][p] B[p][j]|, the scale of the tolerances.
type checkProblem struct {
	a, b      []uint16
	bias, old []float32
	ab, s     []float64
}

// gemmVerdict is the check's outcome for the process: every Device of a
// process opens the same GPU (the first one CUDA_VISIBLE_DEVICES leaves)
// with the same kernels, so an evaluation after a training in one process
// does not check again. An error of the device (out of memory, a lost
// context) is no verdict and is not kept.
var gemmVerdict struct {
	sync.Mutex
	done     bool
	fallback string // as tensorCores.fallback
	broken   error  // no path is right: the bf16 engine cannot run here
}

// checkBF16GEMMs runs the check on the first bf16 engine's device of the
// process (on the worker thread) and applies its verdict to every later
// one.
func (d *Device) checkBF16GEMMs() error {
	if d.tc.checked || d.tc.ext == nil {
		// (Without the extended driver calls no bf16 GEMM launches: the
		// first one says so.)
		return nil
	}
	gemmVerdict.Lock()
	defer gemmVerdict.Unlock()
	if !gemmVerdict.done {
		fallback, broken, err := d.runGEMMCheck()
		if err != nil {
			return err
		}
		gemmVerdict.done, gemmVerdict.fallback, gemmVerdict.broken = true, fallback, broken
	}
	d.tc.checked = true
	if gemmVerdict.fallback != "" && d.tc.wgmma {
		d.tc.wgmma, d.tc.fallback = false, gemmVerdict.fallback
	}
	return gemmVerdict.broken
}

// runGEMMCheck runs every check case on each path the device has and
// returns the verdict: why the wgmma kernels failed where the mma.sync
// ones passed (fallback; the device then runs the mma.sync ones), or an
// error saying why no path is right (broken); err is an error of the
// device itself. It logs a fallback, and mma.sync kernels that fail where
// the wgmma ones pass.
func (d *Device) runGEMMCheck() (fallback string, broken, err error) {
	hasWgmma, sms := d.tc.wgmma, d.tc.sms
	d.tc.sms = checkBlocks
	defer func() { d.tc.wgmma, d.tc.sms = hasWgmma, sms }()
	pr := newCheckProblem()
	var measure arena
	carveCheckBufs(&measure)
	base, err := d.alloc(measure.off)
	if err != nil {
		return "", nil, d.oom(err, measure.off, "the check of the bf16 GEMMs", "", "")
	}
	defer d.free(base)
	bufs := carveCheckBufs(&arena{base: base})
	aKM, bNK := transposeBits(pr.a, checkM, checkK), transposeBits(pr.b, checkK, checkN)
	if err := errors.Join(upload(d, bufs.aMK, pr.a), upload(d, bufs.aKM, aKM), upload(d, bufs.bKN, pr.b),
		upload(d, bufs.bNK, bNK), upload(d, bufs.bias, pr.bias)); err != nil {
		return "", nil, err
	}

	// wrong[path] is why that path failed (the first case it failed), ""
	// while it passes; path true is wgmma.
	paths := []bool{false}
	if hasWgmma {
		paths = []bool{true, false}
	}
	wrong := map[bool]string{}
	for _, cs := range checkCases {
		for _, wgmma := range paths {
			if wrong[wgmma] != "" {
				continue
			}
			d.tc.wgmma = wgmma
			out, err := d.runCheckCase(bufs, cs, pr.old)
			if err != nil {
				if d.drv.Sync() != nil {
					way := "DINOCLIP_CUDA_KERNELS=ptx, which never runs a wgmma kernel"
					if !wgmma {
						way = "--precision fp32, whose GEMMs use no tensor cores"
					}
					return "", nil, fmt.Errorf("cuda: the bf16 GEMM %s (%s) failed on this GPU and took the CUDA context with it (%w); run with %s",
						cs, pathName(wgmma), err, way)
				}
				wrong[wgmma] = fmt.Sprintf("%s failed: %v", cs, err)
				continue
			}
			if why := pr.disagree(cs, out); why != "" {
				wrong[wgmma] = fmt.Sprintf("%s: %s", cs, why)
			}
		}
	}
	gpu := d.drv.Name()
	switch {
	case wrong[false] != "" && (!hasWgmma || wrong[true] != ""):
		why := "mma.sync: " + wrong[false]
		if hasWgmma {
			why = "wgmma: " + wrong[true] + "; " + why
		}
		return "", fmt.Errorf("cuda: the bf16 GEMMs fail their check on this GPU (%s): the bf16 engine cannot run here; use --precision fp32", why), nil
	case wrong[false] != "":
		slog.Warn("cuda: the mma.sync GEMMs fail their check on this GPU; the wgmma ones pass and run", "gpu", gpu, "why", wrong[false])
	case hasWgmma && wrong[true] != "":
		slog.Warn("cuda: the wgmma GEMMs failed their check on this GPU; the bf16 GEMMs run on the mma.sync kernels (correct, slower)",
			"gpu", gpu, "why", wrong[true])
		return wrong[true], nil, nil
	}
	return "", nil, nil
}

func pathName(wgmma bool) string {
	if wgmma {
		return "wgmma"
	}
	return "mma.sync"
}

// newCheckProblem draws the check's problem (the same on every GPU) and
// computes its product.
func newCheckProblem() checkProblem {
	rng := rand.New(rand.NewPCG(1, 2))
	pr := checkProblem{a: bf16Values(rng, checkM*checkK), b: bf16Values(rng, checkK*checkN),
		bias: normals(rng, checkN), old: normals(rng, checkM*checkN),
		ab: make([]float64, checkM*checkN), s: make([]float64, checkM*checkN)}
	for i := range checkM {
		ab, s := pr.ab[i*checkN:(i+1)*checkN], pr.s[i*checkN:(i+1)*checkN]
		for p := range checkK {
			av := float64(leconv.BFloat16Value(pr.a[i*checkK+p]))
			for j := range ab {
				t := av * float64(leconv.BFloat16Value(pr.b[p*checkN+j]))
				ab[j] += t
				s[j] += math.Abs(t)
			}
		}
	}
	return pr
}

// transposeBits returns the [cols, rows] transpose of v [rows, cols].
func transposeBits(v []uint16, rows, cols int) []uint16 {
	t := make([]uint16, len(v))
	for i := range rows {
		for j := range cols {
			t[j*rows+i] = v[i*cols+j]
		}
	}
	return t
}

func (cs checkCase) String() string {
	if cs.splits > 1 {
		return fmt.Sprintf("%s in %d splits", gemmKinds[cs.kind].name, cs.splits)
	}
	return gemmKinds[cs.kind].name
}

func carveCheckBufs(a *arena) checkBufs {
	const mn = checkM * checkN
	return checkBufs{
		aMK: carve[uint16](a, checkM*checkK), aKM: carve[uint16](a, checkK*checkM),
		bKN: carve[uint16](a, checkK*checkN), bNK: carve[uint16](a, checkN*checkK),
		bias: carve[float32](a, checkN),
		c32:  carve[float32](a, mn), parts: carve[float32](a, 2*mn), stats: carve[float32](a, checkM*statsTiles(checkN)*3),
		c16: carve[uint16](a, mn), act: carve[uint16](a, mn),
	}
}

// bf16Values are n normal values as bf16 bits.
func bf16Values(rng *rand.Rand, n int) []uint16 {
	v := make([]uint16, n)
	for i := range v {
		v[i] = leconv.BFloat16Bits(float32(rng.NormFloat64()))
	}
	return v
}

func normals(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// runCheckCase runs cs on the device's current path, its outputs filled
// with NaN first (nnF32Add's C with old), and returns the outputs.
func (d *Device) runCheckCase(bufs checkBufs, cs checkCase, old []float32) (checkOutput, error) {
	g := gemmKinds[cs.kind]
	const mn = checkM * checkN
	bf16C := cs.kind == ntGELUBF16 || cs.kind == ntBF16Stats
	nanF32, nanBF16 := make([]float32, 2*mn), make([]uint16, mn)
	for i := range nanF32 {
		nanF32[i] = float32(math.NaN())
	}
	for i := range nanBF16 {
		nanBF16[i] = 0x7fc0
	}
	c32 := nanF32[:mn]
	if cs.kind == nnF32Add {
		c32 = old
	}
	if err := errors.Join(upload(d, bufs.c16, nanBF16), upload(d, bufs.act, nanBF16), upload(d, bufs.parts, nanF32),
		upload(d, bufs.stats, nanF32[:bufs.stats.n]), upload(d, bufs.c32, c32)); err != nil {
		return checkOutput{}, err
	}
	c := outOf(bufs.c32)
	if bf16C {
		c = outOf(bufs.c16)
	}
	var second gemmOut
	switch g.second {
	case secondStats:
		second = outOf(bufs.stats)
	case secondAct:
		second = outOf(bufs.act)
	}
	var bias buf[float32]
	if g.bias {
		bias = bufs.bias
	}
	a, b := bufs.aMK, bufs.bNK
	switch {
	case g.aMN:
		a, b = bufs.aKM, bufs.bKN
	case g.bMN:
		b = bufs.bKN
	}
	var err error
	if cs.splits > 1 {
		err = d.gemmBF16TNSplit(bufs.c32, a, b, checkM, checkN, checkK, bufs.parts, cs.splits)
	} else {
		err = d.gemmBF16Split(cs.kind, c, second, a, b, bias, checkM, checkN, checkK, 1)
	}
	if err != nil {
		return checkOutput{}, err
	}
	var out checkOutput
	if out.c, err = fetchValues(d, c, bf16C); err != nil {
		return checkOutput{}, err
	}
	if second.p != 0 {
		if out.second, err = fetchValues(d, second, g.second == secondAct); err != nil {
			return checkOutput{}, err
		}
	}
	return out, nil
}

// fetchValues downloads o, bf16 or f32 values, as float64.
func fetchValues(d *Device, o gemmOut, bf16 bool) ([]float64, error) {
	v := make([]float64, o.n)
	if bf16 {
		h := make([]uint16, o.n)
		if err := download(d, h, buf[uint16]{o.p, o.n}); err != nil {
			return nil, err
		}
		for i, x := range h {
			v[i] = float64(leconv.BFloat16Value(x))
		}
		return v, nil
	}
	h := make([]float32, o.n)
	if err := download(d, h, buf[float32]{o.p, o.n}); err != nil {
		return nil, err
	}
	for i, x := range h {
		v[i] = float64(x)
	}
	return v, nil
}

// disagree says where out, the outputs of case cs on one path, differ from
// the problem's product by more than float32 accumulation and bf16
// rounding allow, or "" where they do not.
//
// Tolerances, as the kernel tests derive them (gemm_bf16_test.go): C's f32
// sum of the exact bf16 products, the bias and the old C errs from the
// float64 value by at most tau = (K+1) 2^-23 S, S the sum of the terms'
// magnitudes (a bound that allows a truncating tensor core); a bf16 C,
// rounded from it, by tau + 2^-8 (|C| + tau); a bf16 GELU of it as
// geluBF16Bound. The second outputs are checked against the path's own
// stored C: act exactly bf16 of it (ntF32BF16) or GELU of it within
// geluBF16Bound with tau 0 (ntF32GELU), the statistics as
// tileStatsDisagree. What the check is for errs far more: a swizzle or
// descriptor read the wrong way, a fragment in the wrong row or column, a
// lost K chunk or bias move C by about the size of the products, sqrt(K)
// here, some 2000 times tau.
func (pr checkProblem) disagree(cs checkCase, out checkOutput) string {
	g := gemmKinds[cs.kind]
	for i := range checkM {
		for j := range checkN {
			k := i*checkN + j
			want, s := pr.ab[k], pr.s[k]
			if g.bias {
				want, s = want+float64(pr.bias[j]), s+math.Abs(float64(pr.bias[j]))
			}
			if cs.kind == nnF32Add {
				want, s = want+float64(pr.old[k]), s+math.Abs(float64(pr.old[k]))
			}
			tol := float64(checkK+1) * math.Ldexp(s, -23)
			switch cs.kind {
			case ntGELUBF16:
				want, tol = geluBF16Bound(want, tol)
			case ntBF16Stats:
				tol += math.Ldexp(math.Abs(want)+tol, -8)
			}
			if x := out.c[k]; !(math.Abs(x-want) <= tol) {
				return fmt.Sprintf("C[%d][%d] = %v, want %v within %.3g", i, j, x, want, tol)
			}
		}
	}
	switch g.second {
	case secondAct:
		for k, c := range out.c {
			want, tol := float64(leconv.BFloat16Value(leconv.BFloat16Bits(float32(c)))), 0.0
			if cs.kind == ntF32GELU {
				want, tol = geluBF16Bound(c, 0)
			}
			if x := out.second[k]; !(math.Abs(x-want) <= tol) {
				return fmt.Sprintf("act[%d][%d] = %v for C = %v, want %v within %.3g", k/checkN, k%checkN, x, c, want, tol)
			}
		}
	case secondStats:
		return tileStatsDisagree(out.c, out.second, checkM, checkN)
	}
	return ""
}

// geluBF16Bound is GELU(x) in float64 and the bound of a bf16 GELU computed
// in f32 from a value within tol of x: GELU's steepest slope, 1.13, times
// tol, its f32 evaluation's 2^-14 of the value and 2^-126 (subnormals),
// then the bf16 rounding, 2^-8 of the value. (erfc, not 1 + erf: GELU of
// a large negative x is accurate so.)
func geluBF16Bound(x, tol float64) (gelu, bound float64) {
	gelu = 0.5 * x * math.Erfc(-x/math.Sqrt2)
	pre := 1.13*tol + math.Ldexp(math.Abs(gelu), -14) + math.Ldexp(1, -126)
	return gelu, pre + math.Ldexp(math.Abs(gelu)+pre, -8)
}

// tileStatsDisagree says where stats, the row statistics of a GEMM
// epilogue ((count, mean, M2) of each row's stored C in each 64-column
// tile), disagree with float64 statistics of c [rows, cols], or "" where
// they agree: the count exactly, the mean within 2^-19 A and M2 within
// 2^-19 (M2 + 3 n A^2), A the tile's largest |C| and n its 64 columns, the
// bounds TestGemmBF16FusedEpilogues derives for the f32 merges.
func tileStatsDisagree(c, stats []float64, rows, cols int) string {
	tiles := statsTiles(cols)
	for i := range rows {
		for tl := range tiles {
			vals := c[i*cols+tl*statsTile : i*cols+min(cols, (tl+1)*statsTile)]
			var mean, m2, big float64
			for _, v := range vals {
				mean += v
				big = max(big, math.Abs(v))
			}
			mean /= float64(len(vals))
			for _, v := range vals {
				m2 += (v - mean) * (v - mean)
			}
			got := stats[(i*tiles+tl)*3:][:3]
			if got[0] != float64(len(vals)) || !(math.Abs(got[1]-mean) <= math.Ldexp(big, -19)) ||
				!(math.Abs(got[2]-m2) <= math.Ldexp(m2+3*statsTile*big*big, -19)) {
				return fmt.Sprintf("statistics of row %d, column tile %d: (count, mean, M2) = (%v, %v, %v), of its C (%d, %v, %v)",
					i, tl, got[0], got[1], got[2], len(vals), mean, m2)
			}
		}
	}
	return ""
}
