//go:build cuda

package driver

// Tests of the bf16 engine's forward GEMM (kernels/gemm_bf16.cu):
// C = epilogue(A W^T + bias), A [M,K] and W [N,K] bf16, in its three
// epilogues, against a float64 product of the same bf16 inputs. They run
// on the host emulator (tags cuda,cudaemu) and on an sm_90a GPU (tag cuda).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
)

// gemmBF16Kernels: the wgmma kernels (sm_90a) and their mma.sync
// fallbacks (sm_80 on), each in the two single-output epilogues.
var gemmBF16Kernels = []string{
	"gemm_bf16_nt_f32", "gemm_bf16_nt_gelu_bf16",
	"gemm_bf16_nt_mma_f32", "gemm_bf16_nt_mma_gelu_bf16",
}

// The kernels' dynamic shared memory: GEMM_BF16_SMEM, 4 stages of a
// 128x64 A and a 128x64 W chunk, 10 mbarriers (full and empty per stage,
// the consumers' two turns), 1024 bytes of alignment slack;
// GEMM_BF16_MMA_SMEM, 3 stages of 128+128 rows of 40 elements.
const (
	gemmBF16Smem    = 4*2*128*64*2 + (2*4+2)*8 + 1024
	gemmBF16MmaSmem = 3 * (128 + 128) * 40 * 2
)

// gemmBF16Out is the epilogue of kernel: "f32" or "gelu_bf16".
func gemmBF16Out(kernel string) string {
	for _, e := range []string{"gelu_bf16", "f32"} {
		if strings.HasSuffix(kernel, "_"+e) {
			return e
		}
	}
	panic("gemmBF16Out: no epilogue in kernel name " + kernel)
}

// gemmBF16Cases: ragged M and N in both directions, odd N (the unpaired
// stores), K below, at and above a chunk, one row, and enough chunks per
// block (grids of at most 3 blocks) that the 4-stage ring wraps several
// times within and across tiles.
var gemmBF16Cases = []gemmCase{
	{128, 256, 128}, {200, 136, 72}, {1, 8, 8}, {257, 129, 64}, {130, 260, 328}, {64, 1, 16},
}

// gemmBF16ModelCase is the model's first layer (768 -> 2048) at batch 256.
var gemmBF16ModelCase = gemmCase{256, 2048, 768}

type gemmBF16Run struct {
	got  []float64 // C as float64, row-major M x N
	ref  []float64 // float64 A W^T + bias of the bf16 inputs
	errF []float64 // the f32 accumulation bound of each element (see gemmF32Bound)
}

// gemmF32Bound: every product of two bf16 values is exact in f32 (8+8
// significant bits), so the error before the epilogue is the f32
// accumulation of K products and the bias: each of the K+1 additions rounds
// a partial sum bounded by S = sum_k |a_ik w_jk| + |bias_j| by at most
// 2^-24 S with round to nearest; allowing 2^-23 (a tensor core may truncate
// rather than round) gives |C - ref| <= (K+1) 2^-23 S. A wrong layout, a
// missing tile, a stale stage or a lost bias errs by O(|a||w|) = O(S/K),
// far above it.
func gemmF32Bound(k int, s float64) float64 { return float64(k+1) * math.Ldexp(s, -23) }

