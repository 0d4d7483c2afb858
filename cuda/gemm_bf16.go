//go:build cuda

package cuda

import (
	"fmt"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/kernels"
)

// The launcher of kernels/gemm_bf16.cu, bf16 row-major operands
// accumulating in f32, in its three layouts:
//
//	nt (forward):       C[M,N] = epilogue(A[M,K] W[N,K]^T + bias)
//	nn (data gradient): C[M,N] (+)= A[M,K] B[K,N] (f32 or f32_add epilogue)
//	tn (weight grad.):  C[M,N] = A[K,M]^T B[K,N]  (K = batch)
//
// On a device that loaded the sm_90a cubins it runs the persistent
// wgmma+TMA kernels (gemm_bf16_{nt,nn,tn}_*), on any other the mma.sync
// fallback (gemm_bf16_{nt,nn,tn}_mma_*): the PTX build of the wgmma kernels
// traps, and the sm_90a build runs only where the cubins load. The
// geometry below is the kernels' (see the file's comment).
const (
	gemmBF16Tile         = 128                             // GEMM_BF16_BM = GEMM_BF16_BN
	gemmBF16BoxK         = 64                              // GEMM_BF16_BK: the TMA box's inner size
	gemmBF16BoxMN        = 64                              // an MN-major operand's box: 64 columns of 64 K rows
	gemmBF16Threads      = 384                             // GEMM_BF16_THREADS: producer + 2 consumer warpgroups
	gemmBF16MmaThreads   = 256                             // GEMM_BF16_MMA_THREADS
	gemmBF16Smem         = 4*2*128*64*2 + (2*4+2)*8 + 1024 // GEMM_BF16_SMEM: 4 stages of A and W chunks, 10 mbarriers, 1024-byte alignment slack
	gemmBF16KMultiple    = 8                               // rows of 2K bytes must be 16-byte aligned
	gemmBF16AlignOperand = 16                              // TMA bases and cp.async sources
)

// gemmBF16MmaSmem is GEMM_BF16_MMA_SMEM(a_mn, b_mn): 3 stages of a chunk
// of each operand, a K-major chunk 128 rows of 40 padded elements, an
// MN-major one 32 K rows of 136.
func gemmBF16MmaSmem(aMN, bMN bool) int {
	elems := func(mn bool) int {
		if mn {
			return 32 * 136
		}
		return 128 * 40
	}
	return 3 * (elems(aMN) + elems(bMN)) * 2
}

// gemmKind is one of gemm_bf16.cu's entry-point pairs: a layout and an
// epilogue.
type gemmKind int

const (
	ntF32       gemmKind = iota // nt, C f32 (+ bias)
	ntGELUBF16                  // nt, C bf16 of GELU(sum + bias)
	ntF32Stats                  // nt, C f32 (+ bias) and its row statistics
	ntF32GELU                   // nt, C f32 (+ bias) and act bf16 of GELU(C)
	ntBF16Stats                 // nt, C bf16 (+ bias) and the row statistics of its rounded values
	ntF32BF16                   // nt, C f32 (+ bias) and act bf16 of C
	nnF32                       // nn, C f32 (overwritten)
	nnF32Add                    // nn, C f32 += the sum
	tnF32                       // tn, C f32 (overwritten)
)

// gemmSecond is what an epilogue writes besides C.
type gemmSecond int

const (
	noSecond    gemmSecond = iota
	secondStats            // stats [M, statsTiles(N), 3] f32: ln_apply's row statistics of C
	secondAct              // act [M, N] bf16: GELU(C) or C, by the kind
)

