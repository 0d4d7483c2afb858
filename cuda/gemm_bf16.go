//go:build cuda

package cuda

import (
	"fmt"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/kernels"
)

// The launcher of kernels/gemm_bf16.cu: C[M,N] = epilogue(A[M,K] W[N,K]^T
// + bias), A and W bf16 row-major. On a device that loaded the sm_90a
// cubins it runs the persistent wgmma+TMA kernels (gemm_bf16_nt_*), on any
// other the mma.sync fallback (gemm_bf16_nt_mma_*): the PTX build of the
// wgmma kernels traps, and the sm_90a build runs only where the cubins
// load. The geometry below is the kernels' (see the file's comment).
const (
	gemmBF16Tile         = 128                         // GEMM_BF16_BM = GEMM_BF16_BN
	gemmBF16BoxK         = 64                          // GEMM_BF16_BK: the TMA box's inner size
	gemmBF16Threads      = 384                         // GEMM_BF16_THREADS: producer + 2 consumer warpgroups
	gemmBF16MmaThreads   = 256                         // GEMM_BF16_MMA_THREADS
	gemmBF16Smem         = 4*2*128*64*2 + 2*4*8 + 1024 // GEMM_BF16_SMEM: 4 stages of A and W chunks, 8 mbarriers, 1024-byte alignment slack
	gemmBF16MmaSmem      = 3 * (128 + 128) * 40 * 2    // GEMM_BF16_MMA_SMEM: 3 stages of 256 padded rows
	gemmBF16KMultiple    = 8                           // rows of 2K bytes must be 16-byte aligned
	gemmBF16AlignOperand = 16                          // TMA bases and cp.async sources
)

// gemmOut is a bf16 GEMM's epilogue.
type gemmOut int

const (
	outF32      gemmOut = iota // C f32
	outBF16                    // C bf16
	outGELUBF16                // C bf16 of GELU(sum)
)

func (o gemmOut) String() string {
	return [...]string{"f32", "bf16", "gelu_bf16"}[o]
}

// kernel is the entry point of epilogue o on the wgmma or mma.sync path.
func (o gemmOut) kernel(wgmma bool) launch.Kernel {
	if wgmma {
		return [...]launch.Kernel{launch.KGemmBf16NtF32, launch.KGemmBf16NtBf16, launch.KGemmBf16NtGeluBf16}[o]
	}
	return [...]launch.Kernel{launch.KGemmBf16NtMmaF32, launch.KGemmBf16NtMmaBf16, launch.KGemmBf16NtMmaGeluBf16}[o]
}

// tensorCores is the device's state for the tensor-core kernels, set up at
// Open from the driver: which path they take, the multiprocessor count,
// the kernels whose dynamic shared memory limit is raised, and the tensor
// maps encoded so far.
type tensorCores struct {
	ext   driver.Extended // nil when the driver lacks the extended calls
	wgmma bool            // the loaded kernels are the sm_90a cubins
	sms   int
	// raised holds the kernels allowed their dynamic shared memory.
	raised map[launch.Kernel]bool
	// maps caches the tensor map of each (base, rows, K) operand: a map is
	// a pure function of them, so an entry stays right until the memory
	// is freed (Device.free clears the cache; a reused address with the
	// same shape would get the same map anyway).
	maps map[tensorMapKey]driver.TensorMap
}

type tensorMapKey struct {
	base    uintptr
	rows, k int
}

// initTensorCores reads the driver's path and multiprocessor count (on the
// worker thread, at Open).
func (d *Device) initTensorCores() {
	tc := tensorCores{raised: map[launch.Kernel]bool{}, maps: map[tensorMapKey]driver.TensorMap{}}
	if ext, ok := d.drv.(driver.Extended); ok {
		tc.ext, tc.wgmma, tc.sms = ext, ext.KernelPath() == kernels.SM90a.Key, ext.Multiprocessors()
	}
	d.tc = tc
}

// operandMap returns the tensor map of a bf16 operand [rows, k] at p: dims
// {k, rows}, row stride 2k bytes, box {64, 128}, 128-byte swizzle, zero
// fill, as gemm_bf16.cu's loads want.
func (d *Device) operandMap(p uintptr, rows, k int) (driver.TensorMap, error) {
	key := tensorMapKey{p, rows, k}
	if m, ok := d.tc.maps[key]; ok {
		return m, nil
	}
	m, err := d.tc.ext.EncodeTensorMap(driver.TensorMapSpec{DataType: driver.TensorBFloat16, Base: p,
		Dims: []uint64{uint64(k), uint64(rows)}, Strides: []uint64{uint64(2 * k)},
		Box: []uint32{gemmBF16BoxK, gemmBF16Tile}, Swizzle: driver.Swizzle128B})
	if err != nil {
		return driver.TensorMap{}, fmt.Errorf("cuda: tensor map of a bf16 operand [%d, %d]: %w", rows, k, err)
	}
	d.tc.maps[key] = m
	return m, nil
}

// raiseShared allows kernel k its dynamic shared memory, once.
func (d *Device) raiseShared(k launch.Kernel, bytes int) error {
	if d.tc.raised[k] {
		return nil
	}
	if err := d.tc.ext.SetMaxDynamicShared(int(k), bytes); err != nil {
		return fmt.Errorf("cuda: %s: %w", k, err)
	}
	d.tc.raised[k] = true
	return nil
}

