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
// for |p| >= eps, dL/dp = (g - p^ (p^.g)) / |p| (the derivative of p/|p|);
// for |p| < eps the clamp makes the denominator constant and dL/dp = g/eps.
// The boundary follows torch's clamp_min backward (gradient passes at
// |p| >= eps). Everything is accumulated in float64.
func UnitNormMSE[T Float](grad, p, t []T, n, d int) float64 {
	rowLoss := make([]float64, n)
	scale := 2 / float64(n*d)
	parallelFor(n, 4*d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			pr, tr := p[r*d:(r+1)*d], t[r*d:(r+1)*d]
			pn, tn := norm(pr), norm(tr)
			pd, td := math.Max(pn, NormalizeEps), math.Max(tn, NormalizeEps)
			var l, dot float64
			for j := range pr {
				ph := float64(pr[j]) / pd
				e := ph - float64(tr[j])/td
				l += e * e
				dot += ph * scale * e
			}
			rowLoss[r] = l
			if grad == nil {
				continue
			}
			gr := grad[r*d : (r+1)*d]
			for j := range pr {
				ph := float64(pr[j]) / pd
				g := scale * (ph - float64(tr[j])/td)
				if pn >= NormalizeEps {
					gr[j] = T((g - ph*dot) / pn)
				} else {
					gr[j] = T(g / NormalizeEps)
				}
			}
		}
	})
	var sum float64
	for _, l := range rowLoss {
		sum += l
	}
	return sum / float64(n*d)
}

func norm[T Float](v []T) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
