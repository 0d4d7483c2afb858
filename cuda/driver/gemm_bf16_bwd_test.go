//go:build cuda

package driver

// Tests of the bf16 engine's backward GEMMs (kernels/gemm_bf16.cu), whose
// operands are MN-major (the reduction runs down the rows of a row-major
// tensor):
//   nn: C[M,N] = A[M,K] B[K,N]    (data gradient dX = dY W), epilogues bf16,
//       f32 added into C, bf16 of the sum times GELU'(pre)
//   tn: C[M,N] = A[K,M]^T B[K,N]  (weight gradient dW = dY^T X, K = batch), f32
// against a float64 product of the same bf16 inputs, on the wgmma kernels
// and their mma.sync fallbacks. They run on the host emulator (tags
// cuda,cudaemu) and on an sm_90a GPU (tag cuda).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
)

var gemmBF16BwdKernels = []string{
	"gemm_bf16_nn_f32", "gemm_bf16_nn_f32_add", "gemm_bf16_tn_f32",
	"gemm_bf16_nn_mma_f32", "gemm_bf16_nn_mma_f32_add", "gemm_bf16_tn_mma_f32",
}

// The mma.sync kernels' dynamic shared memory, GEMM_BF16_MMA_SMEM(a_mn,
// b_mn): 3 stages of a K-major operand chunk (128 rows of 40 elements) or
// an MN-major one (32 K rows of 136) each for A and B. The wgmma kernels
// take gemmBF16Smem, as the forward one.
const (
	gemmBF16NNMmaSmem = 3 * (128*40 + 32*136) * 2
	gemmBF16TNMmaSmem = 3 * (32*136 + 32*136) * 2
)

// gemmBF16NNCases: C[M,N] = A[M,K] B[K,N]. N and K are row strides of B
// and A and must be multiples of 8; M is free. Ragged M and N both ways, K
// below, at and above a chunk (64; 32 for mma.sync), one row, and enough
// chunks per block (grids of 3 blocks) that the ring wraps within and
// across tiles.
var gemmBF16NNCases = []gemmCase{
	{128, 256, 128}, {200, 136, 72}, {1, 8, 8}, {257, 136, 64}, {130, 264, 328}, {63, 8, 16},
}

// gemmBF16TNCases: C[M,N] = A[K,M]^T B[K,N]; M and N are row strides (of A
// and B) and must be multiples of 8; K, the batch, is free: ragged, one,
// and below and above a chunk.
var gemmBF16TNCases = []gemmCase{
	{128, 128, 128}, {136, 200, 333}, {8, 8, 1}, {264, 136, 64}, {200, 264, 97},
}

// gemmBF16TNLongK is the weight gradient at a batch of 2048 (-short
// leaves it out: the mma.sync kernel takes about a minute in the emulator).
var gemmBF16TNLongK = gemmCase{136, 264, 2048}

// gemmBF16BwdRun is a kernel's result and reference, with what the
// tolerance needs: the f32 accumulation bound of each element and C's
// initial value (f32_add).
type gemmBF16BwdRun struct {
	got, ref, errF []float64
	init           []float64
}

// gemmBF16BwdOut is kernel's epilogue: "f32" or "f32_add".
func gemmBF16BwdOut(kernel string) string {
	for _, e := range []string{"f32_add", "f32"} {
		if strings.HasSuffix(kernel, "_"+e) {
			return e
		}
	}
	panic("gemmBF16BwdOut: no epilogue in kernel name " + kernel)
}

