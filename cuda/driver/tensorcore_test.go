//go:build cuda

package driver

// Tests of the tensor-core primitives (kernels/tensorcore.cuh, through the
// check kernels of kernels/tensorcore_check.cu) and of the reference bf16
// GEMMs (kernels/gemm_bf16_ref.cu). They run on whichever driver the build
// has: the host emulator (tags cuda,cudaemu) or the GPU (tag cuda, where
// the sm_90a kernels need the sm_90a module and the driver's Extended).
// Every expected value is computed here from the PTX ISA's layouts, never
// taken from a run.

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/kernels"
)

var tcKernels = []string{
	"tc_check_mma", "tc_check_ldmatrix", "tc_check_cp_async", "tc_check_wgmma", "tc_check_wgmma_mn", "tc_check_tma",
	"tc_check_cluster", "tc_check_geometry", "tc_check_divergent", "tc_check_drift", "tc_check_ring", "gemm_bf16_mma_ref", "gemm_bf16_wgmma_ref",
}

// tcDevice is a driver with Extended and helpers for the tests.
type tcDevice struct {
	t     *testing.T
	d     Driver
	x     Extended
	names []string // the kernels opened, in order
}

func openTC(t *testing.T) *tcDevice { return openKernels(t, tcKernels) }

// openKernels opens a driver with kernels names.
func openKernels(t *testing.T, names []string) *tcDevice {
	t.Helper()
	runtime.LockOSThread() // the context's thread, to the end of the test
	t.Cleanup(runtime.UnlockOSThread)
	d, err := Open(names)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	x, ok := d.(Extended)
	if !ok {
		t.Skipf("driver %T does not implement Extended", d)
	}
	return &tcDevice{t: t, d: d, x: x, names: names}
}

// hopperKernels reports whether the kernels loaded hold the Hopper-only
// instructions (wgmma, TMA, clusters): in the emulator, or from the
// sm_90a cubins. The portable PTX (a GPU other than compute capability
// 9.0, a driver older than the cubins', or DINOCLIP_CUDA_KERNELS=ptx)
// compiles those kernels to a trap, and the engine takes the mma.sync
// kernels there; TestTCArchProbe checks that the path reported is the
// one the kernels run.
func (v *tcDevice) hopperKernels() bool {
	return emulated || v.x.KernelPath() == kernels.SM90a.Key
}

// needHopper skips the test where the kernels loaded are not Hopper's
// (hopperKernels).
func (v *tcDevice) needHopper(t *testing.T) {
	t.Helper()
	if !v.hopperKernels() {
		t.Skipf("the %s kernels are loaded: wgmma, TMA and clusters are compiled into the sm_90a cubins only", v.x.KernelPath())
	}
}

func (v *tcDevice) kernel(name string) int {
	for i, n := range v.names {
		if n == name {
			return i
		}
	}
	v.t.Fatalf("no kernel %s", name)
	return -1
}

// upload copies b to fresh device memory (freed at the end of the test).
func (v *tcDevice) upload(b []byte) uintptr {
	v.t.Helper()
	p := v.alloc(len(b))
	if err := v.d.ToDevice(p, unsafe.Pointer(&b[0]), int64(len(b))); err != nil {
		v.t.Fatal(err)
	}
	return p
}

func (v *tcDevice) alloc(n int) uintptr {
	v.t.Helper()
	p, err := v.d.Alloc(int64(n))
	if err != nil {
		v.t.Fatal(err)
	}
	v.t.Cleanup(func() { v.d.Free(p) })
	return p
}

func (v *tcDevice) download(p uintptr, n int) []byte {
	v.t.Helper()
	b := make([]byte, n)
	if err := v.d.ToHost(unsafe.Pointer(&b[0]), p, int64(n)); err != nil {
		v.t.Fatal(err)
	}
	return b
}

func (v *tcDevice) launch(name string, cfg LaunchConfig, params ...[]byte) error {
	if err := v.x.LaunchEx(v.kernel(name), cfg, params); err != nil {
		return err
	}
	return v.d.Sync()
}

