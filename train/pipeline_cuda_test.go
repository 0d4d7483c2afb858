//go:build cuda

package train

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/cuda"
	"github.com/dinoclip/dinoclip/nn"
)

// synchronousGPU is the GPU engine without its nn.PipelinedEngine methods:
// the trainer takes ForwardBackwardRows and Step.
type synchronousGPU struct{ nn.ResidentEngine }

// cancelPipelined is the GPU engine that cancels a context after n
// pipelined steps.
type cancelPipelined struct {
	*cuda.Engine
	n      int
	cancel context.CancelFunc
}

func (c *cancelPipelined) StepRows(rows []int32, s nn.AdamWStep) (float64, bool, error) {
	loss, done, err := c.Engine.StepRows(rows, s)
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return loss, done, err
}

// A resident MSE run on the GPU engine (the emulator under -tags cudaemu)
// takes the pipelined step, captured as a graph, and writes the metrics and
// ends with the parameters of the same run through ForwardBackwardRows and
// Step, bit for bit; so does one stopped after 5 steps and resumed (the
// pending loss read before the checkpoint).
func TestPipelinedGPURunMatchesSynchronous(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, true)
	newGPU := func() *cuda.Engine {
		e, err := cuda.NewEngine(loopModel)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	run := func(runDir string, e nn.Engine, resume bool, ctx context.Context) *Trainer {
		tr := newTrainer(t, dataDir, runDir, func(nn.Engine) nn.Engine { return e })
		if _, err := tr.Run(ctx, resume); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		return tr
	}
	syncDir, pipeDir := t.TempDir(), t.TempDir()
	syncRun := run(syncDir, synchronousGPU{newGPU()}, false, context.Background())
	if pipelined(syncRun.Engine.(nn.ResidentEngine), syncRun.Options) != nil {
		t.Fatal("the wrapped engine is pipelined")
	}
	want := params(t, syncRun.Engine)
	pipeRun := run(pipeDir, newGPU(), false, context.Background())
	if pipelined(pipeRun.Engine.(nn.ResidentEngine), pipeRun.Options) == nil {
		t.Fatal("the GPU engine's resident MSE run is not pipelined")
	}
	sameParams(t, "pipelined GPU run", params(t, pipeRun.Engine), want)
	if a, b := metricsLines(t, pipeDir), metricsLines(t, syncDir); !slices.Equal(a, b) {
		t.Fatalf("metrics differ:\n%s\nvs\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}

	resumedDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	run(resumedDir, &cancelPipelined{Engine: newGPU(), n: 5, cancel: cancel}, false, ctx)
	cancel()
	if st := checkpointState(t, resumedDir); st.Step != 5 {
		t.Fatalf("stopped after 5 steps: checkpoint at step %d", st.Step)
	}
	tr := run(resumedDir, newGPU(), true, context.Background())
	sameParams(t, "pipelined GPU run stopped and resumed", params(t, tr.Engine), want)
	if a, b := metricsLines(t, resumedDir), metricsLines(t, syncDir); !slices.Equal(a, b) {
		t.Fatalf("resumed: metrics differ:\n%s\nvs\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}
