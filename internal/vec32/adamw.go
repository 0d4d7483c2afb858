package vec32

// AdamWConsts are the per-step scalars of one AdamW update, already
// rounded to float32 (see nn.AdamW, which defines the update).
type AdamWConsts struct {
	Decay, OneMinusBeta1, Beta2, OneMinusBeta2, StepSize, BiasCorrection2Sqrt, Eps float32
}

// AdamW updates the first adamwLen(len(p)) elements of the parameters p
// and the moments m and v from the gradients g, each elementwise operation
// rounded to float32 in this order and none fused:
//
//	p' = p*Decay
//	m' = m + OneMinusBeta1*(g - m)
//	v' = v*Beta2 + (OneMinusBeta2*g)*g
//	p' = p' - StepSize*(m' / (sqrt(v')/BiasCorrection2Sqrt + Eps))
//
// It returns how many elements it did. g, m and v must be at least as long
// as p.
func AdamW(p, g, m, v []float32, c *AdamWConsts) int {
	n := adamwLen(len(p))
	if n == 0 {
		return 0
	}
	_, _, _ = g[n-1], m[n-1], v[n-1]
	adamw(n, &p[0], &g[0], &m[0], &v[0], c)
	return n
}
