package nn

import (
	"math"
	"math/rand/v2"
)

// InitParameters fills a new flat buffer with PyTorch's default
// initialisation for c: every Linear weight and bias from
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5) reduces
// to that bound), LayerNorm weights 1 and biases 0. The draws come from a PCG
// stream seeded by seed, so the same seed gives the same model on every
// engine; it does not reproduce torch's generator bit for bit (the golden
// tests load PyTorch's weights instead).
func InitParameters[T Float](c Config, seed uint64) []T {
	l := c.Layout()
	buf := make([]T, l.Size)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for _, t := range l.Tensors {
		v := View(buf, t)
		switch t.Kind {
		case LinearWeight, LinearBias:
			bound := 1 / math.Sqrt(float64(t.FanIn))
			for i := range v {
				v[i] = T(bound * (2*rng.Float64() - 1))
			}
		case NormWeight:
			for i := range v {
				v[i] = 1
			}
		case NormBias:
			// zeros already
		}
	}
	return buf
}
