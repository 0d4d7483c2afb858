package vec32

import (
	"math"
	"math/rand/v2"
	"testing"
)

// lnBackwardDefinition is LayerNormBackwardRows as its doc comment states
// it, a row at a time with no chunks, groups or pairs of rows: what the
// blocked sweeps must equal bit for bit.
func lnBackwardDefinition(dx, dy, xhat, rstd []float32, gamma []float64, rows, d int, prod, sum []float64) {
	n := prefix(d)
	for r := range rows {
		dyr, hr := dy[r*d:(r+1)*d], xhat[r*d:(r+1)*d]
		var l1, l2 lanes
		for j := 0; j < n; j++ {
			g := float64(dyr[j]) * gamma[j]
			l1[j%reduceLanes] += g
			l2[j%reduceLanes] += float64(g * float64(hr[j]))
		}
		sumG, sumGX := combineLanes(&l1), combineLanes(&l2)
		for j := n; j < d; j++ {
			g := float64(dyr[j]) * gamma[j]
			sumG += g
			sumGX += float64(g * float64(hr[j]))
		}
		for j := range d {
			prod[j] += float64(dyr[j]) * float64(hr[j])
			sum[j] += float64(dyr[j])
		}
		meanG, meanGX, rs := sumG/float64(d), sumGX/float64(d), float64(rstd[r])
		for j := range d {
			g := float64(dyr[j]) * gamma[j]
			dx[r*d+j] = float32(rs * ((g - meanG) - float64(float64(hr[j])*meanGX)))
		}
	}
}

// TestLayerNormBackwardRows checks the one-sweep backward pass against its
// definition, bit for bit, on both paths, with dx aliasing dy as the
// engine calls it, over row counts that leave odd rows and partial groups
// and widths that leave partial chunks and tails; and its dx against the
// formula with exactly rounded row sums, within 1 ulp of float32 plus
// 1e-12 of the magnitude of the terms (the float64 sums' rounding, at
// most about 2^-53 times the terms' magnitudes times d, carried through
// rstd's product).
func TestLayerNormBackwardRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, d := range []int{1, 7, 8, 9, 100, 2*lnColumnChunk + 13} {
		for _, rows := range []int{1, 2, 3, lnRowGroup, lnRowGroup + 1, 2*lnRowGroup + 3} {
			dy, xhat := randomFloats(rng, rows*d), randomFloats(rng, rows*d)
			rstd, gamma32 := randomFloats(rng, rows), randomFloats(rng, d)
			gamma, acc0 := make([]float64, d), make([]float64, 2*d)
			for j, v := range gamma32 {
				gamma[j] = float64(v)
			}
			for j := range acc0 {
				acc0[j] = rng.NormFloat64()
			}
			type result struct {
				dx, dxAlias   []float32
				acc, accAlias []float64
			}
			run := func(pass func(dx, dy, xhat, rstd []float32, gamma []float64, rows, d int, prod, sum []float64)) result {
				r := result{dx: make([]float32, rows*d), dxAlias: append([]float32(nil), dy...),
					acc: append([]float64(nil), acc0...), accAlias: append([]float64(nil), acc0...)}
				pass(r.dx, dy, xhat, rstd, gamma, rows, d, r.acc[:d], r.acc[d:])
				pass(r.dxAlias, r.dxAlias, xhat, rstd, gamma, rows, d, r.accAlias[:d], r.accAlias[d:])
				return r
			}
			want := run(lnBackwardDefinition)
			a, p := bothPaths(t, func() result { return run(LayerNormBackwardRows) })
			for _, got := range []struct {
				name string
				r    result
			}{{"assembly", a}, {"Go", p}} {
				for _, c := range []struct {
					name      string
					got, want []float32
				}{{"dx", got.r.dx, want.dx}, {"dx aliasing dy", got.r.dxAlias, want.dx}} {
					if i := sameBits32(c.got, c.want); i >= 0 {
						t.Fatalf("%s d %d rows %d: %s element %d is %v, definition %v", got.name, d, rows, c.name, i, c.got[i], c.want[i])
					}
				}
				for _, acc := range [][]float64{got.r.acc, got.r.accAlias} {
					if i := sameBits64(acc, want.acc); i >= 0 {
						t.Fatalf("%s d %d rows %d: column sum %d is %v, definition %v", got.name, d, rows, i, acc[i], want.acc[i])
					}
				}
			}
			for r := range rows {
				dyr, hr := dy[r*d:(r+1)*d], xhat[r*d:(r+1)*d]
				sumG := exactSum(func(add func(x, y float64)) {
					for j, v := range dyr {
						add(float64(v), gamma[j])
					}
				})
				sumGX := exactSum(func(add func(x, y float64)) {
					for j, v := range dyr {
						add(float64(v)*gamma[j], float64(hr[j]))
					}
				})
				var magG, magGX float64
				for j, v := range dyr {
					magG += math.Abs(float64(v) * gamma[j])
					magGX += math.Abs(float64(v) * gamma[j] * float64(hr[j]))
				}
				rs := math.Abs(float64(rstd[r]))
				for j, v := range dyr {
					g := float64(v) * gamma[j]
					w := float64(rstd[r]) * ((g - sumG/float64(d)) - float64(hr[j])*(sumGX/float64(d)))
					f := float32(math.Abs(w))
					ulp := float64(math.Nextafter32(f, float32(math.Inf(1))) - f)
					bound := ulp + 1e-12*rs*(math.Abs(g)+magG/float64(d)+math.Abs(float64(hr[j]))*magGX/float64(d))
					if e := math.Abs(float64(a.dx[r*d+j]) - w); !(e <= bound) {
						t.Fatalf("d %d rows %d: dx[%d,%d] = %v, formula %v (error %g, bound %g)", d, rows, r, j, a.dx[r*d+j], w, e, bound)
					}
				}
			}
		}
	}
}
