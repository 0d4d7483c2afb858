package train

import (
	"math"
	"testing"
)

// The schedule's fixed points (the golden tests check every step against
// PyTorch; these pin the ends and the validation).
func TestOneCycleEnds(t *testing.T) {
	s := NewOneCycle(1e-3, 16, 100)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-15*math.Abs(want) }
	lr, b1 := s.At(0)
	if !near(lr, 1e-3/25) || b1 != 0.95 {
		t.Errorf("start: lr %v beta1 %v, want 4e-5 and 0.95", lr, b1)
	}
	lr, b1 = s.At(479) // pct_start*T - 1 = 479: the peak
	if !near(lr, 1e-3) || !near(b1, 0.85) {
		t.Errorf("peak: lr %v beta1 %v, want 1e-3 and 0.85", lr, b1)
	}
	lr, b1 = s.At(1599)
	if !near(lr, 1e-3/25/1e4) || !near(b1, 0.95) {
		t.Errorf("end: lr %v beta1 %v, want 4e-9 and 0.95", lr, b1)
	}
}

func TestOneCycleValidate(t *testing.T) {
	for _, s := range []OneCycle{
		NewOneCycle(0, 1, 10),
		NewOneCycle(math.Inf(1), 1, 10),
		NewOneCycle(1e-3, 0, 10),
		NewOneCycle(1e-3, 1, 3), // pct_start*T - 1 = -0.1: no warm-up step
		{MaxLR: 1e-3, TotalSteps: 100, PctStart: 1, DivFactor: 25, FinalDivFactor: 1e4},
		{MaxLR: 1e-3, TotalSteps: 100, PctStart: 0.3, DivFactor: 0, FinalDivFactor: 1e4},
	} {
		if s.Validate() == nil {
			t.Errorf("%+v: no error", s)
		}
	}
}
