//go:build cuda

package cuda

// Tests of the bf16 GEMM launcher (gemm_bf16.go), its nt, nn and tn
// layouts on both of its paths, the wgmma kernels and the mma.sync
// fallback, against a float64 product of the same bf16 inputs. The
// kernels' own edge cases (ragged tiles, ring wraps, odd N) are tested at
// the driver level (cuda/driver/gemm_bf16_test.go,
// gemm_bf16_bwd_test.go); these check what the launcher adds: path
// choice, grid, shared memory, tensor maps (K-major and MN-major boxes)
// and their cache, and the argument checks.

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
)

// bf16Round returns v rounded to bf16 (nearest even), as bits and as values.
func bf16Round(v []float32) ([]uint16, []float64) {
	bits, vals := make([]uint16, len(v)), make([]float64, len(v))
	for i, x := range v {
		bits[i] = leconv.BFloat16Bits(x)
		vals[i] = float64(leconv.BFloat16Value(bits[i]))
	}
	return bits, vals
}

// gemmPaths are the GEMM paths d can run: the mma.sync fallback always,
// the wgmma kernels only where the sm_90a cubins are loaded (their PTX
// build traps); in the emulator, both unless DINOCLIP_CUDA_KERNELS=ptx.
func gemmPaths(t *testing.T, d *Device) []bool {
	var wgmma bool
	on(t, d, func() error { wgmma = d.tc.wgmma; return nil })
	if wgmma {
		return []bool{true, false}
	}
	return []bool{false}
}

// bothGemmPaths runs f on each of gemmPaths(d) of the shared test device,
// restoring its choice afterwards.
func bothGemmPaths(t *testing.T, d *Device, f func(t *testing.T, wgmma bool)) {
	var saved bool
	on(t, d, func() error { saved = d.tc.wgmma; return nil })
	t.Cleanup(func() { d.do(func() error { d.tc.wgmma = saved; return nil }) })
	for _, wgmma := range gemmPaths(t, d) {
		name := "mma.sync"
		if wgmma {
			name = "wgmma"
		}
		t.Run(name, func(t *testing.T) {
			on(t, d, func() error { d.tc.wgmma = wgmma; return nil })
			f(t, wgmma)
		})
	}
}

// TestGemmBF16Launcher: each epilogue on shapes of one and several tiles
// (ragged M and N, K of one and several chunks), with and without bias.
//
// Tolerance: bf16 products are exact in f32 and the f32 accumulation of
// the K+1 terms errs by at most (K+1) 2^-23 S, S = sum |a w| + |bias| (the
// driver test's bound, which allows a truncating tensor core); the bf16
// epilogues add the bf16 rounding, 2^-8 of the value, and GELU moves the
// f32 error by at most 1.13 times plus 2^-14 relative for its f32
// evaluation. A misplaced tile, a lost bias or the wrong epilogue errs by
// O(S/K) or more.
func TestGemmBF16Launcher(t *testing.T) {
	d := testDevice(t)
	bothGemmPaths(t, d, func(t *testing.T, wgmma bool) {
		for ci, c := range []struct{ m, n, k int }{{24, 64, 48}, {200, 136, 72}, {130, 260, 200}} {
			for _, out := range []gemmKind{ntF32, ntGELUBF16} {
				rng := rand.New(rand.NewPCG(uint64(ci), uint64(out)))
				aBits, a := bf16Round(randn(rng, c.m*c.k, 1))
				wBits, w := bf16Round(randn(rng, c.n*c.k, 1))
				var bias buf[float32]
				biasHost := make([]float32, c.n)
				if ci != 1 {
					biasHost = randn(rng, c.n, 1)
					bias = devCopy(t, d, biasHost)
				}
				da, dw := devCopy(t, d, aBits), devCopy(t, d, wBits)
				got := make([]float64, c.m*c.n)
				if out == ntF32 {
					dc := devCopy(t, d, nanFill(c.m*c.n))
					on(t, d, func() error { return d.gemmBF16F32(dc, da, dw, bias, c.m, c.n, c.k) })
					for i, v := range fetch(t, d, dc) {
						got[i] = float64(v)
					}
				} else {
					dc := devAlloc[uint16](t, d, c.m*c.n)
					on(t, d, func() error { return d.gemmBF16GELU(dc, da, dw, bias, c.m, c.n, c.k) })
					for i, v := range fetch(t, d, dc) {
						got[i] = float64(leconv.BFloat16Value(v))
					}
				}
				for i := 0; i < c.m; i++ {
					for j := 0; j < c.n; j++ {
						ref, tol := ntReference(a, w, biasHost, c.k, i, j)
						if out == ntGELUBF16 {
							ref, tol = geluBF16Bound(ref, tol)
						}
						if g := got[i*c.n+j]; !(math.Abs(g-ref) <= tol) {
							t.Fatalf("%s %dx%dx%d: C[%d][%d] = %v, want %v within %.3g", out, c.m, c.n, c.k, i, j, g, ref, tol)
						}
					}
				}
			}
		}
		if wgmma {
			// The wgmma launches encoded tensor maps: the cache is cleared
			// by every free, so at least the last GEMM's two are there.
			var before int
			on(t, d, func() error { before = len(d.tc.maps); return nil })
			if before < 2 {
				t.Errorf("%d tensor maps cached after the launches", before)
			}
		}
	})
}

