package bench

import (
	"fmt"
	"math"

	"github.com/dinoclip/dinoclip/nn"
)

// RecipeProjection is the time the original recipe (docs/TRAINING.md: 8M pairs x
// 16 epochs at batch 8192 with the data already in memory, the default
// model) would take at a measured training throughput.
type RecipeProjection struct {
	Pairs  int `json:"pairs"`
	Epochs int `json:"epochs"`
	Batch  int `json:"batch"`
	// Steps is pairs x epochs / batch (15625). dinoclip's trainer drops each
	// epoch's last partial batch and so runs 976 x 16 = 15616 steps, 0.06%
	// fewer; the projection counts samples.
	Steps float64 `json:"steps"`
	// MeasuredBatch is the batch whose throughput the projection uses:
	// Batch when it was measured, else the nearest measured one (Scaled).
	MeasuredBatch    int     `json:"measured_batch"`
	Scaled           bool    `json:"scaled"`
	SamplesPerSecond float64 `json:"samples_per_second"`
	StepSeconds      float64 `json:"step_seconds"` // at Batch: Batch / SamplesPerSecond
	Seconds          float64 `json:"seconds"`
	Note             string  `json:"note"`
}

// ProjectRecipe projects the recipe's time from the results of the default
// model: from the step time at batch 8192 if it was measured, else from the
// throughput (samples/s) at the measured batch nearest to 8192, assumed to
// hold at 8192, which the note says. It returns nil when no result is of
// the default model.
func ProjectRecipe(results []TrainResult) *RecipeProjection {
	var best *TrainResult
	dist := func(b int) float64 { return math.Abs(math.Log(float64(b) / RecipeBatch)) }
	for i := range results {
		r := &results[i]
		if r.Config != nn.DefaultConfig() || r.SamplesPerSecond <= 0 {
			continue
		}
		if best == nil || dist(r.Batch) < dist(best.Batch) || (dist(r.Batch) == dist(best.Batch) && r.Batch > best.Batch) {
			best = r
		}
	}
	if best == nil {
		return nil
	}
	p := &RecipeProjection{
		Pairs: RecipePairs, Epochs: RecipeEpochs, Batch: RecipeBatch,
		Steps:         float64(RecipePairs) * RecipeEpochs / RecipeBatch,
		MeasuredBatch: best.Batch, Scaled: best.Batch != RecipeBatch,
		SamplesPerSecond: best.SamplesPerSecond,
	}
	p.StepSeconds = RecipeBatch / p.SamplesPerSecond
	p.Seconds = float64(RecipePairs) * RecipeEpochs / p.SamplesPerSecond
	if p.Scaled {
		p.Note = fmt.Sprintf("batch %d was not measured: projected from the throughput at batch %d (%.4g samples/s), assumed to hold at batch %d",
			RecipeBatch, best.Batch, best.SamplesPerSecond, RecipeBatch)
	} else {
		p.Note = fmt.Sprintf("%.0f steps x the measured median step at batch %d", p.Steps, RecipeBatch)
	}
	return p
}

// FormatDuration writes seconds as the largest fitting units, e.g. "2 h 5
// min" or "3.2 s".
func FormatDuration(s float64) string {
	if s < 60 {
		return fmt.Sprintf("%.3g s", s)
	}
	t := int64(math.Round(s))
	switch {
	case t < 3600:
		return fmt.Sprintf("%d min %d s", t/60, t%60)
	case t < 86400:
		t = int64(math.Round(s / 60))
		return fmt.Sprintf("%d h %d min", t/60, t%60)
	}
	t = int64(math.Round(s / 3600))
	return fmt.Sprintf("%d d %d h", t/24, t%24)
}
