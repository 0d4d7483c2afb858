package vec32

import (
	"fmt"
	"math"
	"math/rand/v2"
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

// BenchmarkPasses times the slice passes on one goroutine over 64K
// floats (256 KiB: in L2), reporting ns per element, with the assembly
// and with the Go loops.
func BenchmarkPasses(b *testing.B) {
	const n = 1 << 16
	x, y, z, out := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range x {
		x[i], z[i] = float32(i%800)/100-4, float32(i%13)/7
		out[i] = float32(i%800)/100 + 4 // outside GELU's body, which x leaves once a 100 vectors
	}
	acc, acc2 := make([]float64, n), make([]float64, n)
	const width = 2048 // the model's, for LayerNormBackwardRows
	rstd, gamma64 := make([]float32, n/width), make([]float64, width)
	for _, asm := range []bool{true, false} {
		name := "asm"
		if !asm {
			name = "go"
		}
		for _, p := range []struct {
			name string
			run  func()
		}{
			{"gelu", func() { GELUs(y, x) }},
			{"gelu_outside_body", func() { GELUs(y, out) }},
			{"gelu_grad_mul", func() { GELUGradMul(y, z, x) }},
			{"layernorm_apply", func() { LayerNormApply(y, z, x, x, x, 0.1, 1.2) }},
			{"sum_sq_dev", func() { SumSqDev(x, 0.1) }},
			{"add_to", func() { AddTo(acc, x) }},
			{"layernorm_backward_rows", func() { LayerNormBackwardRows(y, x, z, rstd, gamma64, n/width, width, acc[:width], acc2[:width]) }},
		} {
			b.Run(name+"/"+p.name, func(b *testing.B) {
				defer UseAssembly(UseAssembly(asm))
				for b.Loop() {
					p.run()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/element")
			})
		}
	}
}

// BenchmarkGELUsSpread times GELUs on 64K normal inputs of growing spread
// against the whole-range formula alone (geluAVX2 on every vector, what
// GELUs ran before the body had its own formula), in ns per element: the
// body's gain where inputs stay inside |x| < 4, and its cost where many
// do not (both formulas run on a vector with a lane out).
func BenchmarkGELUsSpread(b *testing.B) {
	if !haveAsm || !haveFMA {
		b.Skip("no assembly on this CPU")
	}
	const n = 1 << 16
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sigma := range []float64{1, 2, 3, 5} {
		x, y := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * sigma)
		}
		for _, way := range []string{"gelus", "whole_range"} {
			b.Run(fmt.Sprintf("sigma%g/%s", sigma, way), func(b *testing.B) {
				for b.Loop() {
					if way == "gelus" {
						GELUs(y, x)
					} else {
						geluAVX2(n, &y[0], &x[0], &geluC.centre[0])
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/element")
			})
		}
	}
}