// TestGemmBF16BackwardLaunchers: the nn launchers (c = a b and c += a b,
// the data gradient) and the tn one (c = a^T b, the weight gradient),
// whole and split along K in 2, 3 and 5 (through NaN-filled partial
// slices; with fewer chunks than splits some splits are empty and must
// write zeros), with 2 persistent blocks walking the (tile, split) pairs
// (the ring's phases carry across them), on shapes of
// one and several tiles: nn with M ragged (any M; N and K multiples of 8),
// tn with K ragged (the batch; M and N multiples of 8), and K of one chunk
// and several. C starts as random values for nn's add (which must be kept
// and added to) and as NaN for the others (which must be overwritten).
//
// Tolerance: as TestGemmBF16Launcher's f32 epilogue, (K+1) 2^-23 S with S
// = sum |a b| (+ |C's old value| for nn, the one more f32 addition). A
// layout read the wrong way round, a dropped old value or a misplaced
// tile errs by O(S/K) or more.
func TestGemmBF16BackwardLaunchers(t *testing.T) {
	d := testDevice(t)
	var sms int
	on(t, d, func() error { sms = d.tc.sms; d.tc.sms = 2; return nil })
	t.Cleanup(func() { d.do(func() error { d.tc.sms = sms; return nil }) })
	bothGemmPaths(t, d, func(t *testing.T, wgmma bool) {
		// The last shape gives each of the 2 blocks five tiles of 9-10 K
		// chunks: the consumers' turns and the ring's phases over several
		// rounds.
		for ci, c := range []struct{ m, n, k int }{{24, 64, 48}, {200, 136, 72}, {136, 264, 197}, {520, 136, 600}} {
			for vi, v := range []struct {
				kind   gemmKind
				splits int
			}{{nnF32, 1}, {nnF32Add, 1}, {tnF32, 1}, {tnF32, 2}, {tnF32, 3}, {tnF32, 5}} {
				kind := v.kind
				m, n, k := c.m, c.n, c.k
				if kind != tnF32 {
					// nn: M ragged, K a multiple of 8.
					m, k = c.k+3, c.m
				}
				rng := rand.New(rand.NewPCG(uint64(ci), 100+uint64(vi)))
				aBits, a := bf16Round(randn(rng, m*k, 1))
				bBits, b := bf16Round(randn(rng, k*n, 1))
				old := nanFill(m * n)
				if kind == nnF32Add {
					old = randn(rng, m*n, 1)
				}
				da, db, dc := devCopy(t, d, aBits), devCopy(t, d, bBits), devCopy(t, d, old)
				parts := devCopy(t, d, nanFill(v.splits*m*n))
				on(t, d, func() error {
					if kind != tnF32 {
						return d.gemmBF16NN(dc, da, db, m, n, k, kind == nnF32Add)
					}
					return d.gemmBF16TNSplit(dc, da, db, m, n, k, parts, v.splits)
				})
				got := fetch(t, d, dc)
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						var ref, s float64
						if kind == nnF32Add {
							ref, s = float64(old[i*n+j]), math.Abs(float64(old[i*n+j]))
						}
						for p := 0; p < k; p++ {
							// a is [m,k] for nn, [k,m] for tn; b is [k,n].
							av := a[i*k+p]
							if kind == tnF32 {
								av = a[p*m+i]
							}
							ref += av * b[p*n+j]
							s += math.Abs(av * b[p*n+j])
						}
						tol := f32SumBound(k+1, s)
						if g := float64(got[i*n+j]); !(math.Abs(g-ref) <= tol) {
							t.Fatalf("%s in %d splits %dx%dx%d: C[%d][%d] = %v, want %v within %.3g", kind, v.splits, m, n, k, i, j, g, ref, tol)
						}
					}
				}
			}
		}
	})
}

