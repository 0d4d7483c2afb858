package train

import (
	"fmt"
	"math"
)

// OneCycle is torch.optim.lr_scheduler.OneCycleLR with two phases
// (three_phase=False), cosine annealing and momentum cycling: the learning
// rate rises from MaxLR/DivFactor to MaxLR over the first PctStart of the
// steps and falls to MaxLR/DivFactor/FinalDivFactor, while β1 moves the
// opposite way between MaxMomentum and BaseMomentum.
type OneCycle struct {
	MaxLR          float64 `json:"max_lr"`
	TotalSteps     int     `json:"total_steps"`
	PctStart       float64 `json:"pct_start"`
	DivFactor      float64 `json:"div_factor"`
	FinalDivFactor float64 `json:"final_div_factor"`
	BaseMomentum   float64 `json:"base_momentum"`
	MaxMomentum    float64 `json:"max_momentum"`
}

// NewOneCycle returns PyTorch's defaults (pct_start 0.3, div_factor 25,
// final_div_factor 1e4, momenta 0.85 to 0.95) for epochs x stepsPerEpoch
// steps.
func NewOneCycle(maxLR float64, epochs, stepsPerEpoch int) OneCycle {
	return OneCycle{
		MaxLR: maxLR, TotalSteps: epochs * stepsPerEpoch,
		PctStart: 0.3, DivFactor: 25, FinalDivFactor: 1e4,
		BaseMomentum: 0.85, MaxMomentum: 0.95,
	}
}

// phaseEnds are PyTorch's end_step values: pct_start*T - 1 (a float, not
// rounded) and T - 1. The first is negative for T < 1/pct_start (1 to 3
// steps at pct_start 0.3): PyTorch then has no warm-up step, and every
// step, the first included, lies in the annealing phase (see At).
func (s OneCycle) phaseEnds() (float64, float64) {
	return s.PctStart*float64(s.TotalSteps) - 1, float64(s.TotalSteps) - 1
}

// Validate reports a schedule PyTorch would reject or divide by zero on:
// PyTorch accepts any total_steps >= 1, but divides 0 by 0 at step 0 when
// the warm-up phase ends exactly there (pct_start*T == 1, as pct_start
// 0.25 with 4 steps), a ZeroDivisionError.
func (s OneCycle) Validate() error {
	e1, _ := s.phaseEnds()
	switch {
	case !(s.MaxLR > 0) || math.IsInf(s.MaxLR, 0):
		return fmt.Errorf("one-cycle: max learning rate %v must be positive and finite", s.MaxLR)
	case s.TotalSteps < 1:
		return fmt.Errorf("one-cycle: %d total steps", s.TotalSteps)
	case !(s.PctStart > 0 && s.PctStart < 1):
		return fmt.Errorf("one-cycle: pct_start %v must be in (0, 1)", s.PctStart)
	case e1 == 0:
		return fmt.Errorf("one-cycle: %d steps with pct_start %v end the warm-up phase at step 0, where PyTorch divides by zero", s.TotalSteps, s.PctStart)
	case !(s.DivFactor > 0) || !(s.FinalDivFactor > 0):
		return fmt.Errorf("one-cycle: div factors %v and %v must be positive", s.DivFactor, s.FinalDivFactor)
	}
	return nil
}

// At returns the learning rate and β1 that optimizer step k+1 uses: k is
// the scheduler's step index, 0 at construction and incremented after each
// optimizer step, so At(0) is the first update's values. k must be in
// [0, TotalSteps]. As in PyTorch, a step lies in the warm-up phase when
// k <= pct_start*T - 1, else in the annealing phase measured from that
// (possibly negative) end: with T = 1 the only step takes the final
// learning rate MaxLR/DivFactor/FinalDivFactor.
func (s OneCycle) At(k int) (lr, beta1 float64) {
	initial := s.MaxLR / s.DivFactor
	minLR := initial / s.FinalDivFactor
	e1, e2 := s.phaseEnds()
	step := float64(k)
	if step <= e1 {
		pct := step / e1
		return anneal(initial, s.MaxLR, pct), anneal(s.MaxMomentum, s.BaseMomentum, pct)
	}
	pct := (step - e1) / (e2 - e1)
	return anneal(s.MaxLR, minLR, pct), anneal(s.BaseMomentum, s.MaxMomentum, pct)
}

// anneal is PyTorch's cosine interpolation from start (pct 0) to end (pct 1).
func anneal(start, end, pct float64) float64 {
	return end + (start-end)/2*(math.Cos(math.Pi*pct)+1)
}
