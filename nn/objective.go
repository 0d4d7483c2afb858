package nn

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
)

// The losses an [Objective] can name.
const (
	LossMSE        = "mse"         // UnitNormMSE, the original recipe's
	LossInfoNCE    = "infonce"     // InfoNCE alone
	LossMSEInfoNCE = "mse+infonce" // UnitNormMSE + InfoNCEWeight x InfoNCE
)

// InitLogitScale is CLIP's initial logit scale, log(1/0.07): the
// temperature 0.07 stored as the log of its inverse.
var InitLogitScale = math.Log(1 / 0.07)

// MaxLogitScale is the largest scale InfoNCE multiplies the cosine
// similarities by: exp(LogitScale) is clamped at 100, as CLIP does.
const MaxLogitScale = 100

// Objective is the loss an engine trains on. The zero value is LossMSE.
// The logit scale is a trained parameter of the objective, not of the
// model: the trainer keeps it (and its AdamW moments), sets it before
// every ForwardBackward and steps it with the gradient the engine reports
// ([Engine.LogitScaleGrad]).
type Objective struct {
	// Loss is LossMSE ("" reads as it), LossInfoNCE or LossMSEInfoNCE.
	Loss string
	// InfoNCEWeight multiplies the InfoNCE term of LossMSEInfoNCE; the
	// other losses ignore it.
	InfoNCEWeight float64
	// LogitScale is the log of the scale of InfoNCE's logits (the
	// inverse temperature), as CLIP stores it.
	LogitScale float64
}

// LossName is o.Loss with "" read as LossMSE.
func (o Objective) LossName() string {
	if o.Loss == "" {
		return LossMSE
	}
	return o.Loss
}

// Contrastive reports whether o has an InfoNCE term (and so a logit scale).
func (o Objective) Contrastive() bool {
	return o.Loss == LossInfoNCE || o.Loss == LossMSEInfoNCE
}

// ValidInfoNCEWeight reports whether w can weigh the InfoNCE term: a
// positive number within float32's range, in which the GPU engines weigh
// it (one beyond it made every loss infinite, a divergence blamed on the
// data).
func ValidInfoNCEWeight(w float64) bool { return w > 0 && w <= math.MaxFloat32 }

// InfoNCEWeightRange says what ValidInfoNCEWeight takes.
const InfoNCEWeightRange = "must be a positive number, at most 3.4e38 (float32's largest)"

// Validate refuses an unknown loss, a weight that is not a positive finite
// number under LossMSEInfoNCE, and a logit scale that is not finite.
func (o Objective) Validate() error {
	switch o.LossName() {
	case LossMSE:
		return nil
	case LossInfoNCE:
	case LossMSEInfoNCE:
		if !ValidInfoNCEWeight(o.InfoNCEWeight) {
			return fmt.Errorf("InfoNCE weight %v: %s", o.InfoNCEWeight, InfoNCEWeightRange)
		}
	default:
		return fmt.Errorf("loss %q: want %q, %q or %q", o.Loss, LossMSE, LossInfoNCE, LossMSEInfoNCE)
	}
	if math.IsNaN(o.LogitScale) || math.IsInf(o.LogitScale, 0) {
		return fmt.Errorf("logit scale %v: must be a finite number", o.LogitScale)
	}
	return nil
}

// CPUBytes is the memory [ObjectiveLoss] takes for a batch of n rows d
// wide beyond the engine's own buffers: under an InfoNCE loss its float64
// logits [n, n], three [n, d] float64 buffers (the normalised rows and
// their gradient) and, under LossMSEInfoNCE, the InfoNCE gradient in
// float64 (an upper bound for float32); 0 under the MSE.
func (o Objective) CPUBytes(n, d int) float64 {
	if !o.Contrastive() {
		return 0
	}
	b := 8 * (float64(n)*float64(n) + 3*float64(n)*float64(d) + 5*float64(n))
	if o.Loss == LossMSEInfoNCE {
		b += 8 * float64(n) * float64(d)
	}
	return b
}

// ObjectiveLoss is o's loss of outputs p against targets t, both [n, d].
// When grad is not nil it receives dL/dp, and the second result is
// dL/d(o.LogitScale) (0 without an InfoNCE term). Sums are in float64.
func ObjectiveLoss[T Float](o Objective, grad, p, t []T, n, d int) (loss, dLogitScale float64) {
	switch o.LossName() {
	case LossInfoNCE:
		return InfoNCE(grad, p, t, n, d, o.LogitScale)
	case LossMSEInfoNCE:
		var contrastive []T
		if grad != nil {
			contrastive = make([]T, len(grad))
		}
		l, dls := InfoNCE(contrastive, p, t, n, d, o.LogitScale)
		mse := UnitNormMSE(grad, p, t, n, d)
		w := o.InfoNCEWeight
		for i := range grad {
			grad[i] = T(float64(grad[i]) + w*float64(contrastive[i]))
		}
		return mse + w*l, w * dls
	}
	return UnitNormMSE(grad, p, t, n, d), 0
}