// TestGemmBF16TensorMapCache: launching the same operands again encodes no
// new tensor map; freeing memory empties the cache.
func TestGemmBF16TensorMapCache(t *testing.T) {
	d := testDevice(t)
	bothGemmPaths(t, d, func(t *testing.T, wgmma bool) {
		if !wgmma {
			return
		}
		const m, n, k = 16, 24, 32
		a, w, c := devAlloc[uint16](t, d, m*k), devAlloc[uint16](t, d, n*k), devAlloc[float32](t, d, m*n)
		on(t, d, func() error { return d.drv.Zero(a.p, 2*m*k) })
		on(t, d, func() error { return d.drv.Zero(w.p, 2*n*k) })
		var none buf[float32]
		var first, second int
		on(t, d, func() error { clear(d.tc.maps); return d.gemmBF16F32(c, a, w, none, m, n, k) })
		on(t, d, func() error { first = len(d.tc.maps); return d.gemmBF16F32(c, a, w, none, m, n, k) })
		on(t, d, func() error { second = len(d.tc.maps); return nil })
		if first != 2 || second != 2 {
			t.Errorf("tensor maps after one launch %d, after two %d; want 2 and 2", first, second)
		}
		tmp := devAlloc[float32](t, d, 1)
		on(t, d, func() error { return d.free(tmp.p) })
		on(t, d, func() error { first = len(d.tc.maps); return nil })
		if first != 0 {
			t.Errorf("%d tensor maps cached after a free", first)
		}
	})
}

