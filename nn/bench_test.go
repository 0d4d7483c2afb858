package nn_test

import (
	"fmt"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// BenchmarkTrainStep times one training step (forward, loss, backward,
// AdamW) of the float32 CPU engine and reports samples/s and the GFLOP/s of
// the GEMMs (6 flops per weight per sample).
func BenchmarkTrainStep(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cfg   nn.Config
		batch int
	}{
		{"small", nn.Config{InputDim: 768, HiddenDim: 256, OutputDim: 512, Blocks: 2}, 256},
		{"default", nn.DefaultConfig(), 64},
		{"default", nn.DefaultConfig(), 256},
	} {
		b.Run(fmt.Sprintf("%s_b%d", bc.name, bc.batch), func(b *testing.B) {
			e, err := nn.NewCPUEngine[float32](bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := e.SetParameters(nn.InitParameters[float32](bc.cfg, 1)); err != nil {
				b.Fatal(err)
			}
			xs, ts := enginetest.Batches(bc.cfg, 1, bc.batch, 1)
			hp := nn.AdamWStep{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := e.ForwardBackward(xs[0], ts[0], bc.batch); err != nil {
					b.Fatal(err)
				}
				hp.Step = i + 1
				if err := e.Step(hp); err != nil {
					b.Fatal(err)
				}
			}
			secs := b.Elapsed().Seconds()
			samples := float64(b.N * bc.batch)
			b.ReportMetric(samples/secs, "samples/s")
			b.ReportMetric(samples*bc.cfg.FLOPsPerSample()/secs/1e9, "GFLOP/s")
		})
	}
}