// InfoNCE is CLIP's symmetric contrastive loss between the rows of p and
// t [n, d]: with p^ and t^ the rows divided by max(|row|, 1e-12) (as
// F.normalize) and s = min(exp(logitScale), 100), the logits are
// L = s p^ t^T [n, n], and the loss is the mean of the cross-entropy of
// each row of L against its diagonal entry (prediction -> target) and of
// each column (target -> prediction):
//
//	(1/2n) sum_i (lse_j L_ij - L_ii) + (1/2n) sum_j (lse_i L_ij - L_jj).
//
// When grad is not nil it receives dL/dp, and the second result is
// dL/d(logitScale). With G = dL/dL = (softmax_rows(L) + softmax_cols(L) -
// 2I)/2n: dL/dp^ = s G t^, dL/ds = sum G . (p^ t^T), and dL/dlogitScale
// = s dL/ds where exp(logitScale) <= 100 and 0 above, as torch's clamp
// passes its gradient only within its bound. dL/dp follows from dL/dp^
// as in [UnitNormMSE]. Everything is computed in float64; the logits take
// 8 n^2 bytes.
func InfoNCE[T Float](grad, p, t []T, n, d int, logitScale float64) (loss, dLogitScale float64) {
	s := math.Min(math.Exp(logitScale), MaxLogitScale)
	ph, pn := unitRows(p, n, d)
	th, _ := unitRows(t, n, d)
	// cos = p^ t^T; the logits are s cos.
	cos := make([]float64, n*n)
	gemm(blas.NoTrans, blas.Trans, n, n, d, ph, d, th, d, 0, cos, n)
	rowLSE, colLSE := make([]float64, n), make([]float64, n)
	parallelFor(n, n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			rowLSE[i] = logSumExp(s, cos[i*n:(i+1)*n], 1)
			colLSE[i] = logSumExp(s, cos[i:], n)
		}
	})
	for i := range n {
		loss += rowLSE[i] + colLSE[i] - 2*s*cos[i*n+i]
	}
	loss /= float64(2 * n)
	if grad == nil {
		return loss, 0
	}
	// G overwrites cos, after dL/ds has taken what it needs from both.
	inv2n := 1 / float64(2*n)
	rowDS := make([]float64, n)
	parallelFor(n, n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var ds float64
			for j := range n {
				c := cos[i*n+j]
				g := (math.Exp(s*c-rowLSE[i]) + math.Exp(s*c-colLSE[j])) * inv2n
				if i == j {
					g -= 2 * inv2n
				}
				ds += g * c
				cos[i*n+j] = s * g // dL/dcos
			}
			rowDS[i] = ds
		}
	})
	for _, ds := range rowDS {
		dLogitScale += ds
	}
	if math.Exp(logitScale) <= MaxLogitScale {
		dLogitScale *= s
	} else {
		dLogitScale = 0
	}
	// dL/dp^ = dL/dcos t^.
	dph := make([]float64, n*d)
	gemm(blas.NoTrans, blas.NoTrans, n, d, n, cos, n, th, d, 0, dph, d)
	parallelFor(n, 4*d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			unitNormBackward(grad[r*d:(r+1)*d], ph[r*d:(r+1)*d], dph[r*d:(r+1)*d], pn[r])
		}
	})
	return loss, dLogitScale
}

// unitRows returns the rows of a [n, d] divided by max(|row|, 1e-12), in
// float64, and the rows' norms.
func unitRows[T Float](a []T, n, d int) (unit, norms []float64) {
	unit, norms = make([]float64, n*d), make([]float64, n)
	parallelFor(n, d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := a[r*d : (r+1)*d]
			norms[r] = norm(row)
			den := math.Max(norms[r], NormalizeEps)
			for j, v := range row {
				unit[r*d+j] = float64(v) / den
			}
		}
	})
	return unit, norms
}

// logSumExp is log sum_k exp(s v[k*stride]) over the n = len/stride
// elements of a row (stride 1) or column (stride n) of a square matrix,
// shifted by the largest for range.
func logSumExp(s float64, v []float64, stride int) float64 {
	m := math.Inf(-1)
	for k := 0; k < len(v); k += stride {
		m = math.Max(m, s*v[k])
	}
	var sum float64
	for k := 0; k < len(v); k += stride {
		sum += math.Exp(s*v[k] - m)
	}
	return m + math.Log(sum)
}