// TestGemmBF16LauncherChecks: bad shapes and buffers are refused with an
// error that says what is wrong, before anything is launched.
func TestGemmBF16LauncherChecks(t *testing.T) {
	d := testDevice(t)
	a, w := devAlloc[uint16](t, d, 64*64), devAlloc[uint16](t, d, 64*64)
	c, cb := devAlloc[float32](t, d, 64*64), devAlloc[uint16](t, d, 64*64)
	var none buf[float32]
	for _, tc := range []struct {
		name, want string
		call       func() error
	}{
		{"K not a multiple of 8", "not a multiple of 8", func() error { return d.gemmBF16F32(c, a, w, none, 8, 8, 12) }},
		{"zero rows", "out of range", func() error { return d.gemmBF16F32(c, a, w, none, 0, 8, 8) }},
		{"short A", "A: buffer of", func() error { return d.gemmBF16F32(c, a, w, none, 65, 8, 64) }},
		{"short C", "C: buffer of", func() error { return d.gemmBF16F32(c.at(0, 10), a, w, none, 8, 8, 8) }},
		{"short bias", "bias: buffer of", func() error { return d.gemmBF16F32(c, a, w, c.at(0, 4), 8, 8, 8) }},
		{"null W", "null buffer", func() error { return d.gemmBF16F32(c, a, buf[uint16]{}, none, 8, 8, 8) }},
		{"misaligned A", "16-byte aligned", func() error { return d.gemmBF16F32(c, a.at(4, 64), w, none, 8, 8, 8) }},
		{"misaligned C", "aligned", func() error { return d.gemmBF16F32(c.at(1, 64), a, w, none, 8, 8, 8) }},
		{"nn N not a multiple of 8", "N = 12 is not a multiple of 8", func() error { return d.gemmBF16NN(c, a, w, 9, 12, 8, true) }},
		{"nn K not a multiple of 8", "K = 12 is not a multiple of 8", func() error { return d.gemmBF16NN(c, a, w, 9, 8, 12, false) }},
		{"tn M not a multiple of 8", "M = 9 is not a multiple of 8", func() error { return d.gemmBF16TN(c, a, w, 9, 8, 5, buf[float32]{}) }},
		{"tn short B", "B: buffer of", func() error { return d.gemmBF16TN(c, a, w.at(0, 100), 8, 16, 7, buf[float32]{}) }},
		{"nn misaligned C", "8-byte aligned", func() error { return d.gemmBF16NN(c.at(1, 64), a, w, 8, 8, 8, false) }},
		{"short stats", "stats: buffer of 5 elements, need 24", func() error { return d.gemmBF16F32Stats(c, c.at(0, 5), a, w, none, 8, 8, 8) }},
		{"null act", "act: null buffer", func() error { return d.gemmBF16F32Act(ntF32GELU, c, buf[uint16]{}, a, w, none, 8, 8, 8) }},
		{"misaligned act", "not 4-byte aligned", func() error { return d.gemmBF16F32Act(ntF32GELU, c, cb.at(1, 100), a, w, none, 8, 8, 8) }},
		{"second output of an f32 GEMM", "writes no second output", func() error {
			return d.gemmBF16(ntF32, outOf(c), outOf(c), a, w, none, 8, 8, 8)
		}},
	} {
		err := d.do(tc.call)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestGemmBF16FusedEpilogues: the nt GEMM's two epilogues with a second
// output on both paths, on shapes of one and several tiles with ragged M
// and N (N = 75: odd, no paired stores, a partial 11-column statistics
// tile; N = 260: a 4-column last tile), with and without bias. The wgmma
// path runs on 3 persistent blocks, so blocks take several output tiles
// (the ring's phases and the statistics' tile index across tiles). Every
// output buffer is followed by NaN sentinels that must survive.
//
//   - ntF32Stats: C as TestGemmBF16Launcher's f32 epilogue, (K+1) 2^-23 S
//     from the float64 product of the bf16 inputs. The statistics
//     (count, mean, M2 of the stored C in each 64-column tile) against
//     float64 statistics of the stored C: the count exactly; with u =
//     2^-24, A = the tile's largest |C|, n = 64, L = 3 merge levels (the
//     quad's 2, the mma.sync path's warp pair 1): a thread's f32 sum of k
//     <= 16 values and the division err by k u A, each Chan merge adds at
//     most 5 u A (delta, the weight, the fma) to the mean, so |mean err|
//     <= (16 + 5 L) u A <= 2^-19 A; the two-pass M2 errs by (k + 2) u M2,
//     each merge by 4 u M2 more, and a merge's delta^2 na nb / n term
//     carries the means' errors as 2 |delta| (2 mean err) na nb / n <=
//     2 A mean err n / 4 per level, so |M2 err| <= 2^-19 M2 + L n A
//     2^-19 A <= 2^-19 (M2 + 3 n A^2). Against the float64 reference the
//     statistics then err by these plus C's own bound. A lost column or
//     row moves M2 by about M2/64, the wrong tile or bias far more.
//   - ntF32GELU: C as above; act against the float64 GELU of the stored
//     C within 2^-14 |GELU| + 2^-126 (the f32 evaluation, as
//     TestGemmBF16Launcher's) plus the bf16 rounding, 2^-8 of the value.
//   - ntF32BF16: C as above; act exactly bf16 of the stored C.
//   - ntBF16Stats: C within ntF32Stats's bound plus the bf16 rounding
//     (2^-8 of the value), and the statistics as ntF32Stats's, of the
//     stored (rounded) C: the values a LayerNorm reading it sees.
func TestGemmBF16FusedEpilogues(t *testing.T) {
	d := testDevice(t)
	var sms int
	on(t, d, func() error { sms = d.tc.sms; d.tc.sms = 3; return nil })
	t.Cleanup(func() { d.do(func() error { d.tc.sms = sms; return nil }) })
	const pad = 16 // NaN sentinels after every output
	bothGemmPaths(t, d, func(t *testing.T, wgmma bool) {
		worstMean, worstM2 := 0.0, 0.0 // the largest error / bound seen
		for ci, c := range []struct{ m, n, k int }{{24, 64, 48}, {200, 136, 72}, {130, 75, 200}, {130, 260, 200}} {
			for _, kind := range []gemmKind{ntF32Stats, ntF32GELU, ntBF16Stats, ntF32BF16} {
				rng := rand.New(rand.NewPCG(uint64(ci), 200+uint64(kind)))
				aBits, a := bf16Round(randn(rng, c.m*c.k, 1))
				wBits, w := bf16Round(randn(rng, c.n*c.k, 1))
				var bias buf[float32]
				biasHost := make([]float32, c.n)
				if ci != 1 {
					biasHost = randn(rng, c.n, 3) // a mean well off zero in some tiles
					bias = devCopy(t, d, biasHost)
				}
				da, dw := devCopy(t, d, aBits), devCopy(t, d, wBits)
				dc := devCopy(t, d, nanFill(c.m*c.n+pad))
				tiles := statsTiles(c.n)
				var stats buf[float32]
				var act buf[uint16]
				nanBF16 := leconv.BFloat16Bits(float32(math.NaN()))
				nanFillBF16 := func(n int) []uint16 {
					v := make([]uint16, n)
					for i := range v {
						v[i] = nanBF16
					}
					return v
				}
				switch kind {
				case ntF32Stats:
					stats = devCopy(t, d, nanFill(c.m*tiles*3+pad))
					on(t, d, func() error { return d.gemmBF16F32Stats(dc, stats, da, dw, bias, c.m, c.n, c.k) })
				case ntBF16Stats:
					stats = devCopy(t, d, nanFill(c.m*tiles*3+pad))
					cb := devCopy(t, d, nanFillBF16(c.m*c.n+pad))
					on(t, d, func() error { return d.gemmBF16BF16Stats(cb, stats, da, dw, bias, c.m, c.n, c.k) })
					// C as the float32 values of the stored bf16 ones (NaN
					// past the end stays NaN).
					bits := fetch(t, d, cb)
					vals := make([]float32, len(bits))
					for i, b := range bits {
						vals[i] = leconv.BFloat16Value(b)
					}
					on(t, d, func() error { return upload(d, dc, vals) })
				default:
					act = devCopy(t, d, nanFillBF16(c.m*c.n+pad))
					on(t, d, func() error { return d.gemmBF16F32Act(kind, dc, act, da, dw, bias, c.m, c.n, c.k) })
				}
				got := fetch(t, d, dc)
				for i, v := range got[c.m*c.n:] {
					if !math.IsNaN(float64(v)) {
						t.Fatalf("%s %dx%dx%d: C written past its end (element %d: %v)", kind, c.m, c.n, c.k, c.m*c.n+i, v)
					}
				}
				for i := 0; i < c.m; i++ {
					for j := 0; j < c.n; j++ {
						ref, tol := ntReference(a, w, biasHost, c.k, i, j)
						if kind == ntBF16Stats {
							tol += math.Ldexp(math.Abs(ref)+tol, -8)
						}
						if g := float64(got[i*c.n+j]); !(math.Abs(g-ref) <= tol) {
							t.Fatalf("%s %dx%dx%d: C[%d][%d] = %v, want %v within %.3g", kind, c.m, c.n, c.k, i, j, g, ref, tol)
						}
					}
				}
				if kind == ntF32GELU || kind == ntF32BF16 {
					gotAct := fetch(t, d, act)
					for i, v := range gotAct[c.m*c.n:] {
						if v != nanBF16 {
							t.Fatalf("%dx%dx%d: act written past its end (element %d: %#x)", c.m, c.n, c.k, c.m*c.n+i, v)
						}
					}
					for i, pre := range got[:c.m*c.n] {
						if kind == ntF32BF16 {
							if w := leconv.BFloat16Bits(pre); gotAct[i] != w {
								t.Fatalf("%dx%dx%d: act[%d] = %#04x, want bf16(%v) = %#04x", c.m, c.n, c.k, i, gotAct[i], pre, w)
							}
							continue
						}
						ref, tol := geluBF16Bound(float64(pre), 0)
						if g := float64(leconv.BFloat16Value(gotAct[i])); !(math.Abs(g-ref) <= tol) {
							t.Fatalf("%dx%dx%d: act[%d] = %v for pre %v, want %v within %.3g", c.m, c.n, c.k, i, g, pre, ref, tol)
						}
					}
					continue
				}
				gotStats := fetch(t, d, stats)
				for i, v := range gotStats[c.m*tiles*3:] {
					if !math.IsNaN(float64(v)) {
						t.Fatalf("%dx%dx%d: stats written past its end (element %d: %v)", c.m, c.n, c.k, c.m*tiles*3+i, v)
					}
				}
				for i := 0; i < c.m; i++ {
					for tl := 0; tl < tiles; tl++ {
						vals := got[i*c.n+tl*statsTile : i*c.n+min(c.n, (tl+1)*statsTile)]
						mean, m2, tolMean, tolM2 := tileStats(vals)
						s := gotStats[(i*tiles+tl)*3:]
						gm, gM2 := float64(s[1]), float64(s[2])
						if s[0] != float32(len(vals)) || !(math.Abs(gm-mean) <= tolMean) || !(math.Abs(gM2-m2) <= tolM2) {
							t.Fatalf("%dx%dx%d: row %d tile %d: (count, mean, M2) = (%v, %v, %v), want (%d, %v, %v) within %.3g, %.3g",
								c.m, c.n, c.k, i, tl, s[0], gm, gM2, len(vals), mean, m2, tolMean, tolM2)
						}
						worstMean = max(worstMean, math.Abs(gm-mean)/tolMean)
						worstM2 = max(worstM2, math.Abs(gM2-m2)/tolM2)
					}
				}
			}
		}
		t.Logf("statistics: worst error / bound: mean %.3g, M2 %.3g", worstMean, worstM2)
	})
}

// ntReference is C[i][j] of the nt layout, bias[j] + sum over p of
// a[i][p] w[j][p] (a [.,k], w [.,k] row-major), in float64, with the bound
// of a float32 accumulation of those terms: (k+1) 2^-23 times the sum of
// their magnitudes.
func ntReference(a, w []float64, bias []float32, k, i, j int) (ref, bound float64) {
	ref, s := float64(bias[j]), math.Abs(float64(bias[j]))
	for p := range k {
		ref += a[i*k+p] * w[j*k+p]
		s += math.Abs(a[i*k+p] * w[j*k+p])
	}
	return ref, f32SumBound(k+1, s)
}

// TestTNSplits: the weight gradients' K splits at the model's shapes,
// batch 8192, on an H100's 132 multiprocessors: the last Linear's [512,
// 1024] (32 tiles) in 4, the input projection's [2048, 768] (96 tiles: 3
// rounds of 384 split tiles instead of 1 of 96, a quarter less time) in
// 4, the square blocks' and the head's first (256 and 128 tiles) whole;
// and no split that would leave a split fewer than 4 chunks of K.
func TestTNSplits(t *testing.T) {
	d := testDevice(t)
	var sms int
	on(t, d, func() error { sms = d.tc.sms; d.tc.sms = 132; return nil })
	t.Cleanup(func() { d.do(func() error { d.tc.sms = sms; return nil }) })
	for _, c := range []struct{ m, n, k, want int }{
		{512, 1024, 8192, 4}, {2048, 768, 8192, 4}, {2048, 2048, 8192, 1}, {1024, 2048, 8192, 1},
		{512, 1024, 512, 2}, {512, 1024, 448, 1}, {8, 8, 8192, 8},
	} {
		var got int
		on(t, d, func() error { got = d.tnSplits(c.m, c.n, c.k); return nil })
		if got != c.want {
			t.Errorf("[%d, %d] of depth %d: %d splits, want %d", c.m, c.n, c.k, got, c.want)
		}
	}
}
