package train

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/safetensors"
)

// stoppedRun trains loopOptions on 100 rows (12 steps per epoch) and stops
// after n steps, leaving a run to resume.
func stoppedRun(t *testing.T, n int) (dataDir, runDir string) {
	t.Helper()
	dataDir, runDir = t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: n, cancel: cancel} })
	if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("run stopped after %d steps: %v", n, err)
	}
	return dataDir, runDir
}

// tamperState rewrites the trainer state in the last checkpoint's
// optimizer.safetensors through edit, as a hostile or careless hand would.
func tamperState(t *testing.T, runDir string, edit func(map[string]any)) {
	t.Helper()
	dir := filepath.Join(runDir, checkpoint.LastLink)
	ck, err := checkpoint.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(ck.State, &st); err != nil {
		t.Fatal(err)
	}
	edit(st)
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	n := len(ck.M)
	if err := safetensors.Write(filepath.Join(dir, checkpoint.OptimizerFile), []safetensors.Tensor{
		safetensors.NewFloat32("exp_avg", []int{n}, ck.M),
		safetensors.NewFloat32("exp_avg_sq", []int{n}, ck.V),
	}, map[string]string{"format": checkpoint.OptimizerFormat, "state": string(b)}); err != nil {
		t.Fatal(err)
	}
}

// A trainer state that does not fit its run is refused on resume with an
// error naming what is wrong, never a panic and never a silent resume (an
// epoch -1 used to panic in Order.BatchRows; a step of 10^12 ran the
// schedule past its end; batch 999 skipped the rest of an epoch).
func TestResumeRefusesTamperedState(t *testing.T) {
	set := func(path string, v any) func(map[string]any) {
		return func(st map[string]any) {
			keys := strings.Split(path, ".")
			m := st
			for _, k := range keys[:len(keys)-1] {
				m = m[k].(map[string]any)
			}
			m[keys[len(keys)-1]] = v
		}
	}
	cases := []struct {
		name  string
		stop  int // steps before the stop: 5 is mid-epoch 0, 17 mid-epoch 1
		edit  func(map[string]any)
		wants string
	}{
		{"epoch -1", 5, set("epoch", -1), "epoch -1"},
		{"epoch past the run", 5, set("epoch", 7), "epoch 7"},
		{"step 1e12", 5, set("step", 1e12), "step 1000000000000"},
		{"step behind the position", 17, set("step", 3), "step 3"},
		{"batch 999", 5, set("batch", 999), "batch 999"},
		{"batch -1", 5, set("batch", -1), "batch -1"},
		{"other epochs", 5, set("options.epochs", 30), "options"},
		{"other batch size", 5, set("options.batch", 0), "batch 0"},
		{"longer schedule", 5, set("schedule.total_steps", 1e6), "schedule"},
		{"other data", 5, set("data.rows", 50), "50 rows"},
		{"window sum", 5, set("window.rows", -8), "window"},
		{"negative epoch loss", 5, set("epoch_loss.sum", -1), "epoch_loss"},
		{"no best after an epoch", 17, set("best", nil), "no best checkpoint"},
		{"best by another metric", 17, set("best.metric", "loss"), `"loss"`},
		{"best from the future", 17, set("best.step", 24), "step 24"},
		{"best elsewhere", 17, set("best.checkpoint", "../../etc"), "../../etc"},
		{"not json", 5, func(st map[string]any) { clear(st); st["step"] = "x" }, "trainer state"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dataDir, runDir := stoppedRun(t, c.stop)
			tamperState(t, runDir, c.edit)
			tr := newTrainer(t, dataDir, runDir, nil)
			_, err := tr.Run(context.Background(), true)
			if err == nil || !strings.Contains(err.Error(), c.wants) {
				t.Fatalf("resume of a state with %s: error %v, want one containing %q", c.name, err, c.wants)
			}
		})
	}
	// The untouched state resumes.
	dataDir, runDir := stoppedRun(t, 17)
	tamperState(t, runDir, func(map[string]any) {})
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
		t.Fatalf("resume of an untouched state: %v", err)
	}
}

// Counts that multiply are checked: an epoch count whose steps overflow an
// int is refused instead of wrapping to a short run that cycles the
// learning rate forever.
func TestStepsOverflow(t *testing.T) {
	if spe, total, err := Steps(3, 100, 8); err != nil || spe != 12 || total != 36 {
		t.Fatalf("Steps(3, 100, 8) = %d, %d, %v; want 12, 36", spe, total, err)
	}
	for _, c := range []struct{ epochs, rows, batch int }{
		{2305843009213693953, 64, 16}, {math.MaxInt, 2, 1}, {math.MaxInt/100 + 1, 100, 100},
	} {
		if _, total, err := Steps(c.epochs, c.rows, c.batch); err == nil {
			t.Errorf("Steps(%d, %d, %d): no error, %d steps", c.epochs, c.rows, c.batch, total)
		}
	}
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	runDir := t.TempDir()
	tr := newTrainer(t, dataDir, runDir, nil)
	tr.Options.Epochs = 2305843009213693953
	if _, err := tr.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "2305843009213693953 epochs") {
		t.Fatalf("a run of 2305843009213693953 epochs: %v", err)
	}
}
