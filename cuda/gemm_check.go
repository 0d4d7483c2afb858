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

// The check of the wgmma GEMMs at a bf16 engine's open.
//
// The sm_90a kernels of gemm_bf16.cu (TMA copies into 128-byte-swizzled
// shared memory, wgmma operand descriptors, an mbarrier ring carried across
// persistent tiles) are proven in the host emulator, which implements
// those units as NVIDIA's documentation describes them, and by ptxas; only
// a Hopper GPU can prove that reading right. So before a bf16 engine's
// first step, checkWgmma runs every GEMM kind on both paths on one small
// problem, and where a wgmma kernel's output disagrees with the mma.sync
// kernel's (instructions every GPU since sm_80 has), or its launch fails,
// the device runs the mma.sync kernels from then on: slower, and right. It
// says so in a warning and in its description (Device.String, which train
// logs). It costs a few milliseconds, once per process.
//
// What it cannot turn into a fallback: a wgmma kernel that faults, or
// hangs on an mbarrier (whose wait traps after 10 s: tensorcore.cuh's
// MBAR_WAIT_LIMIT_NS), leaves the CUDA context unusable; the engine's open
// then fails, and its error names DINOCLIP_CUDA_KERNELS=ptx, which loads
// the portable kernels and never runs a wgmma one.

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

// wgmmaVerdict is the check's outcome for the process: every Device of a
// process opens the same GPU (the first one CUDA_VISIBLE_DEVICES leaves)
// with the same kernels, so an evaluation after a training in one process
// does not check again.
var wgmmaVerdict struct {
	sync.Mutex
	done     bool
	fallback string // as tensorCores.fallback
}

// checkWgmma runs the check on the first bf16 engine's device of the
// process (on the worker thread) and applies its verdict to every later
// one: where the wgmma kernels failed it, the device runs the mma.sync
// kernels and tc.fallback says why. Nothing runs where the device has no
// wgmma path. Its error is an error of the device itself.
func (d *Device) checkWgmma() error {
	if d.tc.checked || !d.tc.wgmma {
		return nil
	}
	d.tc.checked = true
	wgmmaVerdict.Lock()
	defer wgmmaVerdict.Unlock()
	if !wgmmaVerdict.done {
		if err := d.runWgmmaCheck(); err != nil {
			return err
		}
		wgmmaVerdict.done, wgmmaVerdict.fallback = true, d.tc.fallback
	} else if wgmmaVerdict.fallback != "" {
		d.tc.wgmma, d.tc.fallback = false, wgmmaVerdict.fallback
	}
	return nil
}

// runWgmmaCheck runs every check case on both paths and, where a wgmma
// kernel disagrees or fails to launch, moves the device to the mma.sync
// kernels (fallBackFromWgmma).
func (d *Device) runWgmmaCheck() error {
	sms := d.tc.sms
	d.tc.sms = checkBlocks
	defer func() { d.tc.sms = sms }()

	rng := rand.New(rand.NewPCG(1, 2)) // the same problem on every GPU
	a, b := bf16Values(rng, checkM*checkK), bf16Values(rng, checkK*checkN)
	bias, old := normals(rng, checkN), normals(rng, checkM*checkN)
	var measure arena
	carveCheckBufs(&measure)
	base, err := d.alloc(measure.off)
	if err != nil {
		return d.oom(err, measure.off, "the check of the wgmma GEMMs", "", "")
	}
	defer d.free(base)
	bufs := carveCheckBufs(&arena{base: base})
	aKM, bNK := make([]uint16, len(a)), make([]uint16, len(b))
	for i := range checkM {
		for p := range checkK {
			aKM[p*checkM+i] = a[i*checkK+p]
		}
	}
	for p := range checkK {
		for j := range checkN {
			bNK[j*checkK+p] = b[p*checkN+j]
		}
	}
	if err := errors.Join(upload(d, bufs.aMK, a), upload(d, bufs.aKM, aKM), upload(d, bufs.bKN, b),
		upload(d, bufs.bNK, bNK), upload(d, bufs.bias, bias)); err != nil {
		return err
	}
	// S[i][j] = sum_p |A[i][p] B[p][j]|, the scale of the tolerances.
	s := make([]float64, checkM*checkN)
	for i := range checkM {
		for p := range checkK {
			av := math.Abs(float64(leconv.BFloat16Value(a[i*checkK+p])))
			row := s[i*checkN : (i+1)*checkN]
			for j := range row {
				row[j] += av * math.Abs(float64(leconv.BFloat16Value(b[p*checkN+j])))
			}
		}
	}

	for _, cs := range checkCases {
		d.tc.wgmma = true
		wg, err := d.runCheckCase(bufs, cs, old)
		if err != nil {
			if d.drv.Sync() != nil {
				// The context is lost: nothing more can run on it.
				return fmt.Errorf("cuda: the wgmma GEMM %s failed on this GPU and took the CUDA context with it (%w); "+
					"run with DINOCLIP_CUDA_KERNELS=ptx, which never runs a wgmma kernel", gemmKinds[cs.kind].name, err)
			}
			d.fallBackFromWgmma(fmt.Sprintf("%s failed: %v", cs, err))
			return nil
		}
		d.tc.wgmma = false
		mma, err := d.runCheckCase(bufs, cs, old)
		if err != nil {
			return fmt.Errorf("cuda: checking the wgmma GEMMs against the mma.sync ones: %s on mma.sync: %w", cs, err)
		}
		if why := compareCheckCase(cs, wg, mma, s, bias, old); why != "" {
			d.fallBackFromWgmma(why)
			return nil
		}
		d.tc.wgmma = true
	}
	return nil
}

