package nn_test

import (
	"fmt"
	"runtime"
	"sync"
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

// BenchmarkPasses times the float32 elementwise and row-wise passes of a
// training step at the default model's widths, reporting GB/s of the
// fewest bytes each reads plus writes (the rate to compare with copy
// bandwidth).
func BenchmarkPasses(b *testing.B) {
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i%97)/50 - 1
		}
		return v
	}
	for _, rows := range []int{64, 256} {
		const d = 2048
		n := rows * d
		x, y, dy, xhat := fill(n), make([]float32, n), fill(n), fill(n)
		rstd, gamma, beta := fill(rows), fill(d), fill(d)
		sums, sums2 := make([]float32, d), make([]float32, d)
		for _, p := range []struct {
			name  string
			bytes int // per element
			run   func()
		}{
			{"gelu_fwd", 8, func() { nn.GELUForward(y, x) }},
			{"gelu_bwd", 12, func() { nn.GELUBackward(y, dy, x) }},
			{"layernorm_fwd", 12, func() { nn.LayerNormForward(y, xhat, rstd, x, gamma, beta, rows, d) }},
			{"layernorm_bwd", 12, func() { nn.LayerNormBackward(y, sums, sums2, dy, xhat, rstd, gamma, rows, d) }},
			{"colsum", 4, func() { nn.ColumnSums(sums, dy, rows, d) }},
		} {
			b.Run(fmt.Sprintf("%s/%dx%d", p.name, rows, d), func(b *testing.B) {
				for b.Loop() {
					p.run()
				}
				b.ReportMetric(float64(p.bytes*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
	params := nn.DefaultConfig().NumParams()
	b.Run(fmt.Sprintf("adamw/%d", params), func(b *testing.B) {
		p, g, m, v := fill(params), fill(params), make([]float32, params), make([]float32, params)
		hp := nn.AdamWStep{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 1}
		nn.AdamW(p, g, m, v, hp) // fault m's and v's pages in before the timing
		for b.Loop() {
			hp.Step++
			nn.AdamW(p, g, m, v, hp)
		}
		b.ReportMetric(28*float64(params)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
	b.Run(fmt.Sprintf("copy/%d", params), func(b *testing.B) {
		src, dst := fill(params), make([]float32, params)
		copy(dst, src) // fault dst's pages in before the timing
		// Split across GOMAXPROCS goroutines, as the passes and
		// dinoclip bench's copy bandwidth are.
		workers := runtime.GOMAXPROCS(0)
		for b.Loop() {
			var wg sync.WaitGroup
			for w := range workers {
				lo, hi := params*w/workers, params*(w+1)/workers
				wg.Go(func() { copy(dst[lo:hi], src[lo:hi]) })
			}
			wg.Wait()
		}
		b.ReportMetric(8*float64(params)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
}

// BenchmarkProject times forward passes of the default model's float32
// engine: Project, which packs the weights once and reuses them, beside
// Model.Forward, which packs each weight in each product; samples/s.
func BenchmarkProject(b *testing.B) {
	c := nn.DefaultConfig()
	for _, batch := range []int{64, 256} {
		e, err := nn.NewCPUEngine[float32](c)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.SetParameters(nn.InitParameters[float32](c, 1)); err != nil {
			b.Fatal(err)
		}
		xs, _ := enginetest.Batches(c, 1, batch, 1)
		out := make([]float32, batch*c.OutputDim)
		for _, packed := range []bool{true, false} {
			name := fmt.Sprintf("packed_b%d", batch)
			if !packed {
				name = fmt.Sprintf("unpacked_b%d", batch)
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					var err error
					if packed {
						err = e.Project(out, xs[0], batch)
					} else {
						_, err = e.Model.Forward(xs[0], batch)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "samples/s")
			})
		}
	}
}
