package vec32

import (
	"math"
	"testing"
)

var sink float32

// BenchmarkGELU times one evaluation (ns/op) of the float32 GELU and its
// derivative, and of the float64 math.Erf form they replace.
func BenchmarkGELU(b *testing.B) {
	xs := make([]float32, 4096)
	for i := range xs {
		xs[i] = float32(i%800)/100 - 4
	}
	run := func(name string, f func(float32) float32) {
		b.Run(name, func(b *testing.B) {
			var s float32
			for i := 0; b.Loop(); i++ {
				s += f(xs[i&4095])
			}
			sink = s
		})
	}
	run("float32", GELU)
	run("float32_grad", GELUGrad)
	run("float64_erf", func(x float32) float32 {
		v := float64(x)
		return float32(0.5 * v * (1 + math.Erf(v/math.Sqrt2)))
	})
	run("float64_erf_grad", func(x float32) float32 {
		v := float64(x)
		return float32(0.5*(1+math.Erf(v/math.Sqrt2)) + v*math.Exp(-0.5*v*v)/math.Sqrt(2*math.Pi))
	})
}
