package enginetest

import (
	"math"
	"testing"
)

// RelDiff is the relative difference, and +Inf (which fails any bound)
// where it would compare nothing or NaN.
func TestRelDiff(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, c := range []struct {
		name string
		a, b []float64
		want float64
	}{
		{"equal", []float64{3, 4}, []float64{3, 4}, 0},
		{"relative", []float64{3, 4.5}, []float64{3, 4}, 0.1},
		{"b zero: absolute", []float64{3, 4}, []float64{0, 0}, 5},
		{"NaN in a", []float64{nan, 4}, []float64{3, 4}, inf},
		{"NaN in b", []float64{3, 4}, []float64{3, nan}, inf},
		{"infinities both sides", []float64{inf, 4}, []float64{inf, 4}, inf},
		{"infinity in b only", []float64{3, 4}, []float64{inf, 4}, inf},
		{"lengths differ", []float64{3}, []float64{3, 4}, inf},
		{"empty", nil, nil, inf},
	} {
		if got := RelDiff(c.a, c.b); !(math.Abs(got-c.want) <= 1e-12 || got == c.want) {
			t.Errorf("%s: RelDiff = %v, want %v", c.name, got, c.want)
		}
	}
}