// gemmKinds describes each kind: its entry points on the wgmma and the
// mma.sync path, which operands are MN-major (A [K, M] or B [K, N]; else
// A [M, K], B [N, K]), whether it takes a bias, C's alignment (the nt
// epilogue stores column pairs; the nn and tn ones need 8 bytes) and its
// second output.
var gemmKinds = [...]struct {
	name       string
	wgmma, mma launch.Kernel
	aMN, bMN   bool
	bias       bool
	cAlign     uintptr
	second     gemmSecond
}{
	ntF32:       {"gemm_bf16_nt_f32", launch.KGemmBf16NtF32, launch.KGemmBf16NtMmaF32, false, false, true, 8, noSecond},
	ntGELUBF16:  {"gemm_bf16_nt_gelu_bf16", launch.KGemmBf16NtGeluBf16, launch.KGemmBf16NtMmaGeluBf16, false, false, true, 4, noSecond},
	ntF32Stats:  {"gemm_bf16_nt_f32_stats", launch.KGemmBf16NtF32Stats, launch.KGemmBf16NtMmaF32Stats, false, false, true, 8, secondStats},
	ntF32GELU:   {"gemm_bf16_nt_f32_gelu_bf16", launch.KGemmBf16NtF32GeluBf16, launch.KGemmBf16NtMmaF32GeluBf16, false, false, true, 8, secondAct},
	ntBF16Stats: {"gemm_bf16_nt_bf16_stats", launch.KGemmBf16NtBf16Stats, launch.KGemmBf16NtMmaBf16Stats, false, false, true, 4, secondStats},
	ntF32BF16:   {"gemm_bf16_nt_f32_bf16", launch.KGemmBf16NtF32Bf16, launch.KGemmBf16NtMmaF32Bf16, false, false, true, 8, secondAct},
	nnF32:       {"gemm_bf16_nn_f32", launch.KGemmBf16NnF32, launch.KGemmBf16NnMmaF32, false, true, false, 8, noSecond},
	nnF32Add:    {"gemm_bf16_nn_f32_add", launch.KGemmBf16NnF32Add, launch.KGemmBf16NnMmaF32Add, false, true, false, 8, noSecond},
	tnF32:       {"gemm_bf16_tn_f32", launch.KGemmBf16TnF32, launch.KGemmBf16TnMmaF32, true, true, false, 8, noSecond},
}

// gemmOut is an output buffer of a GEMM: its address and its length in
// elements.
type gemmOut struct {
	p uintptr
	n int
}

func outOf[T any](b buf[T]) gemmOut { return gemmOut{b.p, b.n} }

func (g gemmKind) String() string { return gemmKinds[g].name }

// tensorCores is the device's state for the tensor-core kernels, set up at
// Open from the driver: which path they take, the multiprocessor count,
// the kernels whose dynamic shared memory limit is raised, and the tensor
// maps encoded so far.
type tensorCores struct {
	ext   driver.Extended // nil when the driver lacks the extended calls
	wgmma bool            // the loaded kernels are the sm_90a cubins
	sms   int
	// raised holds the dynamic shared memory each kernel has been allowed
	// through SetMaxDynamicShared (raiseShared).
	raised map[launch.Kernel]int
	// checked says checkBF16GEMMs has passed; fallback, why the wgmma
	// kernels failed it, if they did (the device then runs the mma.sync
	// ones); unchecked, why the kernels that run failed it, where
	// DINOCLIP_CUDA_CHECK=warn runs them anyway.
	checked   bool
	fallback  string
	unchecked string
	// maps caches the tensor map of each operand (base, shape, major): a
	// map is a pure function of them, so an entry stays right until the
	// memory is freed (Device.free clears the cache; a reused address
	// with the same shape would get the same map anyway).
	maps map[tensorMapKey]driver.TensorMap
}

type tensorMapKey struct {
	base       uintptr
	rows, cols int
	mn         bool
}

// initTensorCores reads the driver's path and multiprocessor count (on the
// worker thread, at Open).
func (d *Device) initTensorCores() {
	tc := tensorCores{raised: map[launch.Kernel]int{}, maps: map[tensorMapKey]driver.TensorMap{}}
	if ext, ok := d.drv.(driver.Extended); ok {
		tc.ext, tc.wgmma, tc.sms = ext, ext.KernelPath() == kernels.SM90a.Key, ext.Multiprocessors()
	}
	d.tc = tc
}

