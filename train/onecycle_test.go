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
		// pct_start*T - 1 = 0: PyTorch's ZeroDivisionError at step 0.
		{MaxLR: 1e-3, TotalSteps: 4, PctStart: 0.25, DivFactor: 25, FinalDivFactor: 1e4, BaseMomentum: 0.85, MaxMomentum: 0.95},
		{MaxLR: 1e-3, TotalSteps: 100, PctStart: 1, DivFactor: 25, FinalDivFactor: 1e4},
		{MaxLR: 1e-3, TotalSteps: 100, PctStart: 0.3, DivFactor: 0, FinalDivFactor: 1e4},
	} {
		if s.Validate() == nil {
			t.Errorf("%+v: no error", s)
		}
	}
}

// Schedules of 1 to 4 steps against PyTorch 2.15.0 (float64 Python
// arithmetic): the learning rate and beta1 of each optimizer step of
// OneCycleLR(AdamW, max_lr=1e-3, total_steps=T) with its defaults, as
// optimizer.param_groups[0] held them before each optimizer.step(). With
// T <= 3 the warm-up phase ends before step 0 (pct_start*T - 1 < 0) and
// every step anneals, the first included. The tolerance is a few ulps:
// both sides evaluate the same formula, and Go's math.Cos and CPython's
// libm cos may differ in the last bit.
func TestOneCycleShortAgainstPyTorch(t *testing.T) {
	type step struct{ lr, beta1 float64 }
	for _, c := range []struct {
		total int
		steps []step
	}{
		{1, []step{{4e-09, 0.95}}},
		{2, []step{{0.0008117456539497629, 0.8688255099070633}, {4e-09, 0.95}}},
		{3, []step{{0.0009944154354509117, 0.8505584586887436}, {0.00046263710266697503, 0.9037365046793212}, {4e-09, 0.95}}},
		{4, []step{{3.9999999999999996e-05, 0.95}, {0.0008117456539497629, 0.8688255099070633}, {0.0002830609982086992, 0.9216941869558779}, {4e-09, 0.95}}},
	} {
		s := NewOneCycle(1e-3, 1, c.total)
		if err := s.Validate(); err != nil {
			t.Errorf("%d steps: %v", c.total, err)
			continue
		}
		for k, want := range c.steps {
			lr, b1 := s.At(k)
			if !(math.Abs(lr-want.lr) <= 4e-16*want.lr) || !(math.Abs(b1-want.beta1) <= 4e-16) {
				t.Errorf("%d steps, step %d: lr %v beta1 %v, PyTorch %v and %v", c.total, k, lr, b1, want.lr, want.beta1)
			}
		}
	}
}
