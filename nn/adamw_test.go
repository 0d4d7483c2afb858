package nn

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// The float32 AdamW over a long slice (vectorised where the CPU allows,
// in chunks taken by GOMAXPROCS threads) gives the same bits as over one
// element at a time (the scalar loop), at GOMAXPROCS 1 and 2; the longer
// slice has several chunks and a tail.
func TestAdamWVectorisedMatchesScalar(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 2} {
		runtime.GOMAXPROCS(procs)
		for _, n := range []int{1003, 2*adamWChunk + 13} {
			testAdamWVectorised(t, n)
		}
	}
}

func testAdamWVectorised(t *testing.T, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range p {
		p[i], g[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64()*math.Exp2(float64(rng.IntN(40)-30)))
		m[i], v[i] = float32(rng.NormFloat64()*1e-3), float32(rng.Float64()*1e-4)
	}
	g[5], v[5], m[5] = 0, 0, 0 // sqrt(0) and a zero step
	g[7] = 1e30                // g*g overflows to +Inf
	ps, gs, ms, vs := append([]float32(nil), p...), g, append([]float32(nil), m...), append([]float32(nil), v...)
	for step := 1; step <= 3; step++ {
		hp := AdamWStep{LR: 1e-3 * float64(step), Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: step}
		AdamW(p, g, m, v, hp)
		for i := range ps {
			AdamW(ps[i:i+1], gs[i:i+1], ms[i:i+1], vs[i:i+1], hp)
		}
		for i := range p {
			for _, pair := range [][2]float32{{p[i], ps[i]}, {m[i], ms[i]}, {v[i], vs[i]}} {
				if math.Float32bits(pair[0]) != math.Float32bits(pair[1]) && !(pair[0] != pair[0] && pair[1] != pair[1]) {
					t.Fatalf("GOMAXPROCS %d, %d elements, step %d element %d: vectorised %g, scalar %g", runtime.GOMAXPROCS(0), n, step, i, pair[0], pair[1])
				}
			}
		}
	}
}
