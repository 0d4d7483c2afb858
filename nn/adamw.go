package nn

import (
	"errors"
	"fmt"
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

// Validate refuses a step an engine cannot take: a step number below 1
// (the bias corrections divide by 1 - β^Step).
func (s AdamWStep) Validate() error {
	if s.Step < 1 {
		return fmt.Errorf("optimizer step number %d: steps count from 1", s.Step)
	}
	return nil
}

// ErrNoGradients is an engine's answer to an optimizer step that no
// ForwardBackward since the last one has prepared.
var ErrNoGradients = errors.New("optimizer step without gradients: call ForwardBackward first")

// AdamWScalars are the per-step scalars of one AdamW update in the element
// type T, as the update formula of [AdamW] uses them. Every engine forms
// them with NewAdamWScalars, so that all of them round the same float64
// values to T.
type AdamWScalars[T Float] struct {
	Decay         T // 1 - lr λ
	OneMinusBeta1 T // 1 - β1
	Beta2         T // β2
	OneMinusBeta2 T // 1 - β2
	StepSize      T // lr / (1 - β1^s)
	// BiasCorrection2Sqrt is sqrt(1 - β2^s).
	BiasCorrection2Sqrt T
	Eps                 T
}

// NewAdamWScalars forms the scalars of step s: the bias corrections in
// float64, as Python does, each scalar then rounded to T once.
func NewAdamWScalars[T Float](s AdamWStep) AdamWScalars[T] {
	return AdamWScalars[T]{
		Decay:               T(1 - s.LR*s.WeightDecay),
		OneMinusBeta1:       T(1 - s.Beta1),
		Beta2:               T(s.Beta2),
		OneMinusBeta2:       T(1 - s.Beta2),
		StepSize:            T(s.LR / (1 - math.Pow(s.Beta1, float64(s.Step)))),
		BiasCorrection2Sqrt: T(math.Sqrt(1 - math.Pow(s.Beta2, float64(s.Step)))),
		Eps:                 T(s.Eps),
	}
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
// The scalars come from NewAdamWScalars; the elementwise arithmetic is in
// T, as PyTorch does it in the tensor's dtype.
func AdamW[T Float](params, grads, m, v []T, s AdamWStep) {
	sc := NewAdamWScalars[T](s)
	decay, oneMinusB1, b2, oneMinusB2 := sc.Decay, sc.OneMinusBeta1, sc.Beta2, sc.OneMinusBeta2
	stepSize, bc2Sqrt, eps := sc.StepSize, sc.BiasCorrection2Sqrt, sc.Eps
	// Chunks rather than one range per thread: threads that finish early
	// take the chunks of one the machine has descheduled (the update is
	// elementwise, so the split never changes a bit).
	parallelChunks(len(params), adamWChunk, func(lo, hi int) {
		if p32, ok := any(params[lo:hi]).([]float32); ok {
			// The vectorised copy of the loop below does a prefix.
			// AdamWScalars[float32] has vec32.AdamWConsts's fields, in order.
			consts := vec32.AdamWConsts(any(sc).(AdamWScalars[float32]))
			lo += vec32.AdamW(p32, any(grads[lo:hi]).([]float32), any(m[lo:hi]).([]float32), any(v[lo:hi]).([]float32), &consts)
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

// adamWChunk is the elements of one chunk of AdamW's loop: 1.75 MiB of
// the seven streams, a multiple of the vector width.
const adamWChunk = 1 << 16

// sqrt is the square root in T's own precision (float32 sqrt is correctly
// rounded, so this equals rounding the float64 root).
func sqrt[T Float](x T) T { return T(math.Sqrt(float64(x))) }