// runGemmBF16Bwd runs kernel on case c with seeded bf16 operands in [-1, 1)
// (A stored [M,K] for nn, [K,M] for tn; B [K,N]), a wgmma kernel on a grid
// of min(tiles, maxGrid) persistent blocks, an mma.sync one on a block per
// tile. C (f32) starts as NaN bit patterns (0x7fc0ffff) so that an
// element the kernel skips fails, or for f32_add as seeded values in
// [-4, 4); guard elements after C must stay untouched.
func runGemmBF16Bwd(t *testing.T, v *tcDevice, kernel string, c gemmCase, maxGrid int, seed uint64) gemmBF16BwdRun {
	t.Helper()
	tn := strings.Contains(kernel, "_tn_")
	out := gemmBF16BwdOut(kernel)
	a, b, af, bf := gemmInputs(c, seed)
	r := rand.New(rand.NewPCG(seed, 11))
	const guard = 64
	n := c.M*c.N + guard
	run := gemmBF16BwdRun{got: make([]float64, c.M*c.N), ref: make([]float64, c.M*c.N), errF: make([]float64, c.M*c.N)}
	init := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		if out == "f32_add" {
			f := float32(r.Float64()*8 - 4)
			copy(init[4*i:], f32s([]float32{f}))
			if i < c.M*c.N {
				run.init = append(run.init, float64(f))
			}
		} else {
			init[4*i], init[4*i+1], init[4*i+2], init[4*i+3] = 0xff, 0xff, 0xc0, 0x7f
		}
	}
	C := v.upload(init)
	dims := [3]int{c.M, c.N, c.K}
	args := func(ops ...[]byte) [][]byte {
		ops = append(ops, pPtr(C), pInt(dims[0]), pInt(dims[1]), pInt(dims[2]))
		if tn {
			ops = append(ops, pInt(1)) // splits: K whole (package cuda's tests split it)
		}
		return ops
	}
	if strings.Contains(kernel, "_mma_") {
		smem := gemmBF16NNMmaSmem
		if tn {
			smem = gemmBF16TNMmaSmem
		}
		if err := v.x.SetMaxDynamicShared(v.kernel(kernel), smem); err != nil {
			t.Fatal(err)
		}
		grid := [3]int{(c.N + 127) / 128, (c.M + 127) / 128, 1}
		v.mustLaunch(kernel, LaunchConfig{Grid: grid, Block: [3]int{256, 1, 1}, SharedBytes: smem},
			args(pPtr(v.upload(u16s(a))), pPtr(v.upload(u16s(b))))...)
	} else {
		// A K-major operand [rows, K]: box {64 K, 128 rows}; an MN-major one
		// [K, cols]: box {64 cols, 64 K}. Both 128-byte swizzled.
		kMajor := func(p uintptr, rows int) []byte {
			m, err := v.x.EncodeTensorMap(TensorMapSpec{DataType: TensorBFloat16, Base: p, Dims: []uint64{uint64(c.K), uint64(rows)},
				Strides: []uint64{uint64(2 * c.K)}, Box: []uint32{64, 128}, Swizzle: Swizzle128B})
			if err != nil {
				t.Fatal(err)
			}
			return m[:]
		}
		mnMajor := func(p uintptr, cols int) []byte {
			m, err := v.x.EncodeTensorMap(TensorMapSpec{DataType: TensorBFloat16, Base: p, Dims: []uint64{uint64(cols), uint64(c.K)},
				Strides: []uint64{uint64(2 * cols)}, Box: []uint32{64, 64}, Swizzle: Swizzle128B})
			if err != nil {
				t.Fatal(err)
			}
			return m[:]
		}
		if err := v.x.SetMaxDynamicShared(v.kernel(kernel), gemmBF16Smem); err != nil {
			t.Fatal(err)
		}
		var mapA []byte
		if tn {
			mapA = mnMajor(v.upload(u16s(a)), c.M)
		} else {
			mapA = kMajor(v.upload(u16s(a)), c.M)
		}
		tiles := ((c.M + 127) / 128) * ((c.N + 127) / 128)
		v.mustLaunch(kernel, LaunchConfig{Grid: [3]int{min(tiles, maxGrid), 1, 1}, Block: [3]int{384, 1, 1}, SharedBytes: gemmBF16Smem},
			args(mapA, mnMajor(v.upload(u16s(b)), c.N))...)
	}
	got := v.download(C, 4*n)
	for i := c.M * c.N; i < n; i++ {
		if string(got[4*i:4*(i+1)]) != string(init[4*i:4*(i+1)]) {
			t.Fatalf("%s %dx%dx%d: guard element %d past C was written", kernel, c.M, c.N, c.K, i-c.M*c.N)
		}
	}
	for i, f := range toF32(got[:4*c.M*c.N]) {
		run.got[i] = float64(f)
	}
	for i := 0; i < c.M; i++ {
		for j := 0; j < c.N; j++ {
			ref, s := 0.0, 0.0
			for k := 0; k < c.K; k++ {
				x := af[i*c.K+k]
				if tn {
					x = af[k*c.M+i]
				}
				p := x * bf[k*c.N+j]
				ref += p
				s += math.Abs(p)
			}
			run.ref[i*c.N+j], run.errF[i*c.N+j] = ref, gemmF32Bound(c.K, s)
		}
	}
	return run
}

// gemmBF16BwdMismatch returns the first element of run outside its
// tolerance for kernel's epilogue, nil if none.
func gemmBF16BwdMismatch(kernel string, c gemmCase, run gemmBF16BwdRun) error {
	for i, g := range run.got {
		ref, e := run.ref[i], run.errF[i]
		var tol float64
		switch gemmBF16BwdOut(kernel) {
		case "f32":
			tol = e
		case "f32_add":
			// The f32 sum, within e of ref, is added to C's f32 value: one
			// more rounding of a value at most |init| + |ref| + e (2^-23
			// allowing for either rounding direction, as gemmF32Bound).
			ref += run.init[i]
			tol = e + math.Ldexp(math.Abs(run.init[i])+math.Abs(ref)+e, -23)
		}
		if !(math.Abs(g-ref) <= tol) {
			return fmt.Errorf("%s %dx%dx%d: C[%d][%d] = %v, want %v within %.3g", kernel, c.M, c.N, c.K, i/c.N, i%c.N, g, ref, tol)
		}
	}
	return nil
}

func gemmBF16BwdCases(kernel string) []gemmCase {
	if strings.Contains(kernel, "_tn_") {
		return gemmBF16TNCases
	}
	return gemmBF16NNCases
}

