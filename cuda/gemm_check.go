//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
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
//     not open, and its error says to use fp32 (the SIMT kernels);
//   - the mma.sync kernels wrong, the wgmma ones right: a warning, and the
//     wgmma kernels run.
//
// With DINOCLIP_CUDA_CHECK=warn (checkEnv), wrong values refuse nothing:
// where no path passed, the wgmma kernels run where they start at all,
// else the mma.sync ones, and a warning and the device's description say
// that they run unchecked (a path that passed runs as above).
//
// It costs tens of milliseconds (most of them the host's product), once
// per process. A kernel that cannot start (launchError) fails the check;
// one that faults, or hangs on an mbarrier (whose wait traps after 10 s:
// tensorcore.cuh's MBAR_WAIT_LIMIT_NS), leaves the CUDA context unusable:
// the open then fails with an error naming the way around it. A copy or
// an allocation that fails is an error of the device and decides nothing.

// The check's problem: C[M,N] = A[M,K] B[K,N] (+ bias, + old C), M and N
// of one whole and one ragged tile, K of five whole 64-wide chunks and a
// ragged one (the 4-stage ring wraps), every dimension a multiple of 8 so
// that each layout takes it. Every output is followed by checkCanary NaN
// values that must stay so.
const (
	checkM, checkN, checkK = 136, 144, 328
	checkCanary            = 64
	checkMaxSplits         = 4
)

// checkCase is one launch of the check: a kind, in splits along K (tn
// only), on blocks persistent blocks (0: as the engine launches them, one
// per multiprocessor up to one per tile). On 1 block the wgmma kernels
// walk the 4 tiles (and 6 K chunks in every split) with the ring's phases
// carried across them and the consumer warpgroups taking turns, as in a
// large GEMM; on many, each block takes its own.
type checkCase struct {
	kind   gemmKind
	splits int
	blocks int
}

// checkCases are every kind on 1 block, the weight gradient also in 2, 3
// and 4 splits along K (of its 6 chunks: 4 splits are uneven, 1, 2, 1,
// 2), and one kind of each layout, and 4 splits, on the engine's blocks.
var checkCases = []checkCase{{ntF32, 1, 1}, {ntGELUBF16, 1, 1}, {ntF32Stats, 1, 1}, {ntF32GELU, 1, 1}, {ntBF16Stats, 1, 1},
	{ntF32BF16, 1, 1}, {nnF32, 1, 1}, {nnF32Add, 1, 1}, {tnF32, 1, 1}, {tnF32, 2, 1}, {tnF32, 3, 1}, {tnF32, 4, 1},
	{ntF32Stats, 1, 0}, {nnF32Add, 1, 0}, {tnF32, 1, 0}, {tnF32, 4, 0}}

// checkBufs are the check's device buffers: the logical A and B stored in
// each layout's order, the bias, and the outputs, each with its canary.
type checkBufs struct {
	aMK, aKM, bKN, bNK buf[uint16]
	bias               buf[float32]
	c32, parts, stats  buf[float32]
	c16, act           buf[uint16]
}

// gemmChecker is the check's problem on the device: its host data and
// its device buffers.
type gemmChecker struct {
	d    *Device
	pr   checkProblem
	bufs checkBufs
	base uintptr // the buffers' allocation
}

// checkOutput is one path's outputs of a case, as float64: C and the
// second output (act's values, or stats' (count, mean, M2) triples); and
// overrun, the output it wrote past the end of, if any.
type checkOutput struct {
	c, second []float64
	overrun   string
}

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
	gemmOutcome
}

