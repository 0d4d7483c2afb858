package nn

import "math"

// NormalizeEps is F.normalize's default eps: rows are divided by
// max(||row||, 1e-12).
const NormalizeEps = 1e-12

// UnitNormMSE is F.mse_loss(F.normalize(p), F.normalize(t)) for p and t of
// shape [n,d]: the mean over n*d of (p/|p| - t/|t|)^2, with each norm
// clamped below at 1e-12. Per row it equals 2(1 - cos)/d.
//
// When grad is not nil it receives dL/dp. With g = 2(p^ - t^)/(n d):
// dL/dp is unitNormBackward's of g. Everything is accumulated in float64.
func UnitNormMSE[T Float](grad, p, t []T, n, d int) float64 {
	rowLoss := make([]float64, n)
	scale := 2 / float64(n*d)
	parallelFor(n, 4*d, func(lo, hi int) {
		var ph, g []float64
		if grad != nil {
			ph, g = make([]float64, d), make([]float64, d)
		}
		for r := lo; r < hi; r++ {
			pr, tr := p[r*d:(r+1)*d], t[r*d:(r+1)*d]
			pn, tn := norm(pr), norm(tr)
			pd, td := math.Max(pn, NormalizeEps), math.Max(tn, NormalizeEps)
			var l float64
			for j := range pr {
				e := float64(pr[j])/pd - float64(tr[j])/td
				l += e * e
				if grad != nil {
					ph[j], g[j] = float64(pr[j])/pd, scale*e
				}
			}
			rowLoss[r] = l
			if grad != nil {
				unitNormBackward(grad[r*d:(r+1)*d], ph, g, pn)
			}
		}
	})
	var sum float64
	for _, l := range rowLoss {
		sum += l
	}
	return sum / float64(n*d)
}

// unitNormBackward writes into grad dL/dp for one row p with norm pn from
// g = dL/dp^, p^ = p/max(pn, 1e-12): (g - p^ (p^.g)) / pn where pn >= eps
// (the derivative of p/|p|); where pn < eps the clamp makes the
// denominator constant and it is g/eps. The boundary follows torch's
// clamp_min backward (gradient passes at pn >= eps).
func unitNormBackward[T Float](grad []T, ph, g []float64, pn float64) {
	if pn < NormalizeEps {
		for j, v := range g {
			grad[j] = T(v / NormalizeEps)
		}
		return
	}
	var dot float64
	for j, v := range g {
		dot += ph[j] * v
	}
	for j, v := range g {
		grad[j] = T((v - ph[j]*dot) / pn)
	}
}

func norm[T Float](v []T) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