// TestGemmBF16Bwd runs each backward wgmma kernel on its cases, on grids
// of 3 blocks (so that blocks take several tiles) and of one block per
// tile.
func TestGemmBF16Bwd(t *testing.T) { testGemmBF16Bwd(t, false) }

// TestGemmBF16BwdMma runs each backward mma.sync kernel (any GPU from
// compute capability 8.0) on its cases, a block per tile whatever maxGrid
// says.
func TestGemmBF16BwdMma(t *testing.T) { testGemmBF16Bwd(t, true) }

// testGemmBF16Bwd is TestGemmBF16Bwd, or with mma TestGemmBF16BwdMma.
func testGemmBF16Bwd(t *testing.T, mma bool) {
	v := openKernels(t, gemmBF16BwdKernels)
	grids := []int{3, 1 << 20}
	if mma {
		grids = grids[:1]
	} else {
		v.needHopper(t)
	}
	for ki, kernel := range gemmBF16BwdKernels {
		if strings.Contains(kernel, "_mma_") != mma {
			continue
		}
		for ci, c := range gemmBF16BwdCases(kernel) {
			for _, maxGrid := range grids {
				run := runGemmBF16Bwd(t, v, kernel, c, maxGrid, uint64(100*ki+ci))
				if err := gemmBF16BwdMismatch(kernel, c, run); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestGemmBF16BwdLongK: the weight gradient with K = 2048 (the reduction
// over a batch: 32 wgmma chunks a tile) on the wgmma kernel.
func TestGemmBF16BwdLongK(t *testing.T) { testGemmBF16BwdLongK(t, "gemm_bf16_tn_f32") }

// TestGemmBF16BwdLongKMma: the same on the mma.sync kernel (64 chunks a
// tile).
func TestGemmBF16BwdLongKMma(t *testing.T) { testGemmBF16BwdLongK(t, "gemm_bf16_tn_mma_f32") }

func testGemmBF16BwdLongK(t *testing.T, kernel string) {
	if testing.Short() {
		t.Skip("-short: K = 2048 takes about a minute in the emulator")
	}
	v := openKernels(t, gemmBF16BwdKernels)
	if !strings.Contains(kernel, "_mma_") {
		v.needHopper(t)
	}
	run := runGemmBF16Bwd(t, v, kernel, gemmBF16TNLongK, 132, 5)
	if err := gemmBF16BwdMismatch(kernel, gemmBF16TNLongK, run); err != nil {
		t.Fatal(err)
	}
}

// TestGemmBF16BwdModel: the model's shapes on the wgmma kernels: a
// residual block's hidden Linear (2048 -> 2048) data gradient at batch 128
// (dX, K = 2048), and the weight gradient of the head's first
// Linear (2048 -> 1024) at batch 256. -short leaves it out (seconds
// natively, minutes under AddressSanitizer).
func TestGemmBF16BwdModel(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: model-sized GEMMs")
	}
	v := openKernels(t, gemmBF16BwdKernels)
	v.needHopper(t)
	for _, tc := range []struct {
		kernel string
		c      gemmCase
	}{
		{"gemm_bf16_nn_f32", gemmCase{128, 2048, 2048}},
		{"gemm_bf16_tn_f32", gemmCase{1024, 2048, 256}},
	} {
		run := runGemmBF16Bwd(t, v, tc.kernel, tc.c, 132, 8)
		if err := gemmBF16BwdMismatch(tc.kernel, tc.c, run); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGemmBF16BwdTolerances: the checks can fail. Exact results pass; the
// f32 add left out, and an f32 result with a bf16-sized error, are refused.
func TestGemmBF16BwdTolerances(t *testing.T) {
	c := gemmCase{1, 3, 64}
	sum := []float64{-0.7, 1.3, 2.4}
	errF := []float64{1e-6, 1e-6, 1e-6}
	init := []float64{0.5, -2, 3}
	bf := func(x float64) float64 { return float64(leconv.BFloat16Value(leconv.BFloat16Bits(float32(x)))) }
	added := make([]float64, 3)
	for i := range sum {
		added[i] = sum[i] + init[i]
	}
	for _, tc := range []struct {
		kernel string
		got    []float64
		pass   bool
	}{
		{"gemm_bf16_tn_f32", sum, true},
		{"gemm_bf16_tn_f32", []float64{-0.7, bf(1.3), 2.4}, false},
		{"gemm_bf16_nn_f32_add", added, true},
		{"gemm_bf16_nn_f32_add", sum, false},
		{"gemm_bf16_nn_f32", sum, true},
		{"gemm_bf16_nn_f32", []float64{bf(-0.7), 1.3, 2.4}, false},
	} {
		err := gemmBF16BwdMismatch(tc.kernel, c, gemmBF16BwdRun{got: tc.got, ref: sum, errF: errF, init: init})
		if (err == nil) != tc.pass {
			t.Errorf("%s %v: mismatch %v, want pass %v", tc.kernel, tc.got, err, tc.pass)
		}
	}
}