// operandMap returns the tensor map of a bf16 operand [rows, cols] at p:
// dims {cols, rows}, row stride 2 cols bytes, 128-byte swizzle, zero fill,
// and the box gemm_bf16.cu's loads want: {64, 128} for a K-major operand
// (cols = K), {64, 64} for an MN-major one (rows = K).
func (d *Device) operandMap(p uintptr, rows, cols int, mn bool) (driver.TensorMap, error) {
	key := tensorMapKey{p, rows, cols, mn}
	if m, ok := d.tc.maps[key]; ok {
		return m, nil
	}
	box := []uint32{gemmBF16BoxK, gemmBF16Tile}
	if mn {
		box = []uint32{gemmBF16BoxMN, gemmBF16BoxK}
	}
	m, err := d.tc.ext.EncodeTensorMap(driver.TensorMapSpec{DataType: driver.TensorBFloat16, Base: p,
		Dims: []uint64{uint64(cols), uint64(rows)}, Strides: []uint64{uint64(2 * cols)},
		Box: box, Swizzle: driver.Swizzle128B})
	if err != nil {
		return driver.TensorMap{}, launchError{fmt.Errorf("cuda: tensor map of a bf16 operand [%d, %d]: %w", rows, cols, err)}
	}
	d.tc.maps[key] = m
	return m, nil
}

// raiseShared allows kernel k bytes of dynamic shared memory (once for
// each larger figure).
func (d *Device) raiseShared(k launch.Kernel, bytes int) error {
	if d.tc.raised[k] >= bytes {
		return nil
	}
	if err := d.tc.ext.SetMaxDynamicShared(int(k), bytes); err != nil {
		return launchError{fmt.Errorf("cuda: %s: %w", k, err)}
	}
	d.tc.raised[k] = bytes
	return nil
}

// gemmBF16F32 launches c[m,n] = a[m,k] w[n,k]^T + bias (f32 out); a null
// bias adds none.
func (d *Device) gemmBF16F32(c buf[float32], a, w buf[uint16], bias buf[float32], m, n, k int) error {
	return d.gemmBF16(ntF32, outOf(c), gemmOut{}, a, w, bias, m, n, k)
}

// gemmBF16F32Stats launches c[m,n] = a[m,k] w[n,k]^T + bias (f32 out) and
// the row statistics of c, stats [m, statsTiles(n), 3]: the (count, mean,
// M2) of each row's stored values in each 64-column tile, the layout
// gemm_nt_bias_stats writes and ln_apply merges.
func (d *Device) gemmBF16F32Stats(c, stats buf[float32], a, w buf[uint16], bias buf[float32], m, n, k int) error {
	return d.gemmBF16(ntF32Stats, outOf(c), outOf(stats), a, w, bias, m, n, k)
}

// gemmBF16BF16Stats launches c[m,n] = bf16(a[m,k] w[n,k]^T + bias) and the
// row statistics of the rounded c, as gemmBF16F32Stats's.
func (d *Device) gemmBF16BF16Stats(c buf[uint16], stats buf[float32], a, w buf[uint16], bias buf[float32], m, n, k int) error {
	return d.gemmBF16(ntBF16Stats, outOf(c), outOf(stats), a, w, bias, m, n, k)
}

// gemmBF16F32Act launches c[m,n] = a[m,k] w[n,k]^T + bias (f32 out) and
// its bf16 copy act[m,n]: of GELU(c) for ntF32GELU (GELU in f32 of the
// stored c, common.cuh's gelu_f), of c for ntF32BF16.
func (d *Device) gemmBF16F32Act(kind gemmKind, c buf[float32], act buf[uint16], a, w buf[uint16], bias buf[float32], m, n, k int) error {
	if kind != ntF32GELU && kind != ntF32BF16 {
		return fmt.Errorf("cuda: gemmBF16F32Act with %s", kind)
	}
	return d.gemmBF16(kind, outOf(c), outOf(act), a, w, bias, m, n, k)
}

// gemmBF16GELU launches c[m,n] = bf16(GELU(a[m,k] w[n,k]^T + bias)).
func (d *Device) gemmBF16GELU(c buf[uint16], a, w buf[uint16], bias buf[float32], m, n, k int) error {
	return d.gemmBF16(ntGELUBF16, outOf(c), gemmOut{}, a, w, bias, m, n, k)
}

// gemmBF16NN launches c[m,n] = a[m,k] b[k,n], or c[m,n] += a[m,k] b[k,n]
// when accumulate.
func (d *Device) gemmBF16NN(c buf[float32], a, b buf[uint16], m, n, k int, accumulate bool) error {
	kind := nnF32
	if accumulate {
		kind = nnF32Add
	}
	return d.gemmBF16(kind, outOf(c), gemmOut{}, a, b, buf[float32]{}, m, n, k)
}

