package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
)

// Options are the settings of a training run.
type Options struct {
	Epochs          int     `json:"epochs"`
	Batch           int     `json:"batch"`
	MaxLR           float64 `json:"max_lr"`
	AdamW           AdamW   `json:"adamw"`
	Seed            uint64  `json:"seed"`             // initialisation and data order
	CheckpointEvery int     `json:"checkpoint_every"` // optimizer steps; 0: at epoch ends only
	Keep            int     `json:"keep"`             // step checkpoints kept besides last and best
	BestMetric      string  `json:"best_metric"`      // see Metric; "" picks the default
	LogEvery        int     `json:"log_every"`        // steps between metrics lines
}

// DefaultOptions is the original recipe's optimizer and schedule (SPEC
// §1.4) with a batch a CPU can take.
func DefaultOptions() Options {
	return Options{Epochs: 16, Batch: 256, MaxLR: 1e-3, AdamW: DefaultAdamW(), Seed: 0, Keep: 2, LogEvery: 10}
}

// State is where a run stands after a whole number of optimizer steps: all
// a resumed run needs besides the parameters and moments.
type State struct {
	Step     int      `json:"step"`     // optimizer steps taken
	Epoch    int      `json:"epoch"`    // current epoch, 0-based
	Batch    int      `json:"batch"`    // next batch within the epoch
	Schedule OneCycle `json:"schedule"` // fixed at the start of the run
	Options  Options  `json:"options"`
	Data     DataInfo `json:"data"`
	Best     *Best    `json:"best,omitempty"`
	// Running loss sums: of the steps since the last metrics record, and of
	// the current epoch. They are part of the state so that a resumed run
	// logs the same numbers and picks the same best checkpoint.
	Window    LossSum `json:"window"`
	EpochLoss LossSum `json:"epoch_loss"`
}

// LossSum accumulates batch losses weighted by rows.
type LossSum struct {
	Sum  float64 `json:"sum"`
	Rows int     `json:"rows"`
}

func (l *LossSum) add(loss float64, rows int) {
	l.Sum += loss * float64(rows)
	l.Rows += rows
}

func (l LossSum) mean() float64 { return l.Sum / float64(l.Rows) }

// DataInfo identifies the training data a run was started on, so a resume
// on other data is refused.
type DataInfo struct {
	Rows      int `json:"rows"`
	InputDim  int `json:"input_dim"`
	OutputDim int `json:"output_dim"`
}

// Best is the best value of the chosen metric so far and where it was.
type Best struct {
	Metric     string  `json:"metric"`
	Value      float64 `json:"value"`
	Step       int     `json:"step"`
	Epoch      int     `json:"epoch"` // epochs completed when measured
	Checkpoint string  `json:"checkpoint"`
}

// Trainer runs training on an engine. Set the fields, then call Run.
type Trainer struct {
	Engine  nn.Engine
	Data    *Dataset
	Evals   []*retrieval.Set
	Options Options
	RunDir  string
	Log     *slog.Logger
	// Progress, when not nil, receives a progress bar (a terminal).
	Progress io.Writer
}

// Result summarises a finished run.
type Result struct {
	State   State
	Reports []retrieval.Report // the last evaluation
}

// ErrNonFinite is returned when the loss turns NaN or Inf.
var ErrNonFinite = errors.New("loss is not finite")

func (o Options) validate(c nn.Config, d *Dataset) error {
	switch {
	case o.Epochs < 1:
		return fmt.Errorf("epochs %d: must be at least 1", o.Epochs)
	case o.CheckpointEvery < 0:
		return fmt.Errorf("checkpoint interval %d: must not be negative", o.CheckpointEvery)
	case o.Keep < 0:
		return fmt.Errorf("checkpoints to keep %d: must not be negative", o.Keep)
	case d.InputDim != c.InputDim || d.OutputDim != c.OutputDim:
		return fmt.Errorf("training data %s is %d -> %d wide, the model %d -> %d", d.Dir, d.InputDim, d.OutputDim, c.InputDim, c.OutputDim)
	}
	return o.AdamW.Validate()
}

