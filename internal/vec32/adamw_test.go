package vec32

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAdamW checks the vectorised update against the formula of its doc
// comment evaluated in scalar float32, bit for bit, and that it leaves the
// elements past the prefix it reports alone.
func TestAdamW(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := &AdamWConsts{Decay: 1 - 1e-5, OneMinusBeta1: 0.1, Beta2: 0.999, OneMinusBeta2: 0.001, StepSize: 3e-3, BiasCorrection2Sqrt: 0.0447, Eps: 1e-8}
	for _, n := range []int{0, 1, 7, 8, 9, 64, 1001} {
		p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range p {
			p[i], g[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64()*1e-2)
			m[i], v[i] = float32(rng.NormFloat64()*1e-3), float32(rng.Float64()*1e-4)
		}
		p0, m0, v0 := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
		done := AdamW(p, g, m, v, c)
		if done < 0 || done > n || done%8 != 0 {
			t.Fatalf("n %d: did %d elements", n, done)
		}
		for i := range p {
			wp, wm, wv := p0[i], m0[i], v0[i]
			if i < done {
				// float32(...) rounds each product, so that no
				// compiler fuses it (Go may with GOAMD64=v3).
				wp = p0[i] * c.Decay
				wm = m0[i] + float32(c.OneMinusBeta1*(g[i]-m0[i]))
				wv = float32(v0[i]*c.Beta2) + float32(float32(c.OneMinusBeta2*g[i])*g[i])
				d := float32(math.Sqrt(float64(wv)))/c.BiasCorrection2Sqrt + c.Eps
				wp -= float32(c.StepSize * (wm / d))
			}
			if math.Float32bits(p[i]) != math.Float32bits(wp) || math.Float32bits(m[i]) != math.Float32bits(wm) || math.Float32bits(v[i]) != math.Float32bits(wv) {
				t.Fatalf("n %d element %d (prefix %d): got %g %g %g, want %g %g %g", n, i, done, p[i], m[i], v[i], wp, wm, wv)
			}
		}
	}
}