// gemmBF16TN launches c[m,n] = a[k,m]^T b[k,n], split along K
// (tnSplits) when parts, scratch for the splits' partial products, holds
// at least two of them; null parts never splits.
func (d *Device) gemmBF16TN(c buf[float32], a, b buf[uint16], m, n, k int, parts buf[float32]) error {
	splits := 1
	if m > 0 && n > 0 {
		splits = min(d.tnSplits(m, n, k), parts.n/(m*n))
	}
	return d.gemmBF16TNSplit(c, a, b, m, n, k, parts, splits)
}

// gemmBF16TNSplit is gemmBF16TN in splits (at least 1): the splits'
// products into parts [splits, m, n], then their sum into c.
func (d *Device) gemmBF16TNSplit(c buf[float32], a, b buf[uint16], m, n, k int, parts buf[float32], splits int) error {
	if splits <= 1 {
		return d.gemmBF16Split(tnF32, outOf(c), gemmOut{}, a, b, buf[float32]{}, m, n, k, 1)
	}
	const what = "gemm_bf16_splitk_sum"
	if err := dims(what, m*n); err != nil {
		return err
	}
	if err := needAll(what, req("C", c, m*n)); err != nil {
		return err
	}
	if err := d.gemmBF16Split(tnF32, outOf(parts), gemmOut{}, a, b, buf[float32]{}, m, n, k, splits); err != nil {
		return err
	}
	// Described at the GEMM's shape, so that the bench counts the sum's
	// time in the GEMM's (bench/compare.py's gemm_rows): it reads the
	// splits' slices and writes C.
	w := gemmWork(m, n, k)
	w.flops, w.bytes = 0, 4*float64(m*n)*float64(splits+1)
	return launch.GemmBf16SplitkSum(d.with(w), grid(elementGrid(m*n), 1), c.ptr(), parts.cptr(), int32(splits), int32(m*n))
}

// gemmMaxSplits bounds a split-K product's splits, and gemmMinSplitChunks
// is the fewest K chunks (of 64) a split takes: below that a split's
// pipeline fill and its slice's write and read cost more than the waves
// it saves.
const (
	gemmMaxSplits      = 8
	gemmMinSplitChunks = 4
)

// tnSplits is how many K splits the weight-gradient GEMM c[m,n] of depth
// k runs in: the number, up to gemmMaxSplits with at least
// gemmMinSplitChunks chunks each, that needs the fewest rounds of the
// multiprocessors per unit of work (ceil(tiles s / sms) / s; the smallest
// such s), so that an output of few tiles still fills the GPU (the
// model's last Linear: [512, 1024] is 32 tiles for 132 multiprocessors,
// a quarter of the GPU unsplit; split 4, 128 tiles). The sum of the
// slices is in f32 in split order: a function of the shape and the
// multiprocessor count.
func (d *Device) tnSplits(m, n, k int) int {
	tiles := ceilDiv(m, gemmBF16Tile) * ceilDiv(n, gemmBF16Tile)
	chunks := ceilDiv(k, gemmBF16BoxK)
	sms := max(1, d.tc.sms)
	best, bestCost := 1, float64(ceilDiv(tiles, sms))
	for s := 2; s <= gemmMaxSplits && chunks/s >= gemmMinSplitChunks; s++ {
		if cost := float64(ceilDiv(tiles*s, sms)) / float64(s); cost < bestCost {
			best, bestCost = s, cost
		}
	}
	return best
}

// gemmBF16 checks and launches a GEMM of kind on the device's path: C at
// c, the second output (gemmKinds[kind].second; none is the zero gemmOut)
// at second, operands a and b as gemmKinds[kind] lays them out.
func (d *Device) gemmBF16(kind gemmKind, c, second gemmOut, a, b buf[uint16], bias buf[float32], m, n, k int) error {
	return d.gemmBF16Split(kind, c, second, a, b, bias, m, n, k, 1)
}

