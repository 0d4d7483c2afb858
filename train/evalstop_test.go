package train

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
)

// cancelInProject cancels a context at its engine's nth projection, which
// is inside an epoch-end evaluation, and counts the projections after it.
type cancelInProject struct {
	nn.Engine
	n      int
	cancel context.CancelFunc
	after  int
}

func (c *cancelInProject) Project(dst, x []float32, n int) error {
	switch c.n--; {
	case c.n == 0:
		c.cancel()
	case c.n < 0:
		c.after++
	}
	return c.Engine.Project(dst, x, n)
}

// runFiles is what a run directory holds besides metrics.jsonl: every
// file under checkpoints/ and run.json by their bytes, the links by their
// targets, and the checkpoints' owner record by whether it names the run
// (its bytes hold the run's path).
func runFiles(t *testing.T, runDir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	ownerRecord := filepath.Join(runDir, CheckpointsDir, CheckpointsOwnerFile)
	err := filepath.WalkDir(filepath.Join(runDir, CheckpointsDir), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(runDir, path)
		files[rel] = string(b)
		if self, _ := atomicfile.RealPath(runDir); path == ownerRecord {
			files[rel] = fmt.Sprintf("names the run: %v", strings.HasPrefix(string(b), self+"\n"))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(runDir, RunFile))
	if err != nil {
		t.Fatal(err)
	}
	files[RunFile] = string(b)
	for _, l := range []string{checkpoint.LastLink, checkpoint.BestLink} {
		target, err := os.Readlink(filepath.Join(runDir, l))
		if err != nil {
			t.Fatal(err)
		}
		files[l] = "-> " + target
	}
	return files
}

// sameRun fails the test where the run in runDir differs from the one in
// wantDir: its checkpoints bit for bit, run.json, the links, or the
// records of metrics.jsonl.
func sameRun(t *testing.T, what, runDir, wantDir string) {
	t.Helper()
	got, want := runFiles(t, runDir), runFiles(t, wantDir)
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: %s is missing", what, name)
		} else if g != w {
			t.Errorf("%s: %s differs from the uninterrupted run's", what, name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: %s is not in the uninterrupted run", what, name)
		}
	}
	if a, b := metricsLines(t, runDir), metricsLines(t, wantDir); !slices.Equal(a, b) {
		t.Errorf("%s: metrics differ from the uninterrupted run:\n%s\nvs\n%s", what, strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}

// Ctrl-C during an epoch-end evaluation stops it at once: the checkpoint
// of the epoch end is saved with the evaluation pending and no record of
// it, and a resume does that evaluation first. The run then ends with the
// checkpoints, links, run.json and records of a run never stopped, in
// every case: during the first evaluation (no best yet), during the last
// (the resume only evaluates), during the moving average's, twice (the
// pending evaluation stopped again on resume), and in the first of two
// batches of images to project (the second is not projected).
func TestInterruptDuringEvaluation(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	withEMA := func(tr *Trainer) { tr.Options.EMA, tr.Options.BestFrom = 0.9, BestFromEMA }
	// A set of two batches of images to project (the tiny set's rows
	// repeated), so that a stop in the first is seen before the second.
	withLargeSet := func(tr *Trainer) {
		tiny, n := tr.Evals[0], retrieval.ProjectBatch+1
		s := &retrieval.Set{Name: tiny.Name, Images: n, Captions: n, FeatureDim: tiny.FeatureDim, EmbeddingDim: tiny.EmbeddingDim}
		for i := range n {
			r := i % tiny.Images
			s.ImageFeatures = append(s.ImageFeatures, tiny.ImageFeatures[r*s.FeatureDim:(r+1)*s.FeatureDim]...)
			s.ImageCLIP = append(s.ImageCLIP, tiny.ImageCLIP[r*s.EmbeddingDim:(r+1)*s.EmbeddingDim]...)
			s.CaptionImage = append(s.CaptionImage, i)
		}
		s.CaptionCLIP = s.ImageCLIP
		tr.Evals = []*retrieval.Set{s}
	}
	for _, c := range []struct {
		name    string
		options func(*Trainer)
		// The projection each stop is in: the tiny set is one batch of
		// images, projected once an epoch (twice with the average), the
		// large one two.
		stops []int
		// The epoch-end step of the last stop.
		pendingStep int
	}{
		{"first epoch", nil, []int{1}, 12},
		{"last epoch", nil, []int{3}, 36},
		{"twice", nil, []int{2, 1}, 24},
		{"between two batches of images", withLargeSet, []int{1}, 12},
		{"moving average", withEMA, []int{2}, 12},
		{"moving average, last epoch", withEMA, []int{6}, 36},
	} {
		t.Run(c.name, func(t *testing.T) {
			configure := func(tr *Trainer) *Trainer {
				if c.options != nil {
					c.options(tr)
				}
				return tr
			}
			straightDir := t.TempDir()
			if _, err := configure(newTrainer(t, dataDir, straightDir, nil)).Run(context.Background(), false); err != nil {
				t.Fatal(err)
			}
			runDir := t.TempDir()
			for i, n := range c.stops {
				ctx, cancel := context.WithCancel(context.Background())
				var stopper *cancelInProject
				tr := configure(newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine {
					stopper = &cancelInProject{Engine: e, n: n, cancel: cancel}
					return stopper
				}))
				_, err := tr.Run(ctx, i > 0)
				cancel()
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("stop %d: run ended with %v, want context.Canceled", i+1, err)
				}
				if stopper.after != 0 {
					t.Errorf("stop %d: %d projections after the interrupt", i+1, stopper.after)
				}
			}
			st := checkpointState(t, runDir)
			if st.PendingEval == nil || st.Step != c.pendingStep {
				t.Fatalf("the interrupted run's last checkpoint: step %d, evaluation pending %v; want step %d with its evaluation pending", st.Step, st.PendingEval != nil, c.pendingStep)
			}
			if target, _ := os.Readlink(filepath.Join(runDir, checkpoint.LastLink)); target != st.checkpointName() {
				t.Errorf("last links %s, want %s", target, st.checkpointName())
			}
			for _, l := range metricsLines(t, runDir) {
				if strings.Contains(l, `"type":"eval"`) && strings.Contains(l, `"step":`+strconv.Itoa(c.pendingStep)+`,`) {
					t.Errorf("the interrupted evaluation has a record: %s", l)
				}
			}
			var steps *stepCounter
			tr := configure(newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { steps = &stepCounter{Engine: e}; return steps }))
			res, err := tr.Run(context.Background(), true)
			if err != nil {
				t.Fatal(err)
			}
			if total := res.State.Schedule.TotalSteps; int(steps.steps.Load()) != total-c.pendingStep || len(res.Reports) != 1 {
				t.Errorf("the resume took %d steps (want %d) and reports %d evaluations (want 1)", steps.steps.Load(), total-c.pendingStep, len(res.Reports))
			}
			sameRun(t, "resumed", runDir, straightDir)
		})
	}
}

