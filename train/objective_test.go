package train

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
)

// A contrastive run trains its logit scale, saves it with its trainer
// state, and a run stopped and resumed (once or twice) ends with the bits
// of a run never stopped: model, moments, logit scale and metrics.
func TestContrastiveResumeIsBitIdentical(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	for _, o := range []struct {
		loss   string
		weight float64
	}{{nn.LossInfoNCE, 0}, {nn.LossMSEInfoNCE, 0.5}} {
		t.Run(o.loss, func(t *testing.T) {
			setLoss := func(tr *Trainer) { tr.Options.Loss, tr.Options.InfoNCEWeight = o.loss, o.weight }
			straightDir := t.TempDir()
			straight := newTrainer(t, dataDir, straightDir, nil)
			setLoss(straight)
			res, err := straight.Run(context.Background(), false)
			if err != nil {
				t.Fatal(err)
			}
			ls := res.State.LogitScale
			if ls == nil || ls.Value == nn.InitLogitScale || ls.V == 0 {
				t.Fatalf("the logit scale was not trained: %+v", ls)
			}
			info, err := ReadRunInfo(straightDir)
			if err != nil || info.Options.Loss != o.loss || info.Options.InfoNCEWeight != o.weight || info.LogitScale == nil || *info.LogitScale != *ls {
				t.Fatalf("run.json: options %+v, logit scale %+v (%v); want loss %s, weight %v, logit scale %+v", info.Options, info.LogitScale, err, o.loss, o.weight, *ls)
			}
			want := lastCheckpointFiles(t, straightDir)
			for _, stops := range [][]int{{5}, {4, 17}} {
				runDir := t.TempDir()
				resume := false
				for _, n := range stops {
					ctx, cancel := context.WithCancel(context.Background())
					tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: n, cancel: cancel} })
					setLoss(tr)
					if _, err := tr.Run(ctx, resume); !errors.Is(err, context.Canceled) {
						t.Fatalf("stops %v: %v", stops, err)
					}
					cancel()
					resume = true
				}
				// A resumed run takes its loss from the run, not from Options.
				if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
					t.Fatal(err)
				}
				got := lastCheckpointFiles(t, runDir)
				for name, b := range want {
					if !slices.Equal(got[name], b) {
						t.Errorf("stops %v: the resumed run's %s differs from the uninterrupted run's", stops, name)
					}
				}
				if a, b := metricsLines(t, runDir), metricsLines(t, straightDir); !slices.Equal(a, b) {
					t.Errorf("stops %v: metrics differ from the uninterrupted run", stops)
				}
			}
		})
	}
}

// lastCheckpointFiles reads the files of a run's last checkpoint.
func lastCheckpointFiles(t *testing.T, runDir string) map[string][]byte {
	t.Helper()
	dir := filepath.Join(runDir, checkpoint.LastLink)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	if len(files) < 2 {
		t.Fatalf("%s holds %d files", dir, len(files))
	}
	return files
}

// The MSE loss is the same run with or without the option spelt out, and
// it has no logit scale.
func TestMSELossIsTheDefault(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	var files []map[string][]byte
	for _, loss := range []string{"", nn.LossMSE} {
		runDir := t.TempDir()
		tr := newTrainer(t, dataDir, runDir, nil)
		tr.Options.Loss = loss
		res, err := tr.Run(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if res.State.LogitScale != nil {
			t.Errorf("loss %q: logit scale %+v", loss, res.State.LogitScale)
		}
		files = append(files, lastCheckpointFiles(t, runDir))
	}
	if !slices.Equal(files[0][checkpoint.ModelFile], files[1][checkpoint.ModelFile]) {
		t.Errorf("loss \"\" and loss %q train different models", nn.LossMSE)
	}
}

func TestLossOptionsRefused(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	for _, c := range []struct {
		loss   string
		weight float64
		want   string
	}{
		{"mae", 0, `"mae"`}, {nn.LossMSE, 0.5, "InfoNCE weight"}, {nn.LossInfoNCE, 2, "InfoNCE weight"},
		{nn.LossMSEInfoNCE, 0, "InfoNCE weight"}, {nn.LossMSEInfoNCE, -1, "InfoNCE weight"},
		{nn.LossMSEInfoNCE, math.NaN(), "InfoNCE weight"}, {nn.LossMSEInfoNCE, math.Inf(1), "InfoNCE weight"},
		{nn.LossInfoNCE, 0, "at least 2 rows"},
	} {
		runDir := t.TempDir()
		tr := newTrainer(t, dataDir, runDir, nil)
		tr.Options.Loss, tr.Options.InfoNCEWeight = c.loss, c.weight
		if strings.Contains(c.want, "2 rows") {
			tr.Options.Batch = 1
		}
		if _, err := tr.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("loss %q, weight %v: %v, want an error with %q", c.loss, c.weight, err, c.want)
		}
		if entries, _ := os.ReadDir(runDir); len(entries) != 0 {
			t.Errorf("loss %q, weight %v: the refused run wrote %d entries into its directory", c.loss, c.weight, len(entries))
		}
	}
}

// An engine that cannot compute the objective (the GPU engine and
// InfoNCE) stops the run before it writes anything.
func TestRefusedObjectiveStopsTheRun(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	runDir := t.TempDir()
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return mseOnly{e} })
	tr.Options.Loss = nn.LossInfoNCE
	if _, err := tr.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "MSE only") {
		t.Errorf("InfoNCE on an engine without it: %v", err)
	}
	if entries, _ := os.ReadDir(runDir); len(entries) != 0 {
		t.Errorf("the refused run wrote %d entries into its directory", len(entries))
	}
}

type mseOnly struct{ nn.Engine }

func (mseOnly) SetObjective(o nn.Objective) error {
	if o.Contrastive() {
		return errors.New("this engine computes the MSE only")
	}
	return nil
}

func TestCheckLogitScale(t *testing.T) {
	nce := Options{Loss: nn.LossInfoNCE}
	good := &LogitScale{Value: 2, M: -0.1, V: 0.01}
	for _, c := range []struct {
		o    Options
		ls   *LogitScale
		want string
	}{
		{nce, nil, "no logit scale"},
		{Options{}, good, "has a logit scale"},
		{nce, &LogitScale{Value: math.NaN()}, "not finite"},
		{nce, &LogitScale{Value: 1, M: math.Inf(1)}, "not finite"},
		{nce, &LogitScale{Value: 1, V: -1}, "negative"},
	} {
		if err := checkLogitScale(c.o, c.ls); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("loss %q, logit scale %+v: %v, want an error with %q", c.o.Loss, c.ls, err, c.want)
		}
	}
	if err := checkLogitScale(nce, good); err != nil {
		t.Error(err)
	}
	if err := checkLogitScale(Options{}, nil); err != nil {
		t.Error(err)
	}
}
