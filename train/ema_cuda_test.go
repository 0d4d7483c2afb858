//go:build cuda

package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/cuda"
	"github.com/dinoclip/dinoclip/nn"
)

// hideEMA is the GPU engine without its nn.EMAEngine methods: the trainer
// keeps the moving average on the host.
type hideEMA struct{ nn.Engine }

// cancelAfterGPU is cancelAfter on the GPU engine, its average kept there.
type cancelAfterGPU struct {
	*cancelAfter
	gpu *cuda.Engine
}

func (c cancelAfterGPU) StartEMA(init []float32, decay float64) error {
	return c.gpu.StartEMA(init, decay)
}
func (c cancelAfterGPU) UpdateEMA() error        { return c.gpu.UpdateEMA() }
func (c cancelAfterGPU) EMA(dst []float32) error { return c.gpu.EMA(dst) }

// A run with --ema on the GPU engine (in the emulator under -tags cudaemu)
// that keeps the average on the device writes the same ema.safetensors,
// bit for bit, and the same metrics (the averaged weights' evaluations),
// as the run whose average the trainer keeps on the host from the same
// engine's weights; so does one stopped after 5 steps and resumed, whose
// device average restarts from the checkpoint's. A decay of 0.999 rounds
// its products (so an FMA would show).
func TestEMAOnGPUEngineMatchesHost(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	newGPU := func() *cuda.Engine {
		e, err := cuda.NewEngine(loopModel)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	run := func(runDir string, wrap func(*cuda.Engine) nn.Engine, resume bool, ctx context.Context) *Trainer {
		tr := newTrainer(t, dataDir, runDir, func(nn.Engine) nn.Engine { return wrap(newGPU()) })
		// Host batches in every run: the wrappers hide nn.ResidentEngine.
		tr.Options.EMA, tr.Options.BestFrom, tr.Options.Resident = 0.999, BestFromEMA, ResidentOff
		if _, err := tr.Run(ctx, resume); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		return tr
	}
	emaFile := func(runDir string) []byte {
		b, err := os.ReadFile(filepath.Join(runDir, checkpoint.LastLink, checkpoint.EMAFile))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hostDir, deviceDir, resumedDir := t.TempDir(), t.TempDir(), t.TempDir()
	if tr := run(hostDir, func(e *cuda.Engine) nn.Engine { return hideEMA{e} }, false, context.Background()); tr.emaEngine != nil {
		t.Fatal("the engine that hides nn.EMAEngine kept the average")
	}
	if tr := run(deviceDir, func(e *cuda.Engine) nn.Engine { return e }, false, context.Background()); tr.emaEngine == nil {
		t.Fatal("the GPU engine's run kept the average on the host")
	}
	ctx, cancel := context.WithCancel(context.Background())
	run(resumedDir, func(e *cuda.Engine) nn.Engine {
		return cancelAfterGPU{&cancelAfter{Engine: e, n: 5, cancel: cancel}, e}
	}, false, ctx)
	cancel()
	run(resumedDir, func(e *cuda.Engine) nn.Engine { return e }, true, context.Background())

	want := emaFile(hostDir)
	for _, dir := range []string{deviceDir, resumedDir} {
		if !slices.Equal(emaFile(dir), want) {
			t.Errorf("%s: the average kept on the device differs from the one kept on the host", filepath.Base(dir))
		}
		if a, b := metricsLines(t, dir), metricsLines(t, hostDir); !slices.Equal(a, b) {
			t.Errorf("%s: metrics differ from the host-kept run", filepath.Base(dir))
		}
	}
}