// straightRun trains the test's tiny run without a stop, and returns its
// data and run directories.
func straightRun(t *testing.T) (dataDir, runDir string) {
	t.Helper()
	dataDir, runDir = t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	return dataDir, runDir
}

// stopInEvaluation trains the tiny run on dataDir in a new directory,
// stopped in the epoch-end evaluation of its nth projection, and returns
// the directory and the state its last checkpoint holds (with its
// evaluation pending).
func stopInEvaluation(t *testing.T, dataDir string, n int) (runDir string, st State) {
	t.Helper()
	runDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelInProject{Engine: e, n: n, cancel: cancel} })
	if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("run ended with %v, want context.Canceled", err)
	}
	st = checkpointState(t, runDir)
	if st.PendingEval == nil {
		t.Fatalf("stopped in projection %d: step %d, no evaluation pending", n, st.Step)
	}
	return runDir, st
}

// A pending evaluation's record is written once: a resume that died after
// writing it and before saving the evaluated checkpoint (left in
// metrics.jsonl here by hand) is resumed to the records of a run never
// stopped. So is one that died after saving that checkpoint (here a
// checkpoint of other bits under its name, as inputs accepted as changed
// would make) but before pointing last at it.
func TestPendingEvaluationLeftovers(t *testing.T) {
	dataDir, straightDir := straightRun(t)
	runDir, st := stopInEvaluation(t, dataDir, 2)
	// The record of the evaluation at st.Step, from the run never stopped.
	straight, err := os.ReadFile(filepath.Join(straightDir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var record string
	for _, l := range strings.SplitAfter(string(straight), "\n") {
		if strings.Contains(l, `"type":"eval"`) && strings.Contains(l, `"step":`+strconv.Itoa(st.Step)+`,`) {
			record = l
		}
	}
	if record == "" {
		t.Fatalf("the uninterrupted run has no evaluation record of step %d", st.Step)
	}
	f, err := os.OpenFile(filepath.Join(runDir, MetricsFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(record); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.CopyFS(filepath.Join(runDir, checkpointName(st.Step)), os.DirFS(filepath.Join(runDir, st.checkpointName()))); err != nil {
		t.Fatal(err)
	}
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	sameRun(t, "resumed over leftovers", runDir, straightDir)
}
