package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
)

// A run stopped between its checkpoint steps (here after step 14 or 23;
// the test options checkpoint every 3 steps) and resumed keeps the
// checkpoints of a run never stopped: the interrupt's own checkpoint is
// removed once a later one is saved (seen when all are kept), and does not
// push a scheduled one out of those kept (seen when 1 is kept besides the
// newest).
func TestResumeKeepsTheScheduledCheckpoints(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	for _, keep := range []int{1, 100} {
		trainer := func(runDir string, wrap func(nn.Engine) nn.Engine) *Trainer {
			tr := newTrainer(t, dataDir, runDir, wrap)
			tr.Options.Keep = keep
			return tr
		}
		straightDir := t.TempDir()
		if _, err := trainer(straightDir, nil).Run(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		for _, stop := range []int{14, 23} {
			runDir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			tr := trainer(runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: stop, cancel: cancel} })
			_, err := tr.Run(ctx, false)
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("stopped after step %d: %v", stop, err)
			}
			if _, err := os.Stat(filepath.Join(runDir, checkpointName(stop))); err != nil {
				t.Fatalf("the interrupt after step %d saved no checkpoint of its own: %v", stop, err)
			}
			if _, err := trainer(runDir, nil).Run(context.Background(), true); err != nil {
				t.Fatal(err)
			}
			sameRun(t, "keep "+strconv.Itoa(keep)+": stopped after step "+strconv.Itoa(stop)+" and resumed", runDir, straightDir)
		}
	}
}

// A resume killed after pointing last at the checkpoint that ends the run
// (here: the last epoch's, saved once its pending evaluation was done),
// before it removed the pending checkpoint and wrote run.json, is
// finished by the next resume, though the run has no step left to take:
// the run directory is then the one of a run never stopped.
func TestResumeFinishesAKilledSavesTail(t *testing.T) {
	dataDir, straightDir := straightRun(t)
	runDir, st := stopInEvaluation(t, dataDir, 3) // the last epoch's evaluation
	if st.Epoch != st.Options.Epochs {
		t.Fatalf("stopped in the last evaluation: epoch %d of %d", st.Epoch, st.Options.Epochs)
	}
	pending := filepath.Join(runDir, st.checkpointName())
	stale := t.TempDir()
	if err := os.CopyFS(stale, os.DirFS(pending)); err != nil {
		t.Fatal(err)
	}
	staleRunJSON, err := os.ReadFile(filepath.Join(runDir, RunFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	sameRun(t, "resumed from the last evaluation", runDir, straightDir)
	// What the kill left: the pending checkpoint and run.json of before.
	if err := os.CopyFS(pending, os.DirFS(stale)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runDir, RunFile), staleRunJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	sameRun(t, "resumed again after a kill at the end of the resume", runDir, straightDir)
}

// The last link must name the checkpoint its state was saved under: a
// pending evaluation's checkpoint renamed to its step's plain name was
// taken for the evaluated one, and removed while it was the one resumed
// from.
func TestResumeRefusesACheckpointUnderAnotherName(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	runDir, st := stopInEvaluation(t, dataDir, 2)
	plain := checkpointName(st.Step)
	if err := os.Rename(filepath.Join(runDir, st.checkpointName()), filepath.Join(runDir, plain)); err != nil {
		t.Fatal(err)
	}
	if err := pointLink(runDir, checkpoint.LastLink, plain); err != nil {
		t.Fatal(err)
	}
	_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "holds the trainer state of "+st.checkpointName()) {
		t.Fatalf("resume from a pending checkpoint under its step's plain name: %v, want it refused", err)
	}
	if _, err := os.Stat(filepath.Join(runDir, plain, checkpoint.ModelFile)); err != nil {
		t.Errorf("the refused resume removed the checkpoint: %v", err)
	}
}