// gemmBF16F32 launches c[m,n] = a[m,k] w[n,k]^T + bias (f32 out); a null
// bias adds none.
func (d *Device) gemmBF16F32(c buf[float32], a, w buf[uint16], bias buf[float32], m, n, k int) error {
	if err := d.checkGemmBF16(outF32, c.p, c.n, 4, a, w, bias, m, n, k); err != nil {
		return err
	}
	return d.launchGemmBF16(outF32, c.p, a, w, bias, m, n, k)
}

// gemmBF16ToBF16 launches c[m,n] = bf16(a[m,k] w[n,k]^T + bias), or
// bf16(GELU(...)) when out is outGELUBF16.
func (d *Device) gemmBF16ToBF16(out gemmOut, c buf[uint16], a, w buf[uint16], bias buf[float32], m, n, k int) error {
	if out != outBF16 && out != outGELUBF16 {
		return fmt.Errorf("cuda: gemmBF16ToBF16 with epilogue %s", out)
	}
	if err := d.checkGemmBF16(out, c.p, c.n, 2, a, w, bias, m, n, k); err != nil {
		return err
	}
	return d.launchGemmBF16(out, c.p, a, w, bias, m, n, k)
}

// checkGemmBF16 checks the shapes, the buffers and their alignment.
func (d *Device) checkGemmBF16(out gemmOut, c uintptr, cLen, cElem int, a, w buf[uint16], bias buf[float32], m, n, k int) error {
	what := "gemm_bf16_nt_" + out.String()
	if d.tc.ext == nil {
		return fmt.Errorf("cuda: %s needs the driver's extended launch calls, which this driver lacks", what)
	}
	if err := dims(what, m, n, k); err != nil {
		return err
	}
	if k%gemmBF16KMultiple != 0 {
		return fmt.Errorf("cuda: %s: K = %d is not a multiple of %d (bf16 rows must be 16-byte aligned)", what, k, gemmBF16KMultiple)
	}
	rs := []required{{"C", c, cLen, m * n}, req("A", a, m*k), req("W", w, n*k)}
	if bias.p != 0 {
		rs = append(rs, req("bias", bias, n))
	}
	if err := needAll(what, rs...); err != nil {
		return err
	}
	if a.p%gemmBF16AlignOperand != 0 || w.p%gemmBF16AlignOperand != 0 {
		return fmt.Errorf("cuda: %s: operands at %#x and %#x, both must be %d-byte aligned", what, a.p, w.p, gemmBF16AlignOperand)
	}
	// The epilogue stores column pairs in one access when N is even.
	if c%uintptr(2*cElem) != 0 {
		return fmt.Errorf("cuda: %s: C at %#x is not %d-byte aligned", what, c, 2*cElem)
	}
	if rowTiles := ceilDiv(m, gemmBF16Tile); !d.tc.wgmma && rowTiles > maxGridY {
		return fmt.Errorf("cuda: %s: %d rows exceed the grid (at most %d)", what, m, maxGridY*gemmBF16Tile)
	}
	return nil
}

// launchGemmBF16 launches a checked bf16 GEMM on the device's path.
func (d *Device) launchGemmBF16(out gemmOut, c uintptr, a, w buf[uint16], bias buf[float32], m, n, k int) error {
	kern := out.kernel(d.tc.wgmma)
	l := d.with(gemmWork(m, n, k))
	M, N, K := int32(m), int32(n), int32(k)
	tiles := ceilDiv(m, gemmBF16Tile) * ceilDiv(n, gemmBF16Tile)
	if !d.tc.wgmma {
		if err := d.raiseShared(kern, gemmBF16MmaSmem); err != nil {
			return err
		}
		cfg := driver.LaunchConfig{Grid: [3]int{ceilDiv(n, gemmBF16Tile), ceilDiv(m, gemmBF16Tile), 1},
			Block: [3]int{gemmBF16MmaThreads, 1, 1}, SharedBytes: gemmBF16MmaSmem}
		switch out {
		case outF32:
			return launch.GemmBf16NtMmaF32(l, cfg, a.cptr(), w.cptr(), bias.cptr(), launch.Ptr[float32](c), M, N, K)
		case outBF16:
			return launch.GemmBf16NtMmaBf16(l, cfg, a.cptr(), w.cptr(), bias.cptr(), launch.Ptr[uint16](c), M, N, K)
		default:
			return launch.GemmBf16NtMmaGeluBf16(l, cfg, a.cptr(), w.cptr(), bias.cptr(), launch.Ptr[uint16](c), M, N, K)
		}
	}
	if err := d.raiseShared(kern, gemmBF16Smem); err != nil {
		return err
	}
	ma, err := d.operandMap(a.p, m, k)
	if err != nil {
		return err
	}
	mw, err := d.operandMap(w.p, n, k)
	if err != nil {
		return err
	}
	// Persistent blocks: one per multiprocessor, or one per tile when
	// there are fewer tiles.
	cfg := driver.LaunchConfig{Grid: [3]int{max(1, min(d.tc.sms, tiles)), 1, 1}, Block: [3]int{gemmBF16Threads, 1, 1}, SharedBytes: gemmBF16Smem}
	switch out {
	case outF32:
		return launch.GemmBf16NtF32(l, cfg, ma, mw, bias.cptr(), launch.Ptr[float32](c), M, N, K)
	case outBF16:
		return launch.GemmBf16NtBf16(l, cfg, ma, mw, bias.cptr(), launch.Ptr[uint16](c), M, N, K)
	default:
		return launch.GemmBf16NtGeluBf16(l, cfg, ma, mw, bias.cptr(), launch.Ptr[uint16](c), M, N, K)
	}
}
