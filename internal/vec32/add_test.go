package vec32

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAdd checks Add with the assembly and with the Go loop against the
// float32 sums element by element, bit for bit, also in place (dst
// aliasing x), with NaN and infinities among the inputs, and that nothing
// past len(x) is written.
func TestAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, n := range append(lengths, 31, 32, 33, 64+8+3) {
		x, y := randomFloats(rng, n), randomFloats(rng, n)
		if n > 3 {
			x[1], y[2], x[3], y[3] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.Inf(1))
		}
		want := make([]float32, n)
		for i := range want {
			want[i] = x[i] + y[i]
		}
		run := func(inPlace bool) func() []float32 {
			return func() []float32 {
				dst := make([]float32, n+1)
				dst[n] = 42
				xs := x
				if inPlace {
					copy(dst, x)
					xs = dst[:n]
				}
				Add(dst, xs, y)
				if dst[n] != 42 {
					t.Fatalf("n %d: wrote past the end", n)
				}
				return dst[:n]
			}
		}
		for _, inPlace := range []bool{false, true} {
			asm, pure := bothPaths(t, run(inPlace))
			for name, got := range map[string][]float32{"asm": asm, "go": pure} {
				if i := sameBits32(got, want); i >= 0 {
					t.Fatalf("%s n %d in place %v: element %d is %g, want %g", name, n, inPlace, i, got[i], want[i])
				}
			}
		}
	}
}