// gemmBF16Split is gemmBF16 in splits along K (tnF32 only; splits > 1
// writes the splits' products to c, [splits, m, n]).
func (d *Device) gemmBF16Split(kind gemmKind, c, second gemmOut, a, b buf[uint16], bias buf[float32], m, n, k, splits int) error {
	if splits < 1 || splits > 1 && kind != tnF32 {
		return fmt.Errorf("cuda: %s in %d splits", kind, splits)
	}
	if err := d.checkGemmBF16(kind, c, second, a, b, bias, m, n, k, splits); err != nil {
		return err
	}
	g := gemmKinds[kind]
	// Each operand's shape as stored, [rows, cols].
	aRows, aCols, bRows, bCols := m, k, n, k
	if g.aMN {
		aRows, aCols = k, m
	}
	if g.bMN {
		bRows, bCols = k, n
	}
	l := d.with(gemmWork(m, n, k))
	M, N, K := int32(m), int32(n), int32(k)
	if !d.tc.wgmma {
		smem := gemmBF16MmaSmem(g.aMN, g.bMN)
		if err := d.raiseShared(g.mma, smem); err != nil {
			return err
		}
		cfg := driver.LaunchConfig{Grid: [3]int{ceilDiv(n, gemmBF16Tile), ceilDiv(m, gemmBF16Tile), splits},
			Block: [3]int{gemmBF16MmaThreads, 1, 1}, SharedBytes: smem}
		pa, pb := a.cptr(), b.cptr()
		switch kind {
		case ntF32:
			return launch.GemmBf16NtMmaF32(l, cfg, pa, pb, bias.cptr(), launch.Ptr[float32](c.p), M, N, K)
		case ntGELUBF16:
			return launch.GemmBf16NtMmaGeluBf16(l, cfg, pa, pb, bias.cptr(), launch.Ptr[uint16](c.p), M, N, K)
		case ntF32Stats:
			return launch.GemmBf16NtMmaF32Stats(l, cfg, pa, pb, bias.cptr(), launch.Ptr[float32](c.p), launch.Ptr[float32](second.p), M, N, K)
		case ntF32GELU:
			return launch.GemmBf16NtMmaF32GeluBf16(l, cfg, pa, pb, bias.cptr(), launch.Ptr[float32](c.p), launch.Ptr[uint16](second.p), M, N, K)
		case ntBF16Stats:
			return launch.GemmBf16NtMmaBf16Stats(l, cfg, pa, pb, bias.cptr(), launch.Ptr[uint16](c.p), launch.Ptr[float32](second.p), M, N, K)
		case ntF32BF16:
			return launch.GemmBf16NtMmaF32Bf16(l, cfg, pa, pb, bias.cptr(), launch.Ptr[float32](c.p), launch.Ptr[uint16](second.p), M, N, K)
		case nnF32:
			return launch.GemmBf16NnMmaF32(l, cfg, pa, pb, launch.Ptr[float32](c.p), M, N, K)
		case nnF32Add:
			return launch.GemmBf16NnMmaF32Add(l, cfg, pa, pb, launch.Ptr[float32](c.p), M, N, K)
		default:
			return launch.GemmBf16TnMmaF32(l, cfg, pa, pb, launch.Ptr[float32](c.p), M, N, K, int32(splits))
		}
	}
	if err := d.raiseShared(g.wgmma, gemmBF16Smem); err != nil {
		return err
	}
	ma, err := d.operandMap(a.p, aRows, aCols, g.aMN)
	if err != nil {
		return err
	}
	mb, err := d.operandMap(b.p, bRows, bCols, g.bMN)
	if err != nil {
		return err
	}
	// Persistent blocks: one per multiprocessor, or one per tile when
	// there are fewer tiles.
	units := ceilDiv(m, gemmBF16Tile) * ceilDiv(n, gemmBF16Tile) * splits
	cfg := driver.LaunchConfig{Grid: [3]int{max(1, min(d.tc.sms, units)), 1, 1}, Block: [3]int{gemmBF16Threads, 1, 1}, SharedBytes: gemmBF16Smem}
	switch kind {
	case ntF32:
		return launch.GemmBf16NtF32(l, cfg, ma, mb, bias.cptr(), launch.Ptr[float32](c.p), M, N, K)
	case ntGELUBF16:
		return launch.GemmBf16NtGeluBf16(l, cfg, ma, mb, bias.cptr(), launch.Ptr[uint16](c.p), M, N, K)
	case ntF32Stats:
		return launch.GemmBf16NtF32Stats(l, cfg, ma, mb, bias.cptr(), launch.Ptr[float32](c.p), launch.Ptr[float32](second.p), M, N, K)
	case ntF32GELU:
		return launch.GemmBf16NtF32GeluBf16(l, cfg, ma, mb, bias.cptr(), launch.Ptr[float32](c.p), launch.Ptr[uint16](second.p), M, N, K)
	case ntBF16Stats:
		return launch.GemmBf16NtBf16Stats(l, cfg, ma, mb, bias.cptr(), launch.Ptr[uint16](c.p), launch.Ptr[float32](second.p), M, N, K)
	case ntF32BF16:
		return launch.GemmBf16NtF32Bf16(l, cfg, ma, mb, bias.cptr(), launch.Ptr[float32](c.p), launch.Ptr[uint16](second.p), M, N, K)
	case nnF32:
		return launch.GemmBf16NnF32(l, cfg, ma, mb, launch.Ptr[float32](c.p), M, N, K)
	case nnF32Add:
		return launch.GemmBf16NnF32Add(l, cfg, ma, mb, launch.Ptr[float32](c.p), M, N, K)
	default:
		return launch.GemmBf16TnF32(l, cfg, ma, mb, launch.Ptr[float32](c.p), M, N, K, int32(splits))
	}
}

