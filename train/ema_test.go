package train

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
)

// recordWeights keeps a copy of the engine's weights after every step.
type recordWeights struct {
	nn.Engine
	after [][]float32
}

func (r *recordWeights) Step(s nn.AdamWStep) error {
	if err := r.Engine.Step(s); err != nil {
		return err
	}
	p := make([]float32, r.Config().NumParams())
	err := r.Parameters(p)
	r.after = append(r.after, p)
	return err
}

// The moving average in the last checkpoint is the one computed here from
// the initial weights and the weights after every step, bit for bit; the
// evaluations record it; best by "ema" points at a checkpoint whose
// ema.safetensors Resolve returns for the run.
func TestEMA(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	runDir := t.TempDir()
	rec := &recordWeights{}
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { rec.Engine = e; return rec })
	tr.Options.EMA, tr.Options.BestFrom = 0.9, BestFromEMA
	if _, err := tr.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	want := nn.InitParameters[float32](loopModel, tr.Options.Seed)
	d := tr.Options.EMA
	for _, w := range rec.after {
		for i := range want {
			want[i] = float32(d*float64(want[i]) + (1-d)*float64(w[i]))
		}
	}
	ck, err := checkpoint.Load(filepath.Join(runDir, checkpoint.LastLink))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.after) != 36 || !slices.Equal(ck.EMA, want) {
		t.Fatalf("after %d steps the checkpoint's moving average is not the one computed from the weights", len(rec.after))
	}
	if slices.Equal(ck.EMA, ck.Params) {
		t.Fatal("the moving average is the raw weights")
	}
	// Evaluating the average leaves the training untouched.
	plain := newTrainer(t, dataDir, t.TempDir(), nil)
	if _, err := plain.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(params(t, plain.Engine), ck.Params) {
		t.Error("the run with a moving average trained other weights than the run without")
	}
	if ck.EMAMeta["ema_decay"] != "0.9" {
		t.Errorf("ema.safetensors metadata %v", ck.EMAMeta)
	}
	evals := 0
	for _, l := range metricsLines(t, runDir) {
		if strings.Contains(l, `"type":"eval"`) {
			evals++
			if !strings.Contains(l, `"ema":{"sets":[{`) {
				t.Errorf("an eval record without the moving average's evaluation: %s", l)
			}
		}
	}
	if evals != 3 {
		t.Errorf("%d eval records, want 3", evals)
	}
	path, err := checkpoint.Resolve(runDir)
	if err != nil || filepath.Base(path) != checkpoint.EMAFile {
		t.Errorf("Resolve of a run with best from ema: %s, %v", path, err)
	}
}

// By the training loss, an eval record gives the moving average no value:
// the loss is the raw weights'. By a recall, it gives the average's.
func TestEMAValueOfTheMetric(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	for _, metric := range []string{"loss", "r5"} {
		tr := newTrainer(t, dataDir, t.TempDir(), nil)
		tr.Options.EMA, tr.Options.BestMetric = 0.9, metric
		if _, err := tr.Run(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		evals := 0
		for _, l := range metricsLines(t, tr.RunDir) {
			var rec struct {
				Type string
				EMA  map[string]json.RawMessage
			}
			if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Type != "eval" {
				continue
			}
			evals++
			if _, has := rec.EMA["value"]; has != (metric != "loss") || rec.EMA["sets"] == nil {
				t.Errorf("--best-metric %s: an eval record's ema: %s", metric, l)
			}
		}
		if evals == 0 {
			t.Errorf("--best-metric %s: no eval records", metric)
		}
	}
}

// A run with a moving average resumes bit for bit, its average included.
func TestEMAResumeIsBitIdentical(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	straightDir := t.TempDir()
	straight := newTrainer(t, dataDir, straightDir, nil)
	straight.Options.EMA = 0.75
	if _, err := straight.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(straightDir, checkpoint.LastLink, checkpoint.EMAFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, stops := range [][]int{{5}, {4, 17}} {
		runDir := t.TempDir()
		resume := false
		for _, n := range stops {
			ctx, cancel := context.WithCancel(context.Background())
			tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: n, cancel: cancel} })
			tr.Options.EMA = 0.75
			if _, err := tr.Run(ctx, resume); !errors.Is(err, context.Canceled) {
				t.Fatalf("stops %v: %v", stops, err)
			}
			cancel()
			resume = true
		}
		tr := newTrainer(t, dataDir, runDir, nil)
		if _, err := tr.Run(context.Background(), true); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(runDir, checkpoint.LastLink, checkpoint.EMAFile))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("stops %v: the resumed run's ema.safetensors differs from the uninterrupted run's (%v)", stops, err)
		}
		if a, b := metricsLines(t, runDir), metricsLines(t, straightDir); !slices.Equal(a, b) {
			t.Errorf("stops %v: metrics differ from the uninterrupted run", stops)
		}
	}
	// A checkpoint that lost its moving average cannot continue the run.
	runDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 5, cancel: cancel} })
	tr.Options.EMA = 0.75
	tr.Run(ctx, false)
	cancel()
	ema := filepath.Join(runDir, checkpoint.LastLink, checkpoint.EMAFile)
	average, err := checkpoint.ReadModel(ema)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(ema)
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err == nil || !strings.Contains(err.Error(), checkpoint.EMAFile) {
		t.Errorf("resume without the moving average: %v", err)
	}
	// Nor can one whose moving average is another file of the step: the
	// model's weights (which record the step, no decay), or an average of
	// another decay.
	model, err := checkpoint.ReadModel(filepath.Join(runDir, checkpoint.LastLink, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	otherDecay := maps.Clone(average.Meta)
	otherDecay["ema_decay"] = "0.5"
	for _, c := range []struct {
		name string
		m    *checkpoint.Model
	}{{"the model", model}, {"decay 0.5", &checkpoint.Model{Config: average.Config, Params: average.Params, Meta: otherDecay}}} {
		name, m := c.name, c.m
		if err := checkpoint.WriteModel(ema, m.Config, m.Params, m.Meta); err != nil {
			t.Fatal(err)
		}
		if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err == nil || !strings.Contains(err.Error(), "not the run's --ema 0.75") {
			t.Errorf("resume with %s as its moving average: %v, want it refused", name, err)
		}
	}
}

func TestEMAOptionsRefused(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	for _, c := range []struct {
		ema      float64
		bestFrom string
		metric   string
		want     string
	}{
		{1, "", "", "(0, 1)"}, {-0.5, "", "", "(0, 1)"}, {math.NaN(), "", "", "(0, 1)"}, {math.Inf(1), "", "", "(0, 1)"},
		{0, BestFromEMA, "", "without a moving average"}, {0.9, "both", "", `"both"`},
		{0.9, BestFromEMA, "loss", "not \"loss\""},
	} {
		tr := newTrainer(t, dataDir, t.TempDir(), nil)
		tr.Options.EMA, tr.Options.BestFrom, tr.Options.BestMetric = c.ema, c.bestFrom, c.metric
		if _, err := tr.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ema %v, best from %q, metric %q: %v, want an error with %q", c.ema, c.bestFrom, c.metric, err, c.want)
		}
	}
}

