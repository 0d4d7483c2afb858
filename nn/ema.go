package nn

// EMAEngine is an [Engine] that keeps the exponential moving average of
// its weights (train.Options EMA) in its own memory, a GPU's, so that a
// training step updates it without copying the weights out. The trainer
// uses it when an engine has it and keeps the average on the host
// otherwise; both give the same bits (BlendEMA).
type EMAEngine interface {
	Engine
	// StartEMA sets the average to init (NumParams values) and its decay
	// to decay, in (0, 1), replacing any average started before.
	StartEMA(init []float32, decay float64) error
	// UpdateEMA blends the current weights into the average, as BlendEMA
	// with the decay of StartEMA. It fails before StartEMA.
	UpdateEMA() error
	// EMA copies the average into dst (NumParams values). It fails before
	// StartEMA.
	EMA(dst []float32) error
}

// BlendEMA blends the weights w into their moving average ema, in place:
// ema[i] = float32(decay*float64(ema[i]) + (1-decay)*float64(w[i])), each
// product and the sum rounded to float64 on its own (Go does not fuse an
// explicit float64 conversion's operands into an FMA), rounded to float32
// once. An EMAEngine computes exactly this.
func BlendEMA(ema, w []float32, decay float64) {
	omd := 1 - decay
	for i, wi := range w[:len(ema)] {
		ema[i] = float32(float64(decay*float64(ema[i])) + float64(omd*float64(wi)))
	}
}