// gemmOutcome is what gemmVerdict keeps (apart from its lock, so that a
// test can set it aside).
type gemmOutcome struct {
	done      bool
	fallback  string // as tensorCores.fallback
	unchecked string // as tensorCores.unchecked
	broken    error  // no path is right: the bf16 engine cannot run here
	// wgmmaLost is the wgmma case that took a CUDA context with it, if one
	// did: a later check, on a new context, takes the wgmma kernels for
	// wrong rather than lose that one too (a hung pipeline traps only
	// after 10 s).
	wgmmaLost string
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
		fallback, unchecked, broken, err := d.runGEMMCheck()
		if err != nil {
			return err
		}
		gemmVerdict.done, gemmVerdict.fallback, gemmVerdict.unchecked, gemmVerdict.broken = true, fallback, unchecked, broken
	}
	d.tc.checked, d.tc.unchecked = true, gemmVerdict.unchecked
	if gemmVerdict.fallback != "" && d.tc.wgmma {
		d.tc.wgmma, d.tc.fallback = false, gemmVerdict.fallback
	}
	return gemmVerdict.broken
}

// runGEMMCheck (under gemmVerdict's lock) runs every check case on each
// path the device has (the wgmma one only where no earlier check of the
// process lost a context to it) and returns the verdict: why the wgmma
// kernels failed where the mma.sync ones run (fallback; the device then
// runs the mma.sync ones), why the path that runs failed where checkEnv's
// warn runs it anyway (unchecked), or an error saying why no path can run
// (broken); err is an error of the device itself. It logs a fallback, an
// unchecked path, and mma.sync kernels that fail where the wgmma ones pass.
func (d *Device) runGEMMCheck() (fallback, unchecked string, broken, err error) {
	warn, err := checksWarn()
	if err != nil {
		return "", "", nil, err
	}
	hasWgmma := d.tc.wgmma
	defer func() { d.tc.wgmma = hasWgmma }()
	g, err := d.newGEMMChecker()
	if err != nil {
		return "", "", nil, err
	}
	defer g.close()
	// wrong[path] is why that path failed (the first case it failed), ""
	// while it passes, and refused[path] that it failed for it cannot run
	// (a launch refused, a context lost); path true is wgmma.
	paths := []bool{false}
	if hasWgmma {
		paths = []bool{true, false}
	}
	wrong, refused, failedAt := map[bool]string{}, map[bool]bool{}, map[bool]int{}
	if gemmVerdict.wgmmaLost != "" {
		wrong[true] = gemmVerdict.wgmmaLost + " took an earlier CUDA context of this process with it"
		refused[true] = true
	}
	// A path's first failure decides it.
	for i, cs := range checkCases {
		for _, wgmma := range paths {
			if wrong[wgmma] != "" {
				continue
			}
			d.tc.wgmma = wgmma
			if wrong[wgmma], refused[wgmma], err = g.check(cs); err != nil {
				return "", "", nil, err
			}
			if wrong[wgmma] != "" {
				failedAt[wgmma] = i
			}
		}
	}
	// Under warn, where no path passed, the one that would run (wgmma
	// where it started, else mma.sync) runs the cases after its failure
	// too, so that a kind that cannot start (another kernel) is known
	// before it is run; one that cannot gives way to the next. (A path
	// that passed runs, and a failed one is not run again beside it.)
	if warn && wrong[false] != "" && (!hasWgmma || wrong[true] != "") {
		for _, path := range paths {
			if refused[path] {
				continue
			}
			d.tc.wgmma = path
			for _, cs := range checkCases[failedAt[path]+1:] {
				why, cannotStart, err := g.check(cs)
				if err != nil {
					return "", "", nil, err
				}
				if cannotStart {
					wrong[path], refused[path] = why, true
					break
				}
			}
			if !refused[path] {
				break
			}
		}
	}
	gpu := d.drv.Name()
	// run is the path the GEMMs take: wgmma where the device has it and it
	// passed, or, under warn, where no path passed and it starts; else
	// mma.sync.
	run := hasWgmma && (wrong[true] == "" || warn && !refused[true] && wrong[false] != "")
	switch {
	case wrong[run] == "":
	case warn && !refused[run]:
		unchecked = pathName(run) + ": " + wrong[run]
		slog.Warn("cuda: the bf16 GEMMs failed their check on this GPU; they run anyway, unproven, as "+checkEnv+"=warn asks",
			"gpu", gpu, "path", pathName(run), "why", wrong[run])
	default:
		why := "mma.sync: " + wrong[false]
		if hasWgmma {
			why = "wgmma: " + wrong[true] + "; " + why
		}
		return "", "", refuseBF16(fmt.Sprintf("the bf16 GEMMs fail their check on this GPU (%s)", why), !refused[false] || hasWgmma && !refused[true]), nil
	}
	switch {
	case run && wrong[false] != "":
		slog.Warn("cuda: the mma.sync GEMMs fail their check on this GPU; the wgmma ones run", "gpu", gpu, "why", wrong[false])
	case hasWgmma && !run:
		how := "(correct, slower)"
		if unchecked != "" {
			how = "(slower; unproven, above)"
		}
		slog.Warn("cuda: the wgmma GEMMs failed their check on this GPU; the bf16 GEMMs run on the mma.sync kernels "+how,
			"gpu", gpu, "why", wrong[true])
		return wrong[true], unchecked, nil, nil
	}
	return "", unchecked, nil, nil
}