// runGemmBF16 runs kernel on case c with seeded inputs in [-1, 1) (bias
// f32, not rounded, or a null bias pointer without withBias), a wgmma kernel on a grid of min(tiles, maxGrid)
// persistent blocks, an mma.sync one on a block per tile, and returns C and its reference. C starts as NaN bit patterns (f32 0x7fc0ffff,
// bf16 0x7fc1) so that an element the kernel skips fails, and has guard
// elements after it that must stay untouched.
func runGemmBF16(t *testing.T, v *tcDevice, kernel string, c gemmCase, maxGrid int, seed uint64, withBias bool) gemmBF16Run {
	t.Helper()
	a, w, af, wf := gemmInputs(c, seed)
	r := rand.New(rand.NewPCG(seed, 7))
	bias := make([]float32, c.N)
	biasPtr := uintptr(0) // a null bias: none added
	if withBias {
		for i := range bias {
			bias[i] = float32(r.Float64()*2 - 1)
		}
		biasPtr = v.upload(f32s(bias))
	}
	mapOf := func(p uintptr, rows int) []byte {
		m, err := v.x.EncodeTensorMap(TensorMapSpec{DataType: TensorBFloat16, Base: p, Dims: []uint64{uint64(c.K), uint64(rows)},
			Strides: []uint64{uint64(2 * c.K)}, Box: []uint32{64, 128}, Swizzle: Swizzle128B})
		if err != nil {
			t.Fatal(err)
		}
		return m[:]
	}
	const guard = 64
	elem := 4
	if gemmBF16Out(kernel) != "f32" {
		elem = 2
	}
	n := c.M*c.N + guard
	init := make([]byte, n*elem)
	for i := 0; i < n; i++ {
		if elem == 4 {
			init[4*i], init[4*i+1], init[4*i+2], init[4*i+3] = 0xff, 0xff, 0xc0, 0x7f
		} else {
			init[2*i], init[2*i+1] = 0xc1, 0x7f
		}
	}
	out := v.upload(init)
	if strings.Contains(kernel, "_mma_") {
		if err := v.x.SetMaxDynamicShared(v.kernel(kernel), gemmBF16MmaSmem); err != nil {
			t.Fatal(err)
		}
		grid := [3]int{(c.N + 127) / 128, (c.M + 127) / 128, 1}
		v.mustLaunch(kernel, LaunchConfig{Grid: grid, Block: [3]int{256, 1, 1}, SharedBytes: gemmBF16MmaSmem},
			pPtr(v.upload(u16s(a))), pPtr(v.upload(u16s(w))), pPtr(biasPtr), pPtr(out), pInt(c.M), pInt(c.N), pInt(c.K))
	} else {
		if err := v.x.SetMaxDynamicShared(v.kernel(kernel), gemmBF16Smem); err != nil {
			t.Fatal(err)
		}
		tiles := ((c.M + 127) / 128) * ((c.N + 127) / 128)
		grid := min(tiles, maxGrid)
		v.mustLaunch(kernel, LaunchConfig{Grid: [3]int{grid, 1, 1}, Block: [3]int{384, 1, 1}, SharedBytes: gemmBF16Smem},
			mapOf(v.upload(u16s(a)), c.M), mapOf(v.upload(u16s(w)), c.N), pPtr(biasPtr), pPtr(out),
			pInt(c.M), pInt(c.N), pInt(c.K))
	}
	b := v.download(out, n*elem)
	for i := c.M * c.N; i < n; i++ {
		if string(b[i*elem:(i+1)*elem]) != string(init[i*elem:(i+1)*elem]) {
			t.Fatalf("%s %dx%dx%d: guard element %d past C was written", kernel, c.M, c.N, c.K, i-c.M*c.N)
		}
	}
	run := gemmBF16Run{got: make([]float64, c.M*c.N), ref: make([]float64, c.M*c.N), errF: make([]float64, c.M*c.N)}
	if elem == 4 {
		for i, f := range toF32(b[:4*c.M*c.N]) {
			run.got[i] = float64(f)
		}
	} else {
		for i := range run.got {
			run.got[i] = float64(leconv.BFloat16Value(uint16(b[2*i]) | uint16(b[2*i+1])<<8))
		}
	}
	for i := 0; i < c.M; i++ {
		for j := 0; j < c.N; j++ {
			ref, s := float64(bias[j]), math.Abs(float64(bias[j]))
			for k := 0; k < c.K; k++ {
				p := af[i*c.K+k] * wf[j*c.K+k]
				ref += p
				s += math.Abs(p)
			}
			run.ref[i*c.N+j], run.errF[i*c.N+j] = ref, gemmF32Bound(c.K, s)
		}
	}
	return run
}

// bf16Rounding is the relative error of rounding to bf16 (8 significant
// bits, round to nearest even): half a unit in the last place, at most
// 2^-8 of the value.
var bf16Rounding = math.Ldexp(1, -8)

// geluLipschitz bounds |GELU'(x)| = |Phi(x) + x phi(x)| (its maximum is
// 1.1289 near x = 2.4), so an error e in the pre-activation moves GELU by at
// most 1.13 e.
const geluLipschitz = 1.13

// geluF32Eval bounds the relative error of GELU evaluated in f32 as
// 0.5 x erfc(-x/sqrt2) (common.cuh) at an exact argument: erfcf is within
// 4 ulp on the GPU (CUDA Programming Guide, "Mathematical Functions") and
// glibc's within 2, three f32 roundings add 3 ulp, and the rounding of
// -x/sqrt2 (2^-24 relative) is amplified by erfc's relative sensitivity
// 2u^2 (u = -x/sqrt2), below 200 where the result is a normal f32 (u < 10):
// in all below 2^-16; 2^-14 leaves room. Results below 2^-126 (x < -13,
// where f32 goes subnormal or to zero) get the absolute floor.
var geluF32Eval = math.Ldexp(1, -14)

func geluRef(x float64) float64 { return 0.5 * x * math.Erfc(-x/math.Sqrt2) }

func checkGemmBF16(t *testing.T, kernel string, c gemmCase, run gemmBF16Run) {
	t.Helper()
	if err := gemmBF16Mismatch(kernel, c, run); err != nil {
		t.Fatal(err)
	}
}