// In a float64 run, evaluating the moving average puts the float64
// weights back at full precision: the run trains the bits of a run
// without an average.
func TestEMAFloat64LeavesTrainingUntouched(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	var final [2][]float64
	for i, ema := range []float64{0, 0.9} {
		tr := newTrainer(t, dataDir, t.TempDir(), nil)
		e, err := nn.NewCPUEngine[float64](loopModel)
		if err != nil {
			t.Fatal(err)
		}
		tr.Engine = e
		tr.Options.Precision, tr.Options.EMA = PrecisionFP64, ema
		if _, err := tr.Run(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		final[i] = e.Model.Params
	}
	if !slices.Equal(final[0], final[1]) {
		t.Error("the float64 run with a moving average trained other weights than the run without")
	}
}

// countParameters counts the copies of the weights out of the engine.
type countParameters struct {
	nn.Engine
	copies int
}

func (c *countParameters) Parameters(dst []float32) error {
	c.copies++
	return c.Engine.Parameters(dst)
}

// deviceEMA is an nn.EMAEngine as a GPU engine is one, on the CPU engine:
// the average kept beside the weights, blended without copying them out
// (countParameters does not see it).
type deviceEMA struct {
	*countParameters
	ema     []float32
	decay   float64
	starts  int
	updates int
}

func (d *deviceEMA) StartEMA(init []float32, decay float64) error {
	d.ema, d.decay = slices.Clone(init), decay
	d.starts++
	return nil
}

func (d *deviceEMA) UpdateEMA() error {
	w := make([]float32, len(d.ema))
	if err := d.countParameters.Engine.Parameters(w); err != nil {
		return err
	}
	nn.BlendEMA(d.ema, w, d.decay)
	d.updates++
	return nil
}

func (d *deviceEMA) EMA(dst []float32) error {
	copy(dst, d.ema)
	return nil
}

// With an engine that keeps the average itself, the trainer starts it on
// a new run and again on resume, updates it once a step, copies the weights
// out once a step fewer than when it keeps the average on the host, and
// writes the same ema.safetensors and metrics.
func TestEMAKeptByTheEngine(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	hostDir, engineDir := t.TempDir(), t.TempDir()
	host := &countParameters{}
	tr := newTrainer(t, dataDir, hostDir, func(e nn.Engine) nn.Engine { host.Engine = e; return host })
	tr.Options.EMA = 0.999
	if _, err := tr.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	var legs []*deviceEMA
	for i, stop := range []int{5, 0} {
		ctx, cancel := context.WithCancel(context.Background())
		d := &deviceEMA{countParameters: &countParameters{}}
		legs = append(legs, d)
		tr := newTrainer(t, dataDir, engineDir, func(e nn.Engine) nn.Engine {
			d.countParameters.Engine = e
			if stop == 0 {
				return d
			}
			d.countParameters.Engine = &cancelAfter{Engine: e, n: stop, cancel: cancel}
			return d
		})
		tr.Options.EMA = 0.999
		if _, err := tr.Run(ctx, i > 0); err != nil && !(stop > 0 && errors.Is(err, context.Canceled)) {
			t.Fatal(err)
		}
		cancel()
	}
	steps := legs[0].updates + legs[1].updates
	if steps != 36 || legs[0].starts != 1 || legs[1].starts != 1 {
		t.Fatalf("%d updates, starts %d and %d: want 36 updates and one start each leg", steps, legs[0].starts, legs[1].starts)
	}
	// The resumed leg saves one checkpoint more (the stop's), which copies
	// the weights out once.
	if copies := legs[0].copies + legs[1].copies; host.copies-copies != 36-1 {
		t.Errorf("the weights were copied out %d times with the engine's average, %d with the host's: want 35 fewer", copies, host.copies)
	}
	a, err := os.ReadFile(filepath.Join(hostDir, checkpoint.LastLink, checkpoint.EMAFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(engineDir, checkpoint.LastLink, checkpoint.EMAFile))
	if err != nil || !slices.Equal(a, b) {
		t.Errorf("the engine-kept average's ema.safetensors differs from the host-kept one's (%v)", err)
	}
	if !slices.Equal(metricsLines(t, hostDir), metricsLines(t, engineDir)) {
		t.Error("metrics differ")
	}
}