// newGEMMChecker draws the problem and puts it on the device; close frees
// it.
func (d *Device) newGEMMChecker() (*gemmChecker, error) {
	g := &gemmChecker{d: d, pr: newCheckProblem()}
	var measure arena
	carveCheckBufs(&measure)
	var err error
	if g.base, err = d.alloc(measure.off); err != nil {
		return nil, d.oom(err, measure.off, "the check of the bf16 GEMMs", "", "")
	}
	g.bufs = carveCheckBufs(&arena{base: g.base})
	aKM, bNK := transposeBits(g.pr.a, checkM, checkK), transposeBits(g.pr.b, checkK, checkN)
	if err := errors.Join(upload(d, g.bufs.aMK, g.pr.a), upload(d, g.bufs.aKM, aKM), upload(d, g.bufs.bKN, g.pr.b),
		upload(d, g.bufs.bNK, bNK), upload(d, g.bufs.bias, g.pr.bias)); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

func (g *gemmChecker) close() { g.d.free(g.base) }

// check runs cs on the device's current path and says why its outputs
// are wrong, or "" where they are right. A kernel that cannot start
// (launchError, the context sound after it) is an answer ("... failed:
// ...", refused); err is an error of the device: a kernel's fault
// (driver.IsKernelFault), which took the context with it, or a copy, an
// allocation or a launch that failed otherwise.
func (g *gemmChecker) check(cs checkCase) (why string, refused bool, err error) {
	d := g.d
	sms := d.tc.sms
	if cs.blocks > 0 {
		d.tc.sms = cs.blocks
	}
	out, err := g.run(cs)
	d.tc.sms = sms
	var launch launchError
	switch {
	case err == nil:
	case d.drv.IsKernelFault(err):
		way := "DINOCLIP_CUDA_KERNELS=ptx, which never runs a wgmma kernel"
		if d.tc.wgmma {
			gemmVerdict.wgmmaLost = cs.String()
		} else {
			way = "--precision fp32, whose GEMMs use no tensor cores"
		}
		return "", false, fmt.Errorf("cuda: the bf16 GEMM %s (%s) failed on this GPU and took the CUDA context with it (%w); run with %s",
			cs, pathName(d.tc.wgmma), err, way)
	case errors.As(err, &launch) && d.drv.Sync() == nil:
		return fmt.Sprintf("%s failed: %v", cs, err), true, nil
	default:
		// A copy or an allocation, or what earlier work left to a
		// launch, not the kernel: no verdict.
		return "", false, fmt.Errorf("cuda: checking the bf16 GEMM %s (%s): %w", cs, pathName(d.tc.wgmma), err)
	}
	if why := g.pr.disagree(cs, out); why != "" {
		return fmt.Sprintf("%s: %s", cs, why), false, nil
	}
	return "", false, nil
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
		bias: randn(rng, checkN, 1), old: randn(rng, checkM*checkN, 1),
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
	s := gemmKinds[cs.kind].name
	if cs.splits > 1 {
		s += fmt.Sprintf(" in %d splits", cs.splits)
	}
	if cs.blocks == 0 {
		s += " on every multiprocessor"
	}
	return s
}

func carveCheckBufs(a *arena) checkBufs {
	const mn = checkM * checkN
	return checkBufs{
		aMK: carve[uint16](a, checkM*checkK), aKM: carve[uint16](a, checkK*checkM),
		bKN: carve[uint16](a, checkK*checkN), bNK: carve[uint16](a, checkN*checkK),
		bias: carve[float32](a, checkN),
		c32:  carve[float32](a, mn+checkCanary), parts: carve[float32](a, checkMaxSplits*mn+checkCanary),
		stats: carve[float32](a, checkM*statsTiles(checkN)*3+checkCanary),
		c16:   carve[uint16](a, mn+checkCanary), act: carve[uint16](a, mn+checkCanary),
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

// randn is n normal values of standard deviation scale.
func randn(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale * rng.NormFloat64())
	}
	return v
}

// run runs cs on the device's current path, every output buffer filled
// with NaN first (nnF32Add's C with the old C, then NaN), and returns the
// outputs; a canary no longer NaN is an output written past its end,
// which out.overrun names.
func (g *gemmChecker) run(cs checkCase) (out checkOutput, err error) {
	d, bufs, kind := g.d, g.bufs, gemmKinds[cs.kind]
	const mn = checkM * checkN
	nan32 := make([]float32, checkMaxSplits*mn+checkCanary)
	for i := range nan32 {
		nan32[i] = float32(math.NaN())
	}
	nan16 := make([]uint16, mn+checkCanary)
	for i := range nan16 {
		nan16[i] = nanBF16Bits
	}
	c32 := nan32[:bufs.c32.n]
	if cs.kind == nnF32Add {
		c32 = append(slices.Clone(g.pr.old), nan32[:checkCanary]...)
	}
	if err := errors.Join(upload(d, bufs.c16, nan16), upload(d, bufs.act, nan16), upload(d, bufs.parts, nan32),
		upload(d, bufs.stats, nan32[:bufs.stats.n]), upload(d, bufs.c32, c32)); err != nil {
		return checkOutput{}, err
	}
	// Each output as the GEMM sees it, without its canary.
	bf16C := cs.kind == ntGELUBF16 || cs.kind == ntBF16Stats
	c := outOf(bufs.c32.at(0, mn))
	if bf16C {
		c = outOf(bufs.c16.at(0, mn))
	}
	var second gemmOut
	switch kind.second {
	case secondStats:
		second = outOf(bufs.stats.at(0, bufs.stats.n-checkCanary))
	case secondAct:
		second = outOf(bufs.act.at(0, mn))
	}
	var bias buf[float32]
	if kind.bias {
		bias = bufs.bias
	}
	a, b := bufs.aMK, bufs.bNK
	switch {
	case kind.aMN:
		a, b = bufs.aKM, bufs.bKN
	case kind.bMN:
		b = bufs.bKN
	}
	if cs.splits > 1 {
		err = d.gemmBF16TNSplit(bufs.c32.at(0, mn), a, b, checkM, checkN, checkK, bufs.parts.at(0, cs.splits*mn), cs.splits)
	} else {
		err = d.gemmBF16Split(cs.kind, c, second, a, b, bias, checkM, checkN, checkK, 1)
	}
	if err != nil {
		return checkOutput{}, err
	}
	if out.c, err = fetchValues(d, c, bf16C); err != nil {
		return checkOutput{}, err
	}
	if second.p != 0 {
		if out.second, err = fetchValues(d, second, kind.second == secondAct); err != nil {
			return checkOutput{}, err
		}
	}
	out.overrun, err = g.overrun()
	return out, err
}

// nanBF16Bits is the bf16 NaN the check fills its outputs with.
const nanBF16Bits = 0x7fc0

// overrun names the first output buffer whose canary is no longer NaN, or
// "".
func (g *gemmChecker) overrun() (string, error) {
	for _, o := range []struct {
		name string
		b    buf[float32]
	}{{"C (f32)", g.bufs.c32}, {"the split products", g.bufs.parts}, {"the statistics", g.bufs.stats}} {
		tail := make([]float32, checkCanary)
		if err := download(g.d, tail, o.b.at(o.b.n-checkCanary, checkCanary)); err != nil {
			return "", err
		}
		for i, v := range tail {
			if math.Float32bits(v) != math.Float32bits(float32(math.NaN())) {
				return fmt.Sprintf("%s written %d past its end", o.name, i), nil
			}
		}
	}
	for _, o := range []struct {
		name string
		b    buf[uint16]
	}{{"C (bf16)", g.bufs.c16}, {"act", g.bufs.act}} {
		tail := make([]uint16, checkCanary)
		if err := download(g.d, tail, o.b.at(o.b.n-checkCanary, checkCanary)); err != nil {
			return "", err
		}
		for i, v := range tail {
			if v != nanBF16Bits {
				return fmt.Sprintf("%s written %d past its end", o.name, i), nil
			}
		}
	}
	return "", nil
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
// rounding allow, or that the kernel wrote past an output's end, or ""
// where neither.
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
	if out.overrun != "" {
		return out.overrun
	}
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
			tol := f32SumBound(checkK+1, s)
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

// f32SumBound bounds how far an f32 sum of terms exact products (bf16
// operands' products are exact in f32), whose magnitudes sum to s, is from
// the exact sum: terms 2^-23 s, twice the rounding bound, so that a
// tensor core that truncates its partial sums passes as one that rounds.
func f32SumBound(terms int, s float64) float64 { return float64(terms) * math.Ldexp(s, -23) }

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
// tile), disagree with float64 statistics of c [rows, cols] beyond
// tileStats's bounds, or "" where they agree.
func tileStatsDisagree(c, stats []float64, rows, cols int) string {
	tiles := statsTiles(cols)
	for i := range rows {
		for tl := range tiles {
			vals := c[i*cols+tl*statsTile : i*cols+min(cols, (tl+1)*statsTile)]
			mean, m2, tolMean, tolM2 := tileStats(vals)
			got := stats[(i*tiles+tl)*3:][:3]
			if got[0] != float64(len(vals)) || !(math.Abs(got[1]-mean) <= tolMean) || !(math.Abs(got[2]-m2) <= tolM2) {
				return fmt.Sprintf("statistics of row %d, column tile %d: (count, mean, M2) = (%v, %v, %v), of its C (%d, %v, %v)",
					i, tl, got[0], got[1], got[2], len(vals), mean, m2)
			}
		}
	}
	return ""
}

// tileStats is the float64 mean and M2 (the sum of squared deviations) of
// vals, one row of C in one statistics tile, and how far an epilogue's
// f32 statistics of them may be from these: the mean within 2^-19 A and
// M2 within 2^-19 (M2 + 3 n A^2), A the largest |value| and n the tile's
// 64 columns, as TestGemmBF16FusedEpilogues derives for the f32 merges.
func tileStats[F float32 | float64](vals []F) (mean, m2, tolMean, tolM2 float64) {
	var big float64
	for _, v := range vals {
		mean += float64(v)
		big = max(big, math.Abs(float64(v)))
	}
	mean /= float64(len(vals))
	for _, v := range vals {
		m2 += (float64(v) - mean) * (float64(v) - mean)
	}
	return mean, m2, math.Ldexp(big, -19), math.Ldexp(m2+3*statsTile*big*big, -19)
}