// gemmBF16Mismatch returns the first element of run outside its tolerance
// for kernel's epilogue, nil if none.
func gemmBF16Mismatch(kernel string, c gemmCase, run gemmBF16Run) error {
	for i, g := range run.got {
		ref, e := run.ref[i], run.errF[i]
		var tol float64
		switch gemmBF16Out(kernel) {
		case "f32":
			tol = e
		case "gelu_bf16":
			// GELU moves the f32 error by at most geluLipschitz, its f32
			// evaluation adds geluF32Eval relative, bf16 rounds.
			ref = geluRef(ref)
			pre := geluLipschitz*e + geluF32Eval*math.Abs(ref) + math.Ldexp(1, -126)
			tol = pre + bf16Rounding*(math.Abs(ref)+pre)
		}
		if !(math.Abs(g-ref) <= tol) {
			return fmt.Errorf("%s %dx%dx%d: C[%d][%d] = %v, want %v within %.3g", kernel, c.M, c.N, c.K, i/c.N, i%c.N, g, ref, tol)
		}
	}
	return nil
}

// TestGemmBF16 runs each wgmma kernel on every case, on grids of 3 blocks
// (so that blocks take several tiles) and of one block per tile. Odd
// cases on the first grid and even ones on the second pass a null bias.
func TestGemmBF16(t *testing.T) { testGemmBF16(t, false) }

// TestGemmBF16Mma runs each mma.sync kernel (any GPU from compute
// capability 8.0) on every case, a block per tile whatever maxGrid says;
// odd cases pass a null bias.
func TestGemmBF16Mma(t *testing.T) { testGemmBF16(t, true) }

// testGemmBF16 is TestGemmBF16, or with mma TestGemmBF16Mma.
func testGemmBF16(t *testing.T, mma bool) {
	v := openKernels(t, gemmBF16Kernels)
	grids := []int{3, 1 << 20}
	if mma {
		grids = grids[:1]
	} else {
		v.needHopper(t)
	}
	for ki, kernel := range gemmBF16Kernels {
		if strings.Contains(kernel, "_mma_") != mma {
			continue
		}
		for ci, c := range gemmBF16Cases {
			for gi, maxGrid := range grids {
				run := runGemmBF16(t, v, kernel, c, maxGrid, uint64(100*ki+ci), (ci+gi)%2 == 0)
				checkGemmBF16(t, kernel, c, run)
			}
		}
	}
}

// TestGemmBF16Model: the model's first layer at batch 256, bf16 out with
// GELU as the hidden layers use it, on the wgmma kernel (the emulated
// mma.sync kernel takes minutes at this size under AddressSanitizer, as
// make check-kernels runs it; the small cases cover it).
func TestGemmBF16Model(t *testing.T) {
	v := openKernels(t, gemmBF16Kernels)
	v.needHopper(t)
	for _, kernel := range []string{"gemm_bf16_nt_gelu_bf16"} {
		run := runGemmBF16(t, v, kernel, gemmBF16ModelCase, 132, 9, true)
		checkGemmBF16(t, kernel, gemmBF16ModelCase, run)
	}
}

// TestGemmBF16Tolerances: the checks can fail. Exact results pass; a
// result off by twice its f32 bound, a GELU left out, or an f32 result
// with a bf16-sized error are refused.
func TestGemmBF16Tolerances(t *testing.T) {
	c := gemmCase{1, 3, 64}
	pre := []float64{-0.7, 1.3, 2.4}
	errF := []float64{1e-6, 1e-6, 1e-6}
	gelu := make([]float64, len(pre))
	for i, x := range pre {
		gelu[i] = float64(leconv.BFloat16Value(leconv.BFloat16Bits(float32(geluRef(x)))))
	}
	for _, tc := range []struct {
		kernel string
		got    []float64
		pass   bool
	}{
		{"gemm_bf16_nt_f32", pre, true},
		{"gemm_bf16_nt_f32", []float64{-0.7, 1.3 + 2e-6, 2.4}, false},
		{"gemm_bf16_nt_f32", []float64{-0.7, float64(leconv.BFloat16Value(leconv.BFloat16Bits(1.3))), 2.4}, false},
		{"gemm_bf16_nt_gelu_bf16", gelu, true},
		{"gemm_bf16_nt_gelu_bf16", []float64{float64(leconv.BFloat16Value(leconv.BFloat16Bits(-0.7))), gelu[1], gelu[2]}, false},
	} {
		err := gemmBF16Mismatch(tc.kernel, c, gemmBF16Run{got: tc.got, ref: pre, errF: errF})
		if (err == nil) != tc.pass {
			t.Errorf("%s %v: mismatch %v, want pass %v", tc.kernel, tc.got, err, tc.pass)
		}
	}
}

// TestGemmBF16StrideCheck: K not a multiple of 8 (rows not 16-byte
// strided) is refused on the host, where the tensor maps are encoded.
func TestGemmBF16StrideCheck(t *testing.T) {
	v := openKernels(t, gemmBF16Kernels)
	const k, rows = 12, 4
	p := v.alloc(2 * k * rows)
	_, err := v.x.EncodeTensorMap(TensorMapSpec{DataType: TensorBFloat16, Base: p, Dims: []uint64{k, rows},
		Strides: []uint64{2 * k}, Box: []uint32{64, 128}, Swizzle: Swizzle128B})
	if err == nil {
		t.Fatalf("a tensor map with K = %d (row stride %d bytes) was accepted", k, 2*k)
	}
}
