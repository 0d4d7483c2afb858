//go:build cuda

package cuda

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/kernels"
	"github.com/dinoclip/dinoclip/nn"
)

// openWgmma opens a Device of its own (the check changes the device's
// path) and skips where the loaded kernels have no wgmma path
// (DINOCLIP_CUDA_KERNELS=ptx, or a GPU other than Hopper): there the check
// has nothing to check, which TestCheckWgmmaPasses asserts.
func openWgmma(t *testing.T) *Device {
	t.Helper()
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var wgmma bool
	on(t, d, func() error { wgmma = d.tc.wgmma; return nil })
	if !wgmma {
		t.Skipf("%s runs no wgmma kernels", d)
	}
	return d
}

// TestCheckWgmmaPasses: a bf16 engine's open runs the check, and on right
// kernels the device keeps the wgmma path, says nothing of a fallback, and
// gets back the memory the check used; a later device of the process takes
// the verdict without a check of its own. Where no wgmma path is loaded
// the check does not run.
func TestCheckWgmmaPasses(t *testing.T) {
	e, err := NewBF16Engine(nn.Config{InputDim: 64, HiddenDim: 64, OutputDim: 32, Blocks: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d := e.dev
	var wgmma, checked bool
	var fallback string
	on(t, d, func() error { wgmma, checked, fallback = d.tc.wgmma, d.tc.checked, d.tc.fallback; return nil })
	if fallback != "" || strings.Contains(d.String(), "mma.sync") {
		t.Fatalf("the check failed on the emulator's kernels: %s (%s)", fallback, d)
	}
	if e.dev.drv.(driver.Extended).KernelPath() != kernels.SM90a.Key {
		if checked || wgmma {
			t.Fatalf("without the sm_90a kernels: checked %v, wgmma %v", checked, wgmma)
		}
		return
	}
	if !checked || !wgmma {
		t.Fatalf("after the open: checked %v, wgmma %v", checked, wgmma)
	}
	// No memory kept.
	var inUse, after int64
	on(t, d, func() error {
		inUse = d.inUse
		err := d.runWgmmaCheck()
		after, wgmma = d.inUse, d.tc.wgmma
		return err
	})
	if after != inUse || !wgmma {
		t.Fatalf("a second check: %d bytes in use (%d before), wgmma %v", after, inUse, wgmma)
	}
	// Once per process: a later device takes the verdict, a failed one
	// too.
	wgmmaVerdict.Lock()
	saved := wgmmaVerdict.fallback
	wgmmaVerdict.fallback = "a test's verdict"
	wgmmaVerdict.Unlock()
	defer func() { wgmmaVerdict.Lock(); wgmmaVerdict.fallback = saved; wgmmaVerdict.Unlock() }()
	d2 := openWgmma(t)
	on(t, d2, d2.checkWgmma)
	on(t, d2, func() error { wgmma, fallback = d2.tc.wgmma, d2.tc.fallback; return nil })
	if wgmma || fallback != "a test's verdict" {
		t.Fatalf("a later device: wgmma %v, fallback %q", wgmma, fallback)
	}
}

// swizzleLiar encodes every tensor map with swizzle instead of the one
// asked for: TMA then fills shared memory in another order than the wgmma
// descriptors read (SwizzleNone), or the map is refused (Swizzle64B is
// narrower than the kernels' 128-byte box rows): the two ways a wgmma
// kernel can fail the check, a wrong result and a failed launch.
type swizzleLiar struct {
	fullDriver
	swizzle driver.Swizzle
}

func (l swizzleLiar) EncodeTensorMap(spec driver.TensorMapSpec) (driver.TensorMap, error) {
	spec.Swizzle = l.swizzle
	return l.fullDriver.EncodeTensorMap(spec)
}

// TestCheckWgmmaFallsBack: a wgmma kernel that computes wrong values or
// cannot launch moves the device to the mma.sync kernels, with a reason
// naming the first case that failed, in the device's description; the
// GEMMs after it are right.
func TestCheckWgmmaFallsBack(t *testing.T) {
	for _, c := range []struct {
		name    string
		swizzle driver.Swizzle
		why     string
	}{
		{"wrong values", driver.SwizzleNone, "gemm_bf16_nt_f32: C["},
		{"failed launch", driver.Swizzle64B, "gemm_bf16_nt_f32 failed: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := openWgmma(t)
			on(t, d, func() error {
				liar := swizzleLiar{d.drv.(fullDriver), c.swizzle}
				d.drv, d.tc.ext = liar, liar
				return d.runWgmmaCheck()
			})
			var wgmma bool
			var fallback string
			on(t, d, func() error { wgmma, fallback = d.tc.wgmma, d.tc.fallback; return nil })
			if wgmma || !strings.HasPrefix(fallback, c.why) {
				t.Fatalf("after the check: wgmma %v, fallback %q (want it to start %q)", wgmma, fallback, c.why)
			}
			if s := d.String(); !strings.Contains(s, "bf16 GEMMs on the mma.sync kernels") || !strings.Contains(s, fallback) {
				t.Fatalf("description %q says nothing of the fallback", s)
			}
			// A GEMM after the fallback (the driver still lies about
			// tensor maps, which mma.sync does not use).
			const m, n, k = 40, 48, 72
			aBits, a := bf16Round(randn(rand.New(rand.NewPCG(1, 1)), m*k, 1))
			wBits, w := bf16Round(randn(rand.New(rand.NewPCG(2, 2)), n*k, 1))
			dc := devAlloc[float32](t, d, m*n)
			da, dw := devCopy(t, d, aBits), devCopy(t, d, wBits)
			on(t, d, func() error { return d.gemmBF16F32(dc, da, dw, buf[float32]{}, m, n, k) })
			got := fetch(t, d, dc)
			for i := range m {
				for j := range n {
					ref, tol := ntReference(a, w, make([]float32, n), k, i, j)
					if g := float64(got[i*n+j]); !(math.Abs(g-ref) <= tol) {
						t.Fatalf("after the fallback: C[%d][%d] = %v, want %v within %.3g", i, j, g, ref, tol)
					}
				}
			}
		})
	}
}

// TestCompareCheckCase: the check's comparison fails on what it is for (a
// value off by far more than the summation order allows, a NaN left
// unwritten, a statistic of the wrong count or mean) and passes on the
// differences two right kernels have (within the f32 and bf16 rounding
// bounds), on host data.
func TestCompareCheckCase(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	const mn = checkM * checkN
	s := make([]float64, mn)
	c := make([]float64, mn)
	for i := range s {
		s[i] = 200 + 10*rng.Float64()
		c[i] = 20 * rng.NormFloat64()
	}
	bias, old := make([]float32, checkN), make([]float32, mn)
	tau := 2 * float64(checkK+1) * math.Ldexp(200, -23) // the smallest element's bound
	clone := func(v []float64) []float64 { return append([]float64(nil), v...) }
	bf16 := func(v []float64) []float64 {
		r := make([]float64, len(v))
		for i, x := range v {
			r[i] = float64(leconv.BFloat16Value(leconv.BFloat16Bits(float32(x))))
		}
		return r
	}
	stats := func(c []float64) []float64 {
		tiles := statsTiles(checkN)
		st := make([]float64, checkM*tiles*3)
		for i := range checkM {
			for tl := range tiles {
				vals := c[i*checkN+tl*statsTile : i*checkN+min(checkN, (tl+1)*statsTile)]
				var mean, m2 float64
				for _, v := range vals {
					mean += v
				}
				mean /= float64(len(vals))
				for _, v := range vals {
					m2 += (v - mean) * (v - mean)
				}
				copy(st[(i*tiles+tl)*3:], []float64{float64(len(vals)), mean, m2})
			}
		}
		return st
	}
	// near moves every value by 0.9 tau, as summation order may.
	near := func(v []float64) []float64 {
		r := clone(v)
		for i := range r {
			r[i] += 0.9 * tau
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		cs     checkCase
		wg     checkOutput
		mma    checkOutput
		wantOK bool
	}{
		{"f32 within the bound", checkCase{ntF32, 1}, checkOutput{c: near(c)}, checkOutput{c: c}, true},
		{"f32 off by 3 tau", checkCase{nnF32, 1}, checkOutput{c: func() []float64 { r := clone(c); r[mn-1] += 3 * tau; return r }()}, checkOutput{c: c}, false},
		{"NaN left", checkCase{tnF32, 2}, checkOutput{c: func() []float64 { r := clone(c); r[77] = math.NaN(); return r }()}, checkOutput{c: c}, false},
		{"bf16 a rounding apart", checkCase{ntF32BF16, 1}, checkOutput{c: c, second: bf16(near(c))}, checkOutput{c: c, second: bf16(c)}, true},
		{"act of the wrong column", checkCase{ntF32GELU, 1}, checkOutput{c: c, second: func() []float64 { r := bf16(c); r[5], r[6] = r[6], r[5]; return r }()}, checkOutput{c: c, second: bf16(c)}, false},
		{"stats of the stored C", checkCase{ntF32Stats, 1}, checkOutput{c: near(c), second: stats(near(c))}, checkOutput{c: c, second: stats(c)}, true},
		{"stats' count", checkCase{ntF32Stats, 1}, checkOutput{c: c, second: func() []float64 { r := stats(c); r[3] = 63; return r }()}, checkOutput{c: c, second: stats(c)}, false},
		{"stats' mean", checkCase{ntBF16Stats, 1}, checkOutput{c: c, second: stats(c)}, checkOutput{c: c, second: func() []float64 { r := stats(c); r[1] += 0.01; return r }()}, false},
	} {
		why := compareCheckCase(tc.cs, tc.wg, tc.mma, s, bias, old)
		if (why == "") != tc.wantOK {
			t.Errorf("%s: compareCheckCase says %q", tc.name, why)
		}
	}
}

// lostContext fails every extended launch, and every Sync after one, as
// a context a faulting kernel took with it does.
type lostContext struct {
	fullDriver
	lost *bool
}

func (l lostContext) LaunchEx(k int, cfg driver.LaunchConfig, params [][]byte) error {
	*l.lost = true
	return errors.New("an illegal instruction was encountered")
}

func (l lostContext) Sync() error {
	if *l.lost {
		return errors.New("an illegal instruction was encountered")
	}
	return l.fullDriver.Sync()
}

// TestCheckWgmmaLostContext: a wgmma kernel that takes the context with it
// fails the check with an error naming the way around it, rather than
// falling back to kernels that cannot run on a lost context either.
func TestCheckWgmmaLostContext(t *testing.T) {
	d := openWgmma(t)
	var lost bool
	var inner fullDriver
	on(t, d, func() error { inner = d.drv.(fullDriver); return nil })
	err := d.do(func() error {
		l := lostContext{inner, &lost}
		d.drv, d.tc.ext = l, l
		return d.runWgmmaCheck()
	})
	on(t, d, func() error { d.drv, d.tc.ext = inner, inner; return nil })
	if err == nil || !strings.Contains(err.Error(), "gemm_bf16_nt_f32 failed on this GPU and took the CUDA context with it") ||
		!strings.Contains(err.Error(), "DINOCLIP_CUDA_KERNELS=ptx") {
		t.Fatalf("the check says %v", err)
	}
}