// checkGemmBF16 checks the shapes, the buffers and their alignment: each
// operand's stored rows must be multiples of 8 elements (K for a K-major
// operand, M or N for an MN-major one), as the TMA's row strides and
// cp.async's 16-byte copies need.
func (d *Device) checkGemmBF16(kind gemmKind, c, second gemmOut, a, b buf[uint16], bias buf[float32], m, n, k, splits int) error {
	g := gemmKinds[kind]
	what := g.name
	if d.tc.ext == nil {
		return fmt.Errorf("cuda: %s needs the driver's extended launch calls, which this driver lacks", what)
	}
	if err := dims(what, m, n, k); err != nil {
		return err
	}
	rowLens := []struct {
		op, dim string
		n       int
	}{{"A", "K", k}, {"B", "K", k}}
	if g.aMN {
		rowLens[0].dim, rowLens[0].n = "M", m
	}
	if g.bMN {
		rowLens[1].dim, rowLens[1].n = "N", n
	}
	for _, r := range rowLens {
		if r.n%gemmBF16KMultiple != 0 {
			return fmt.Errorf("cuda: %s: %s = %d is not a multiple of %d (%s's bf16 rows must be 16-byte aligned)", what, r.dim, r.n, gemmBF16KMultiple, r.op)
		}
	}
	rs := []required{{"C", c.p, c.n, m * n * splits}, req("A", a, m*k), req("B", b, n*k)}
	// The second output's name, length and alignment (stats: f32 values;
	// act: bf16 column pairs).
	switch g.second {
	case secondStats:
		rs = append(rs, required{"stats", second.p, second.n, m * statsTiles(n) * 3})
	case secondAct:
		rs = append(rs, required{"act", second.p, second.n, m * n})
	default:
		if second.p != 0 {
			return fmt.Errorf("cuda: %s writes no second output", what)
		}
	}
	if bias.p != 0 {
		if !g.bias {
			return fmt.Errorf("cuda: %s takes no bias", what)
		}
		rs = append(rs, req("bias", bias, n))
	}
	if err := needAll(what, rs...); err != nil {
		return err
	}
	if a.p%gemmBF16AlignOperand != 0 || b.p%gemmBF16AlignOperand != 0 {
		return fmt.Errorf("cuda: %s: operands at %#x and %#x, both must be %d-byte aligned", what, a.p, b.p, gemmBF16AlignOperand)
	}
	if c.p%g.cAlign != 0 {
		return fmt.Errorf("cuda: %s: C at %#x is not %d-byte aligned", what, c.p, g.cAlign)
	}
	if second.p%4 != 0 {
		return fmt.Errorf("cuda: %s: its second output at %#x is not 4-byte aligned", what, second.p)
	}
	if splits > maxGridY {
		return fmt.Errorf("cuda: %s: %d splits exceed the grid", what, splits)
	}
	if rowTiles := ceilDiv(m, gemmBF16Tile); !d.tc.wgmma && rowTiles > maxGridY {
		return fmt.Errorf("cuda: %s: %d rows exceed the grid (at most %d)", what, m, maxGridY*gemmBF16Tile)
	}
	return nil
}
