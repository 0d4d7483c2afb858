package nn

import (
	"math"

	"github.com/dinoclip/dinoclip/internal/vec32"
)

// AdamWStep holds the hyperparameters of one AdamW update. LR and Beta1
// change every step under OneCycleLR; Step is the 1-based count of updates
// including this one (PyTorch's state["step"] after its increment).
type AdamWStep struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	Step                               int
}

// AdamW applies one update of torch.optim.AdamW (default, non-amsgrad,
// non-maximize) to params with grads and the moments m and v, all the same
// length:
//
//	θ ← θ (1 - lr λ)
//	m ← m + (1-β1)(g - m)
//	v ← β2 v + (1-β2) g²
//	θ ← θ - (lr / (1-β1^s)) m / (sqrt(v)/sqrt(1-β2^s) + eps)
//
// The bias corrections are computed in float64, as Python does; the
// elementwise arithmetic is in T, as PyTorch does it in the tensor's dtype.
func AdamW[T Float](params, grads, m, v []T, s AdamWStep) {
	decay := T(1 - s.LR*s.WeightDecay)
	oneMinusB1, b2, oneMinusB2 := T(1-s.Beta1), T(s.Beta2), T(1-s.Beta2)
	stepSize := T(s.LR / (1 - math.Pow(s.Beta1, float64(s.Step))))
	bc2Sqrt := T(math.Sqrt(1 - math.Pow(s.Beta2, float64(s.Step))))
	eps := T(s.Eps)
	parallelFor(len(params), 8, func(lo, hi int) {
		if p32, ok := any(params[lo:hi]).([]float32); ok {
			// The vectorised copy of the loop below does a prefix.
			lo += vec32.AdamW(p32, any(grads[lo:hi]).([]float32), any(m[lo:hi]).([]float32), any(v[lo:hi]).([]float32),
				&vec32.AdamWConsts{Decay: float32(decay), OneMinusBeta1: float32(oneMinusB1), Beta2: float32(b2),
					OneMinusBeta2: float32(oneMinusB2), StepSize: float32(stepSize), BiasCorrection2Sqrt: float32(bc2Sqrt), Eps: float32(eps)})
		}
		// The conversions T(...) round each product, so that no compiler
		// fuses them into an FMA (Go may, e.g. with GOAMD64=v3): the
		// vectorised copy does not fuse, and neither does PyTorch.
		for i := lo; i < hi; i++ {
			g := grads[i]
			p := T(params[i] * decay)
			mi := m[i] + T(oneMinusB1*(g-m[i]))
			vi := T(v[i]*b2) + T(T(oneMinusB2*g)*g)
			d := sqrt(vi)/bc2Sqrt + eps
			params[i] = p - T(stepSize*(mi/d))
			m[i], v[i] = mi, vi
		}
	})
}

// sqrt is the square root in T's own precision (float32 sqrt is correctly
// rounded, so this equals rounding the float64 root).
func sqrt[T Float](x T) T { return T(math.Sqrt(float64(x))) }
