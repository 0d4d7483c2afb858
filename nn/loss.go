package nn

import (
	"math"

	"github.com/dinoclip/dinoclip/internal/vec32"
)

// NormalizeEps is F.normalize's default eps: rows are divided by
// max(||row||, 1e-12).
const NormalizeEps = 1e-12

// UnitNormMSE is F.mse_loss(F.normalize(p), F.normalize(t)) for p and t of
// shape [n,d]: the mean over n*d of (p/|p| - t/|t|)^2, with each norm
// clamped below at 1e-12. Per row it equals 2(1 - cos)/d.
//
// When grad is not nil it receives dL/dp. With g = 2(p^ - t^)/(n d):
// dL/dp is unitNormBackward's of g. Everything is accumulated in float64.
//
// For float32 the rows go through vec32 (unitNormMSE32): the same loss and
// gradient, formed from three dot products per row.
func UnitNormMSE[T Float](grad, p, t []T, n, d int) float64 {
	rowLoss := make([]float64, n)
	scale := 2 / float64(n*d)
	if p32, ok := any(p).([]float32); ok {
		grad32, _ := any(grad).([]float32)
		unitNormMSE32(rowLoss, grad32, p32, any(t).([]float32), n, d, scale)
		return sumRows(rowLoss, n*d)
	}
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
	return sumRows(rowLoss, n*d)
}

// sumRows is the mean loss: the rows' sums added in row order, over count.
func sumRows(rowLoss []float64, count int) float64 {
	var sum float64
	for _, l := range rowLoss {
		sum += l
	}
	return sum / float64(count)
}

// unitNormMSE32 is UnitNormMSE's rows for float32, with the dot products
// pp = p.p, tt = t.t and pt = p.t of each row accumulated in float64
// (vec32.Dot, in its fixed lane order). With pd = max(|p|, eps) and
// td = max(|t|, eps), the row's sum of (p/pd - t/td)^2 is
// pp/pd^2 + tt/td^2 - 2 pt/(pd td), and the gradient is linear in p and t:
//
//	dL/dp = a p + b t,  a = (scale - dot)/pd^2,  b = -scale/(td pd)
//
// with dot = scale (pp/pd^2 - pt/(pd td)) = p^.g where |p| >= eps, and
// dot = 0 below (where dL/dp = g/eps). It is formed in float64 and
// rounded to float32 once per element (vec32.AXPBY).
func unitNormMSE32(rowLoss []float64, grad, p, t []float32, n, d int, scale float64) {
	parallelFor(n, 3*d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			pr, tr := p[r*d:(r+1)*d], t[r*d:(r+1)*d]
			pp, tt, pt := vec32.Dot(pr, pr), vec32.Dot(tr, tr), vec32.Dot(pr, tr)
			pn, tn := math.Sqrt(pp), math.Sqrt(tt)
			pd, td := math.Max(pn, NormalizeEps), math.Max(tn, NormalizeEps)
			cross := pt / (pd * td)
			// The exact value is not negative; rounding can make it so
			// when p and t are parallel.
			rowLoss[r] = math.Max(0, pp/(pd*pd)+tt/(td*td)-2*cross)
			if grad == nil {
				continue
			}
			var dot float64
			if pn >= NormalizeEps {
				dot = scale * (pp/(pd*pd) - cross)
			}
			vec32.AXPBY(grad[r*d:(r+1)*d], pr, tr, (scale-dot)/(pd*pd), -scale/(td*pd))
		}
	})
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