func (v *tcDevice) mustLaunch(name string, cfg LaunchConfig, params ...[]byte) {
	v.t.Helper()
	if err := v.launch(name, cfg, params...); err != nil {
		v.t.Fatal(err)
	}
}

// Parameter encoders: each a kernel parameter's exact bytes.
func pInt(v int) []byte       { return binary.LittleEndian.AppendUint32(nil, uint32(int32(v))) }
func pPtr(p uintptr) []byte   { return binary.LittleEndian.AppendUint64(nil, uint64(p)) }
func pMap(m TensorMap) []byte { return m[:] }

func cfg1(grid, block, smem int) LaunchConfig {
	return LaunchConfig{Grid: [3]int{grid, 1, 1}, Block: [3]int{block, 1, 1}, SharedBytes: smem}
}

// f16 encodes an integer of magnitude below 2048 exactly as IEEE half.
func f16(v int) uint16 {
	if v == 0 {
		return 0
	}
	var s uint16
	if v < 0 {
		s, v = 0x8000, -v
	}
	e := 0
	for (v >> e) > 1 {
		e++
	}
	m := (v << (10 - e)) & 0x3ff
	return s | uint16(e+15)<<10 | uint16(m)
}

func u16s(v []uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

func f32s(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func toF32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// TestTCArchProbe: the kernels run the compiled path the driver says it
// loaded (KernelPath), which every Hopper-only test below rests on: on a
// GPU the sm_90a cubin's Hopper branch, or the portable PTX's (compiled
// for compute_80 whatever GPU JIT-compiles it); in the emulator, the
// host's. kernels/arch_probe.cu writes which, and for which architecture.
func TestTCArchProbe(t *testing.T) {
	v := openKernels(t, []string{"arch_probe"})
	out := v.alloc(12)
	v.mustLaunch("arch_probe", cfg1(1, 1, 0), pPtr(out))
	b := v.download(out, 12)
	var got [3]int32
	for i := range got {
		got[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	var want [3]int32 // path (0 host, 1 portable, 2 sm_90a), __CUDA_ARCH__, cluster rank
	switch path := v.x.KernelPath(); {
	case emulated:
	case path == kernels.SM90a.Key:
		want = [3]int32{2, 900, 0}
	case path == kernels.PortablePTX.Key:
		want = [3]int32{1, 800, 0}
	default:
		t.Fatalf("the driver loaded kernels of path %q, which this test does not know", path)
	}
	if got != want {
		t.Errorf("arch_probe wrote %v, want %v (path, __CUDA_ARCH__, cluster rank) for the kernels loaded, %s", got, want, v.x.KernelPath())
	}
}

// TestTCGeometry: 3-D grids and blocks up to 1024 threads, dynamic shared
// memory and a named barrier over part of the block.
func TestTCGeometry(t *testing.T) {
	v := openTC(t)
	for _, c := range []struct{ grid, block [3]int }{
		{[3]int{2, 3, 2}, [3]int{8, 4, 3}},
		{[3]int{1, 1, 1}, [3]int{1024, 1, 1}},
		{[3]int{3, 1, 1}, [3]int{16, 8, 8}},
	} {
		threads := c.block[0] * c.block[1] * c.block[2]
		blocks := c.grid[0] * c.grid[1] * c.grid[2]
		out := v.alloc(4 * threads * blocks)
		v.mustLaunch("tc_check_geometry", LaunchConfig{Grid: c.grid, Block: c.block, SharedBytes: 256}, pPtr(out))
		got := v.download(out, 4*threads*blocks)
		for i := 0; i < threads*blocks; i++ {
			lin := i % threads
			want := lin
			if lin < 64 {
				want = 63 - lin
			}
			if g := int(int32(binary.LittleEndian.Uint32(got[4*i:]))); g != want {
				t.Fatalf("grid %v block %v: thread %d of block %d wrote %d, want %d", c.grid, c.block, lin, i/threads, g, want)
			}
		}
	}
}

// TestTCMma: mma.sync m16n8k16 with index-valued A (A[i][k] = 16i + k, all
// exact in bf16 and f16), small integer B and C: every product and sum is
// an exact integer in f32, so D must equal C + AB exactly, which fixes
// every register's row and column.
func TestTCMma(t *testing.T) {
	v := openTC(t)
	for _, isF16 := range []int{0, 1} {
		for _, identity := range []bool{true, false} {
			a, bt := make([]uint16, 256), make([]uint16, 128)
			c := make([]float32, 128)
			A, Bt := make([]int, 256), make([]int, 128)
			for i := range A {
				A[i] = i
			}
			for n := 0; n < 8; n++ {
				for k := 0; k < 16; k++ {
					if identity {
						Bt[n*16+k] = b2i(k == n)
					} else {
						Bt[n*16+k] = (n*16+k)%7 - 3
					}
				}
			}
			enc := func(x int) uint16 {
				if isF16 == 1 {
					return f16(x)
				}
				return leconv.BFloat16Bits(float32(x))
			}
			for i := range a {
				a[i] = enc(A[i])
			}
			for i := range bt {
				bt[i] = enc(Bt[i])
			}
			for i := range c {
				c[i] = float32(i%13) - 6
			}
			out := v.alloc(4 * 128)
			v.mustLaunch("tc_check_mma", cfg1(1, 32, 0), pPtr(v.upload(u16s(a))), pPtr(v.upload(u16s(bt))), pPtr(v.upload(f32s(c))), pPtr(out), pInt(isF16))
			got := toF32(v.download(out, 4*128))
			for i := 0; i < 16; i++ {
				for j := 0; j < 8; j++ {
					want := float64(c[i*8+j])
					for k := 0; k < 16; k++ {
						want += float64(A[i*16+k] * Bt[j*16+k])
					}
					if float64(got[i*8+j]) != want {
						t.Fatalf("f16=%d identity=%v: D[%d][%d] = %v, want %v", isF16, identity, i, j, got[i*8+j], want)
					}
				}
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestTCLdmatrix: a 32x8 tile whose element (r, c) is 8r + c; each
// register of each lane must hold the two elements the PTX ISA assigns it.
func TestTCLdmatrix(t *testing.T) {
	v := openTC(t)
	m := make([]uint16, 256)
	for i := range m {
		m[i] = uint16(i)
	}
	in := v.upload(u16s(m))
	for _, mats := range []int{1, 2, 4} {
		for _, trans := range []int{0, 1} {
			out := v.alloc(4 * 128)
			v.mustLaunch("tc_check_ldmatrix", cfg1(1, 32, 512), pPtr(in), pPtr(out), pInt(mats), pInt(trans))
			got := v.download(out, 4*128)
			for l := 0; l < 32; l++ {
				for i := 0; i < 4; i++ {
					var want uint32
					if i < mats {
						for e := 0; e < 2; e++ {
							r, c := l/4, 2*(l%4)+e
							if trans == 1 {
								r, c = 2*(l%4)+e, l/4
							}
							want |= uint32(m[(8*i+r)*8+c]) << (16 * e)
						}
					}
					if g := binary.LittleEndian.Uint32(got[4*(4*l+i):]); g != want {
						t.Fatalf("x%d trans=%d: lane %d register %d = %#x, want %#x", mats, trans, l, i, g, want)
					}
				}
			}
		}
	}
}

// TestTCCpAsync: 4-, 8- and 16-byte cp.async with full, partial and empty
// source sizes: the first src_bytes of each piece copied, the rest zero.
func TestTCCpAsync(t *testing.T) {
	v := openTC(t)
	src := make([]byte, 1024)
	for i := range src {
		src[i] = byte(i*7 + 1)
	}
	in := v.upload(src)
	for _, bytes := range []int{4, 8, 16} {
		for _, srcBytes := range []int{bytes, bytes / 2, 0} {
			out := v.alloc(1024)
			v.mustLaunch("tc_check_cp_async", cfg1(1, 64, 1024), pPtr(in), pPtr(out), pInt(bytes), pInt(srcBytes), pInt(1))
			got := v.download(out, 1024)
			for i := range got {
				want := src[i]
				if i%bytes >= srcBytes {
					want = 0
				}
				if got[i] != want {
					t.Fatalf("%d-byte pieces reading %d: byte %d = %#x, want %#x", bytes, srcBytes, i, got[i], want)
				}
			}
		}
	}
}

// wgmmaCase runs tc_check_wgmma and returns D[64][n] as the fragment
// layout places it, with A[m][k] = (16m + k) mod 256 and B[k][n] =
// (n + 3k) mod 7 - 3 (all exact), and the exact product.
func wgmmaCase(t *testing.T, v *tcDevice, n, storeSwizzle, descSwizzle, aInRegs int) (got, want []float64) {
	a, bt, A, Bt := wgmmaInputs(n)
	out := v.alloc(4 * 128 * n / 2)
	v.mustLaunch("tc_check_wgmma", wgmmaConfig(n), pPtr(v.upload(u16s(a))), pPtr(v.upload(u16s(bt))), pPtr(out),
		pInt(n), pInt(storeSwizzle), pInt(descSwizzle), pInt(aInRegs), pInt(1))
	d := toF32(v.download(out, 4*128*n/2))
	got, want = make([]float64, 64*n), make([]float64, 64*n)
	for th := 0; th < 128; th++ {
		w, l := th/32, th%32
		for j := 0; j < n/8; j++ {
			for e := 0; e < 4; e++ {
				row, col := 16*w+l/4+8*(e/2), 8*j+2*(l%4)+e%2
				got[row*n+col] = float64(d[th*(n/2)+4*j+e])
			}
		}
	}
	for m := 0; m < 64; m++ {
		for c := 0; c < n; c++ {
			s := 0
			for k := 0; k < 16; k++ {
				s += A[m*16+k] * Bt[c*16+k]
			}
			want[m*n+c] = float64(s)
		}
	}
	return got, want
}

// wgmmaConfig is tc_check_wgmma's launch: one warpgroup, room for A and B
// in the widest layout plus 1024 bytes of alignment.
func wgmmaConfig(n int) LaunchConfig { return cfg1(1, 128, 8192+128*n+1024) }

// wgmmaInputs returns A[64][16] and Bt[n][16] as bf16 and as integers.
func wgmmaInputs(n int) (a, bt []uint16, A, Bt []int) {
	a, bt = make([]uint16, 64*16), make([]uint16, n*16)
	A, Bt = make([]int, 64*16), make([]int, n*16)
	for i := range A {
		A[i] = i % 256
		a[i] = leconv.BFloat16Bits(float32(A[i]))
	}
	for r := 0; r < n; r++ {
		for k := 0; k < 16; k++ {
			Bt[r*16+k] = (r+3*k)%7 - 3
			bt[r*16+k] = leconv.BFloat16Bits(float32(Bt[r*16+k]))
		}
	}
	return
}

// TestTCWgmma: wgmma m64nNk16 with A and B in shared memory in every
// swizzle mode (and A from registers), exact integer products: every
// accumulator register must hold its element of D.
func TestTCWgmma(t *testing.T) {
	v := openTC(t)
	v.needHopper(t)
	for _, n := range []int{8, 64, 256} {
		for swz := 0; swz < 4; swz++ {
			for regs := 0; regs < 2; regs++ {
				got, want := wgmmaCase(t, v, n, swz, swz, regs)
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("N=%d swizzle %d A-in-registers=%d: D[%d][%d] = %v, want %v", n, swz, regs, i/n, i%n, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestTCWgmmaWrongSwizzle: operands stored with the 128-byte swizzle but
// described as 64-byte swizzled must give a wrong product.
func TestTCWgmmaWrongSwizzle(t *testing.T) {
	v := openTC(t)
	v.needHopper(t)
	got, want := wgmmaCase(t, v, 64, 1, 2, 0)
	wrong := 0
	for i := range got {
		if got[i] != want[i] {
			wrong++
		}
	}
	if wrong == 0 {
		t.Fatal("a mismatched swizzle gave the right product")
	}
}

// wgmmaMNCase runs tc_check_wgmma_mn (A stored MN-major if transA, B if
// transB, both with swizzle; the instruction told B's layout flipped if
// flipB) on wgmmaInputs and returns D[64][n] by the fragment layout, and
// the exact product.
func wgmmaMNCase(t *testing.T, v *tcDevice, n, transA, transB, swizzle, flipB int) (got, want []float64) {
	a, bt, A, Bt := wgmmaInputs(n)
	out := v.alloc(4 * 128 * n / 2)
	v.mustLaunch("tc_check_wgmma_mn", wgmmaConfig(n), pPtr(v.upload(u16s(a))), pPtr(v.upload(u16s(bt))), pPtr(out),
		pInt(n), pInt(transA), pInt(transB), pInt(swizzle), pInt(flipB))
	d := toF32(v.download(out, 4*128*n/2))
	got, want = make([]float64, 64*n), make([]float64, 64*n)
	for th := 0; th < 128; th++ {
		w, l := th/32, th%32
		for j := 0; j < n/8; j++ {
			for e := 0; e < 4; e++ {
				row, col := 16*w+l/4+8*(e/2), 8*j+2*(l%4)+e%2
				got[row*n+col] = float64(d[th*(n/2)+4*j+e])
			}
		}
	}
	for m := 0; m < 64; m++ {
		for c := 0; c < n; c++ {
			s := 0
			for k := 0; k < 16; k++ {
				s += A[m*16+k] * Bt[c*16+k]
			}
			want[m*n+c] = float64(s)
		}
	}
	return got, want
}

// TestTCWgmmaMN: wgmma with MN-major (transposed) shared-memory operands,
// A, B or both, in every swizzle mode, at N = 16 (one column block of B
// in any swizzle; without swizzle two core matrices in N, SBO apart) and
// N = 128 (B's column blocks LBO apart in every swizzle): exact integer
// products, every accumulator register checked. The inputs' rows all
// differ (A[m][k] = 16m + k mod 256), so a layout read wrongly (K-major
// for MN-major, LBO for SBO, a missing swizzle) moves elements and fails.
func TestTCWgmmaMN(t *testing.T) {
	v := openTC(t)
	v.needHopper(t)
	for _, n := range []int{16, 128} {
		for swz := 0; swz < 4; swz++ {
			for trans := 0; trans < 4; trans++ {
				got, want := wgmmaMNCase(t, v, n, trans/2, trans%2, swz, 0)
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("N=%d swizzle %d trans-a %d trans-b %d: D[%d][%d] = %v, want %v", n, swz, trans/2, trans%2, i/n, i%n, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestTCWgmmaMNWrongLayout: B stored MN-major but read as K-major, and
// stored K-major but read as MN-major, must give a wrong product.
func TestTCWgmmaMNWrongLayout(t *testing.T) {
	v := openTC(t)
	v.needHopper(t)
	for transB := 0; transB < 2; transB++ {
		got, want := wgmmaMNCase(t, v, 128, 0, transB, 1, 1) // swizzle 1: 128-byte
		wrong := 0
		for i := range got {
			if got[i] != want[i] {
				wrong++
			}
		}
		if wrong == 0 {
			t.Errorf("B stored with trans-b %d and read with the other gave the right product", transB)
		}
	}
}

// tmaTensor is a rows x cols bf16 tensor with element (r, c) = r*cols + c
// mod 4096 (exact in bf16 up to 256; the test compares raw bits, so any
// distinct pattern works: it uses the index's low 16 bits as raw bf16).
func tmaTensor(rows, cols int) []uint16 {
	m := make([]uint16, rows*cols)
	for i := range m {
		m[i] = uint16(i + 1)
	}
	return m
}

var swizzleBytes = map[Swizzle]int{SwizzleNone: 0, Swizzle32B: 32, Swizzle64B: 64, Swizzle128B: 128}

func swizzleAddr(a int, span int) int {
	switch span {
	case 128:
		return a ^ ((a >> 7 & 7) << 4)
	case 64:
		return a ^ ((a >> 7 & 3) << 4)
	case 32:
		return a ^ ((a >> 7 & 1) << 4)
	}
	return a
}

// TestTCTma: TMA 2-D loads in every swizzle mode, in bounds, across the
// far edges and at negative coordinates (zero fill), and the TMA store
// back (which must undo the swizzle and clip to the tensor).
func TestTCTma(t *testing.T) {
	v := openTC(t)
	v.needHopper(t)
	const rows, cols = 40, 72
	src := tmaTensor(rows, cols)
	in := v.upload(u16s(src))
	for _, swz := range []Swizzle{SwizzleNone, Swizzle32B, Swizzle64B, Swizzle128B} {
		bw := 16
		if s := swizzleBytes[swz]; s > 0 {
			bw = s / 2
		}
		const bh = 16
		for _, at := range [][2]int{{0, 0}, {8, 16}, {cols - 10, rows - 3}, {-8, -5}} {
			outT := v.alloc(rows * cols * 2)
			if err := v.d.Zero(outT, rows*cols*2); err != nil {
				t.Fatal(err)
			}
			spec := func(base uintptr) TensorMapSpec {
				return TensorMapSpec{DataType: TensorBFloat16, Base: base, Dims: []uint64{cols, rows}, Strides: []uint64{cols * 2},
					Box: []uint32{uint32(bw), bh}, Swizzle: swz}
			}
			mIn, err := v.x.EncodeTensorMap(spec(in))
			if err != nil {
				t.Fatal(err)
			}
			mOut, err := v.x.EncodeTensorMap(spec(outT))
			if err != nil {
				t.Fatal(err)
			}
			boxBytes := bw * bh * 2
			out := v.alloc(boxBytes)
			x, y := at[0], at[1]
			sx, sy := 4, rows-bh/2 // the store crosses the bottom edge
			v.mustLaunch("tc_check_tma", cfg1(1, 128, boxBytes+8+1024), pMap(mIn), pMap(mOut), pPtr(out), pInt(boxBytes),
				pInt(x), pInt(y), pInt(sx), pInt(sy), pInt(0))
			got := v.download(out, boxBytes)
			box := make([]uint16, bw*bh) // the box as loaded, unswizzled
			for r := 0; r < bh; r++ {
				for c := 0; c < bw; c++ {
					var want uint16
					if gx, gy := x+c, y+r; gx >= 0 && gy >= 0 && gx < cols && gy < rows {
						want = src[gy*cols+gx]
					}
					box[r*bw+c] = want
					off := swizzleAddr(r*bw*2+c*2, swizzleBytes[swz])
					if g := binary.LittleEndian.Uint16(got[off:]); g != want {
						t.Fatalf("swizzle %d box at (%d,%d): element (%d,%d) at byte %d = %#x, want %#x", swz, x, y, r, c, off, g, want)
					}
				}
			}
			stored := v.download(outT, rows*cols*2)
			for r := 0; r < rows; r++ {
				for c := 0; c < cols; c++ {
					var want uint16
					if br, bc := r-sy, c-sx; br >= 0 && bc >= 0 && br < bh && bc < bw {
						want = box[br*bw+bc]
					}
					if g := binary.LittleEndian.Uint16(stored[2*(r*cols+c):]); g != want {
						t.Fatalf("swizzle %d: TMA store at (%d,%d): element (%d,%d) = %#x, want %#x", swz, sx, sy, r, c, g, want)
					}
				}
			}
		}
	}
}

// TestTCCluster: clusters of 2 and 4 blocks; block rank 0 multicasts one
// TMA box to every block of its cluster; each block must see the whole box
// and its rank (x fastest within the cluster).
func TestTCCluster(t *testing.T) {
	v := openTC(t)
	v.needHopper(t)
	const rows, cols, bw, bh = 16, 64, 64, 8
	src := tmaTensor(rows, cols)
	m, err := v.x.EncodeTensorMap(TensorMapSpec{DataType: TensorBFloat16, Base: v.upload(u16s(src)), Dims: []uint64{cols, rows},
		Strides: []uint64{cols * 2}, Box: []uint32{bw, bh}, Swizzle: Swizzle128B})
	if err != nil {
		t.Fatal(err)
	}
	const boxBytes = bw * bh * 2
	for _, ctas := range []int{2, 4} {
		const blocks = 8
		out, ranks := v.alloc(blocks*boxBytes), v.alloc(4*blocks)
		v.mustLaunch("tc_check_cluster", LaunchConfig{Grid: [3]int{blocks, 1, 1}, Block: [3]int{128, 1, 1}, Cluster: [3]int{ctas, 1, 1},
			SharedBytes: boxBytes + 16 + 1024}, pMap(m), pPtr(out), pPtr(ranks), pInt(boxBytes))
		got, rk := v.download(out, blocks*boxBytes), v.download(ranks, 4*blocks)
		for b := 0; b < blocks; b++ {
			if r := int(binary.LittleEndian.Uint32(rk[4*b:])); r != b%ctas {
				t.Fatalf("cluster of %d: block %d has rank %d, want %d", ctas, b, r, b%ctas)
			}
			for r := 0; r < bh; r++ {
				for c := 0; c < bw; c++ {
					off := b*boxBytes + swizzleAddr(r*bw*2+c*2, 128)
					if g := binary.LittleEndian.Uint16(got[off:]); g != src[r*cols+c] {
						t.Fatalf("cluster of %d: block %d element (%d,%d) = %#x, want %#x", ctas, b, r, c, g, src[r*cols+c])
					}
				}
			}
		}
	}
}

// gemmCase is one reference GEMM: C[M,N] = A[M,K] B[N,K]^T.
type gemmCase struct{ M, N, K int }

var gemmCases = []gemmCase{{64, 64, 64}, {100, 72, 40}, {1, 130, 8}, {129, 65, 200}}

// gemmInputs returns bf16 A and B with values in [-1, 1) and their float64
// values.
func gemmInputs(c gemmCase, seed uint64) (a, b []uint16, af, bf []float64) {
	r := rand.New(rand.NewPCG(seed, uint64(c.M*1000003+c.N*1009+c.K)))
	gen := func(n int) ([]uint16, []float64) {
		h, f := make([]uint16, n), make([]float64, n)
		for i := range h {
			h[i] = leconv.BFloat16Bits(float32(r.Float64()*2 - 1))
			f[i] = float64(leconv.BFloat16Value(h[i]))
		}
		return h, f
	}
	a, af = gen(c.M * c.K)
	b, bf = gen(c.N * c.K)
	return
}

// checkGemm compares C with the float64 product of the bf16 inputs.
//
// Tolerance: every product of two bf16 values is exact in f32 (8+8
// significant bits), so the only error is the f32 accumulation of K terms:
// each addition rounds a partial sum bounded by S = sum_k |a_ik||b_jk|, by
// at most 2^-24 S with round-to-nearest; allowing 2^-23 per addition (a
// tensor core may truncate rather than round) over K additions gives
// |C - ref| <= K 2^-23 S per element. A wrong layout, a missing tile or a
// stale stage errs by O(|a||b|) = O(S/K), far above it.
func checkGemm(t *testing.T, name string, c gemmCase, got []float32, af, bf []float64) {
	t.Helper()
	for i := 0; i < c.M; i++ {
		for j := 0; j < c.N; j++ {
			ref, s := 0.0, 0.0
			for k := 0; k < c.K; k++ {
				p := af[i*c.K+k] * bf[j*c.K+k]
				ref += p
				s += math.Abs(p)
			}
			tol := float64(c.K) * math.Ldexp(s, -23)
			if g := float64(got[i*c.N+j]); !(math.Abs(g-ref) <= tol) {
				t.Fatalf("%s %dx%dx%d: C[%d][%d] = %v, want %v within %.3g", name, c.M, c.N, c.K, i, j, g, ref, tol)
			}
		}
	}
}

// TestGemmBF16MmaRef: the mma.sync + ldmatrix + cp.async reference GEMM.
func TestGemmBF16MmaRef(t *testing.T) {
	v := openTC(t)
	for _, c := range gemmCases {
		a, b, af, bf := gemmInputs(c, 1)
		out := v.alloc(4 * c.M * c.N)
		grid := [3]int{(c.N + 63) / 64, (c.M + 63) / 64, 1}
		v.mustLaunch("gemm_bf16_mma_ref", LaunchConfig{Grid: grid, Block: [3]int{128, 1, 1}, SharedBytes: gemmMmaSmem},
			pPtr(v.upload(u16s(a))), pPtr(v.upload(u16s(b))), pPtr(out), pInt(c.M), pInt(c.N), pInt(c.K))
		checkGemm(t, "mma.sync", c, toF32(v.download(out, 4*c.M*c.N)), af, bf)
	}
}

// The kernels' dynamic shared memory (GEMM_MMA_SMEM, GEMM_WGMMA_SMEM).
const (
	gemmMmaSmem   = 2 * (2 * 64 * 40) * 2
	gemmWgmmaSmem = 3*2*64*64*2 + 2*3*8 + 1024
)

// TestGemmBF16WgmmaRef: the TMA + mbarrier + wgmma reference GEMM
// (producer and consumer warpgroups, a three-stage ring).
func TestGemmBF16WgmmaRef(t *testing.T) {
	v := openTC(t)
	v.needHopper(t)
	k := v.kernel("gemm_bf16_wgmma_ref")
	if err := v.x.SetMaxDynamicShared(k, gemmWgmmaSmem); err != nil {
		t.Fatal(err)
	}
	for _, c := range gemmCases {
		a, b, af, bf := gemmInputs(c, 2)
		mapOf := func(p uintptr, rows int) []byte {
			m, err := v.x.EncodeTensorMap(TensorMapSpec{DataType: TensorBFloat16, Base: p, Dims: []uint64{uint64(c.K), uint64(rows)},
				Strides: []uint64{uint64(2 * c.K)}, Box: []uint32{64, 64}, Swizzle: Swizzle128B})
			if err != nil {
				t.Fatal(err)
			}
			return m[:]
		}
		out := v.alloc(4 * c.M * c.N)
		grid := [3]int{(c.N + 63) / 64, (c.M + 63) / 64, 1}
		v.mustLaunch("gemm_bf16_wgmma_ref", LaunchConfig{Grid: grid, Block: [3]int{256, 1, 1}, SharedBytes: gemmWgmmaSmem},
			mapOf(v.upload(u16s(a)), c.M), mapOf(v.upload(u16s(b)), c.N), pPtr(out), pInt(c.M), pInt(c.N), pInt(c.K))
		checkGemm(t, "wgmma", c, toF32(v.download(out, 4*c.M*c.N)), af, bf)
	}
}

// TestTCLaunchChecks: what LaunchEx refuses before running anything.
func TestTCLaunchChecks(t *testing.T) {
	v := openTC(t)
	out := v.alloc(4 * 2048)
	for _, c := range []struct {
		cfg  LaunchConfig
		want string
	}{
		{LaunchConfig{Grid: [3]int{1, 1, 1}, Block: [3]int{2048, 1, 1}}, "1024"},
		{LaunchConfig{Grid: [3]int{3, 1, 1}, Block: [3]int{64, 1, 1}, Cluster: [3]int{2, 1, 1}}, "multiple"},
		{LaunchConfig{Grid: [3]int{1, 1, 1}, Block: [3]int{64, 1, 1}, SharedBytes: 100 << 10}, "shared"},
		{LaunchConfig{Grid: [3]int{0, 1, 1}, Block: [3]int{64, 1, 1}}, ""},
	} {
		err := v.launch("tc_check_geometry", c.cfg, pPtr(out))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", c.cfg, err, c.want)
		}
	}
	if err := v.launch("tc_check_geometry", cfg1(1, 64, 256), pInt(0)); err == nil {
		t.Error("a 4-byte parameter where the kernel takes a pointer: no error")
	}
}