// Run trains from scratch, or from the run directory's last checkpoint when
// resume is set. A cancelled ctx saves a checkpoint and returns ctx.Err();
// resuming it gives the same parameters, bit for bit, as a run never
// stopped.
func (tr *Trainer) Run(ctx context.Context, resume bool) (Result, error) {
	if tr.Log == nil {
		tr.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := tr.Engine.Config()
	for _, s := range tr.Evals {
		if _, err := s.CLIP(); err != nil {
			return Result{}, err
		}
	}
	var st State
	if resume {
		var err error
		if st, err = tr.restore(); err != nil {
			return Result{}, err
		}
	} else {
		if err := tr.Options.validate(c, tr.Data); err != nil {
			return Result{}, err
		}
		if _, err := ParseMetric(tr.Options.BestMetric, tr.Evals); err != nil {
			return Result{}, err
		}
		order, err := NewOrder(tr.Data.Rows, tr.Options.Batch, tr.Options.Seed)
		if err != nil {
			return Result{}, err
		}
		st = State{
			Options:  tr.Options,
			Schedule: NewOneCycle(tr.Options.MaxLR, tr.Options.Epochs, order.StepsPerEpoch()),
			Data:     DataInfo{Rows: tr.Data.Rows, InputDim: tr.Data.InputDim, OutputDim: tr.Data.OutputDim},
		}
		if err := st.Schedule.Validate(); err != nil {
			return Result{}, fmt.Errorf("%w (%d epochs x %d rows / batch %d)", err, tr.Options.Epochs, tr.Data.Rows, tr.Options.Batch)
		}
		if err := startRunDir(tr.RunDir, st); err != nil {
			return Result{}, err
		}
		if err := tr.Engine.SetParameters(nn.InitParameters[float32](c, tr.Options.Seed)); err != nil {
			return Result{}, err
		}
	}
	metric, err := ParseMetric(st.Options.BestMetric, tr.Evals)
	if err != nil {
		return Result{}, err
	}
	metrics, err := openMetrics(filepath.Join(tr.RunDir, MetricsFile), st.Step)
	if err != nil {
		return Result{}, err
	}
	defer metrics.Close()
	return tr.loop(ctx, st, metric, metrics)
}

func (tr *Trainer) loop(ctx context.Context, st State, metric Metric, metrics *metricsWriter) (Result, error) {
	o := st.Options
	order, err := NewOrder(tr.Data.Rows, o.Batch, o.Seed)
	if err != nil {
		return Result{}, err
	}
	spe := order.StepsPerEpoch()
	tr.Log.Info("training", "model", tr.Engine.Config().String(), "rows", tr.Data.Rows, "batch", o.Batch,
		"epochs", o.Epochs, "steps", st.Schedule.TotalSteps, "from_step", st.Step)
	batches := prefetch(ctx, tr.Data, order, st.Epoch, st.Batch, o.Epochs)
	defer batches.stop()
	bar := newProgress(tr.Progress, st.Schedule.TotalSteps, st.Step)
	var res Result
	var stepTime time.Duration // since the last metrics record, for throughput
	for st.Epoch < o.Epochs {
		for st.Batch < spe {
			if ctx.Err() != nil {
				bar.finish()
				if err := tr.save(st, nil, nil); err != nil {
					return res, err
				}
				tr.Log.Info("interrupted; saved a checkpoint to resume from", "step", st.Step, "run", tr.RunDir)
				return res, ctx.Err()
			}
			b, err := batches.next()
			if err != nil {
				return res, err
			}
			start := time.Now()
			loss, err := tr.Engine.ForwardBackward(b.x, b.t, o.Batch)
			batches.recycle(b)
			if err == nil && (math.IsNaN(loss) || math.IsInf(loss, 0)) {
				err = ErrNonFinite
			}
			if err != nil {
				bar.finish()
				return res, fmt.Errorf("step %d (epoch %d, batch %d): %w; the run stopped, its last good checkpoint is %s",
					st.Step+1, st.Epoch+1, st.Batch, err, filepath.Join(tr.RunDir, checkpoint.LastLink))
			}
			st.Step++
			hp := st.Options.AdamW.Step(st.Schedule, st.Step)
			if err := tr.Engine.Step(hp); err != nil {
				return res, err
			}
			st.Batch++
			stepTime += time.Since(start)
			st.Window.add(loss, o.Batch)
			st.EpochLoss.add(loss, o.Batch)
			bar.set(st.Step, loss)
			if o.LogEvery > 0 && st.Step%o.LogEvery == 0 {
				if err := metrics.write(trainRecord(st, hp, stepTime)); err != nil {
					return res, err
				}
				if bar.bar == nil {
					tr.Log.Info("step", "step", st.Step, "of", st.Schedule.TotalSteps, "epoch", st.Epoch+1, "loss", st.Window.mean(), "lr", hp.LR)
				}
				st.Window, stepTime = LossSum{}, 0
			}
			if o.CheckpointEvery > 0 && st.Step%o.CheckpointEvery == 0 && st.Batch < spe {
				if err := tr.save(st, nil, nil); err != nil {
					return res, err
				}
			}
		}
		st.Epoch++
		st.Batch = 0
		epochLoss := st.EpochLoss.mean()
		st.EpochLoss = LossSum{}
		reports, err := tr.evaluate()
		if err != nil {
			return res, err
		}
		res.Reports = reports
		value, err := metric.Value(epochLoss, reports)
		if err != nil {
			return res, err
		}
		if err := metrics.write(evalRecord(st, epochLoss, reports, metric.Name, value)); err != nil {
			return res, err
		}
		var improved *Best
		if st.Best == nil || metric.Better(value, st.Best.Value) {
			improved = &Best{Metric: metric.Name, Value: value, Step: st.Step, Epoch: st.Epoch}
		}
		if err := tr.save(st, improved, reports); err != nil {
			return res, err
		}
		if improved != nil {
			st.Best = improved // save named its checkpoint
		}
		tr.Log.Info("epoch done", append([]any{"epoch", st.Epoch, "step", st.Step, "loss", epochLoss, metric.Name, value}, summarize(reports)...)...)
	}
	bar.finish()
	res.State = st
	return res, nil
}

func (tr *Trainer) evaluate() ([]retrieval.Report, error) {
	reports := make([]retrieval.Report, 0, len(tr.Evals))
	for _, s := range tr.Evals {
		r, err := s.Evaluate(tr.Engine.Project)
		if err != nil {
			return nil, err
		}
		reports = append(reports, r)
	}
	return reports, nil
}

func summarize(reports []retrieval.Report) []any {
	var kv []any
	for _, r := range reports {
		kv = append(kv, r.Name+"_t2i_pct_clip", round2(r.PercentOfCLIP.TextToImagePercent),
			r.Name+"_i2t_pct_clip", round2(r.PercentOfCLIP.ImageToTextPercent))
	}
	return kv
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

func trainRecord(st State, hp nn.AdamWStep, elapsed time.Duration) map[string]any {
	return map[string]any{
		"type": "train", "step": st.Step, "epoch": st.Epoch + 1, "loss": st.Window.mean(),
		"lr": hp.LR, "beta1": hp.Beta1, "samples_per_s": float64(st.Window.Rows) / elapsed.Seconds(),
		"time": time.Now().UTC().Format(time.RFC3339),
	}
}

func evalRecord(st State, loss float64, reports []retrieval.Report, metric string, value float64) map[string]any {
	return map[string]any{
		"type": "eval", "step": st.Step, "epoch": st.Epoch, "train_loss": loss,
		"metric": metric, "value": value, "sets": reports,
		"time": time.Now().UTC().Format(time.RFC3339),
	}
}

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, append(b, '\n'))
}