// fallBackFromWgmma moves the device to the mma.sync kernels for why.
func (d *Device) fallBackFromWgmma(why string) {
	d.tc.wgmma = false
	d.tc.fallback = why
	slog.Warn("cuda: the wgmma GEMMs failed their check on this GPU; the bf16 GEMMs run on the mma.sync kernels (correct, slower)",
		"gpu", d.drv.Name(), "why", why)
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

// compareCheckCase says where the wgmma outputs wg of cs disagree with the
// mma.sync ones, or "" where they agree. s is sum_p |A B|; bias and old
// are the other terms C may have.
//
// Tolerances: each path's f32 sum of the exact bf16 products, the bias and
// the old C errs by at most (K+1) 2^-23 S from the exact value (S the sum
// of the terms' magnitudes; the bound of TestGemmBF16Launcher, which
// allows a truncating tensor core), so two paths' f32 values differ by
// tau = 2 (K+1) 2^-23 S. A bf16-rounded output moves each by at most 2^-8
// of its value, so they differ by tau + 2^-6 of the larger (twice that
// with margin); a GELU of them by 1.13 tau (GELU's largest slope) plus the
// same, and 2^-126 for subnormal results. The statistics are checked
// against float64 statistics of the same path's stored C, as
// TestGemmBF16FusedEpilogues derives: the count exactly, the mean within
// 2^-19 A, M2 within 2^-19 (M2 + 3 n A^2), A the tile's largest |C|. What
// the check is for errs far more: a swizzle or descriptor read the wrong
// way, a fragment in the wrong row or column, a lost K chunk or phase move
// C by the size of the products themselves, about S / sqrt(K), 300 times
// tau here.
func compareCheckCase(cs checkCase, wg, mma checkOutput, s []float64, bias, old []float32) string {
	g := gemmKinds[cs.kind]
	tau := func(i, j int) float64 {
		t := s[i*checkN+j]
		if g.bias {
			t += math.Abs(float64(bias[j]))
		}
		if cs.kind == nnF32Add {
			t += math.Abs(float64(old[i*checkN+j]))
		}
		return 2 * float64(checkK+1) * math.Ldexp(t, -23)
	}
	type rule int
	const (
		f32 rule = iota
		bf16
		geluBF16
	)
	within := func(x, y, tau float64, r rule) bool {
		big := max(math.Abs(x), math.Abs(y))
		switch r {
		case bf16:
			tau += math.Ldexp(big, -6)
		case geluBF16:
			tau = 1.13*tau + math.Ldexp(big, -6) + math.Ldexp(1, -126)
		}
		return math.Abs(x-y) <= tau
	}
	elementwise := func(what string, x, y []float64, r rule) string {
		for i := range checkM {
			for j := range checkN {
				if k := i*checkN + j; !within(x[k], y[k], tau(i, j), r) {
					return fmt.Sprintf("%s: %s[%d][%d] is %v on wgmma, %v on mma.sync", cs, what, i, j, x[k], y[k])
				}
			}
		}
		return ""
	}
	cRule := map[gemmKind]rule{ntGELUBF16: geluBF16, ntBF16Stats: bf16}[cs.kind]
	if why := elementwise("C", wg.c, mma.c, cRule); why != "" {
		return why
	}
	switch {
	case g.second == secondAct:
		r := bf16
		if cs.kind == ntF32GELU {
			r = geluBF16
		}
		return elementwise("act", wg.second, mma.second, r)
	case g.second == secondStats:
		for _, p := range []struct {
			name string
			out  checkOutput
		}{{"wgmma", wg}, {"mma.sync", mma}} {
			if why := tileStatsDisagree(p.out.c, p.out.second, checkM, checkN); why != "" {
				return fmt.Sprintf("%s on %s: %s", cs, p.name, why)
			}
		}
	}
	return ""
}

// tileStatsDisagree says where stats, the row statistics of a GEMM
// epilogue ((count, mean, M2) of each row's stored C in each 64-column
// tile), disagree with float64 statistics of c [rows, cols], or "" where
// they agree, within compareCheckCase's bounds.
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
				return fmt.Sprintf("row %d, column tile %d: (count, mean, M2) = (%v, %v, %v), of its C (%d, %v, %v)",
					i, tl, got[0], got[1], got[2], len(vals), mean, m2)
			}
		}
	}
	return ""
}
