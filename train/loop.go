package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
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
	// Resident is where batches come from on an engine that can hold the
	// training data (nn.ResidentEngine, the GPU engine): ResidentAuto
	// (the default; "" reads as it) loads the whole data set onto the
	// device once, as float16, when it fits, and takes each batch there by
	// row index; ResidentOff reads every batch on the host. A float32 data
	// set held as float16 trains on its values rounded to float16 (see
	// State.Float16); float16 data trains on the same values either way.
	Resident string `json:"resident,omitempty"`
	// Precision is the arithmetic of the run: PrecisionFP32 ("" reads as
	// it); PrecisionBF16, bf16 mixed precision on the GPU engine (bf16
	// GEMMs; float32 weights, gradients, moments and checkpoints); or
	// PrecisionFP64 on the CPU engine in float64 (nn.CPUEngine
	// [float64], the test oracle), whose checkpoints carry the float64
	// parameters and moments beside the float32 model
	// (checkpoint.Float64File) so that it resumes bit for bit.
	Precision string `json:"precision,omitempty"`
	// EMA, when not 0, is the decay of an exponential moving average of
	// the weights, updated after every optimizer step (ema = EMA*ema +
	// (1-EMA)*weights, in float64, kept as float32): by the engine where
	// it keeps the average (nn.EMAEngine: the GPU's), else on the host,
	// starting from the initial weights; it is evaluated at every epoch
	// end beside the raw weights and saved in each checkpoint
	// (checkpoint.EMAFile).
	EMA float64 `json:"ema,omitempty"`
	// BestFrom is which weights pick the best checkpoint: BestFromRaw
	// ("" reads as it) or BestFromEMA (needs EMA and evaluation sets).
	BestFrom string `json:"best_from,omitempty"`
	// Loss is the training objective: nn.LossMSE ("" reads as it),
	// nn.LossInfoNCE or nn.LossMSEInfoNCE, whose InfoNCE term is weighted
	// by InfoNCEWeight (0 under the others). The InfoNCE logit scale is
	// trained with the model (State.LogitScale).
	Loss          string  `json:"loss,omitempty"`
	InfoNCEWeight float64 `json:"infonce_weight,omitempty"`
}

// BestFromMode is o.BestFrom with "" read as BestFromRaw.
func (o Options) BestFromMode() string {
	if o.BestFrom == "" {
		return BestFromRaw
	}
	return o.BestFrom
}

// The values of Options.BestFrom (which checkpoint.Resolve reads in
// run.json).
const (
	BestFromRaw = checkpoint.BestFromRaw
	BestFromEMA = checkpoint.BestFromEMA
)

// The values of Options.Precision.
const (
	PrecisionFP32 = "fp32"
	PrecisionFP64 = "fp64"
	PrecisionBF16 = "bf16"
)

// HostBytes is what a run of shape c on rows training rows holds in host
// memory besides its engine (nn.Config.CPUEngineBytes on the CPU): the
// epoch's shuffle (4 bytes a row), the moving average of the weights
// (--ema), and, while a checkpoint is saved, the float32 copies of
// the parameters and AdamW moments it writes and the encoded bytes of its
// largest file (the moments; in an fp64 run, its float64 state). Counted
// in float64, as CPUEngineBytes: a trainer that checks only the engine is
// admitted and then runs out of memory at its first checkpoint, the one a
// Ctrl-C asks for included.
func (o Options) HostBytes(c nn.Config, rows int) float64 {
	p := float64(c.NumParams())
	largest := 8 * p // exp_avg and exp_avg_sq, float32
	if o.PrecisionMode() == PrecisionFP64 {
		largest = 24 * p // parameters and both moments, float64
	}
	bytes := 4*float64(rows) + 12*p + largest
	if o.EMA > 0 {
		bytes += 4 * p
	}
	return bytes
}

// CheckpointBytes is about what one checkpoint of a run of shape c takes
// on disk: the model and the AdamW moments in float32, in an fp64 run the
// float64 state besides, and with --ema the moving average.
func (o Options) CheckpointBytes(c nn.Config) float64 {
	p := float64(c.NumParams())
	bytes := 12 * p
	if o.PrecisionMode() == PrecisionFP64 {
		bytes += 24 * p
	}
	if o.EMA > 0 {
		bytes += 4 * p
	}
	return bytes
}

// checkpointsMidEpoch reports whether a run of o saves a checkpoint by
// CheckpointEvery after step, the batch-th of an epoch of spe steps: at
// every multiple of it but the epoch's last step, where the epoch's own
// checkpoint is saved.
func (o Options) checkpointsMidEpoch(step, batch, spe int) bool {
	return o.CheckpointEvery > 0 && step%o.CheckpointEvery == 0 && batch < spe
}

// CheckpointsSaved is how many checkpoints a run of o over rows of
// training data saves in all: one at each epoch's end, and those of
// checkpointsMidEpoch. (Epochs and steps a run takes are far from
// overflowing an int64.)
func (o Options) CheckpointsSaved(rows int) int64 {
	saves := int64(o.Epochs)
	if o.CheckpointEvery <= 0 || o.Batch <= 0 || rows < o.Batch {
		return saves
	}
	spe := int64(rows / o.Batch)
	steps := int64(o.Epochs) * spe
	every := int64(o.CheckpointEvery)
	lcm := every / gcd(every, spe) * spe // (the steps that end an epoch too)
	return saves + steps/every - steps/lcm
}

// gcd is the greatest common divisor of a and b, for b > 0.
func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// PrecisionMode is o.Precision with "" (a run from before the option)
// read as PrecisionFP32.
func (o Options) PrecisionMode() string {
	if o.Precision == "" {
		return PrecisionFP32
	}
	return o.Precision
}

// The values of Options.Resident.
const (
	ResidentAuto = "auto"
	ResidentOff  = "off"
)

// ResidentMode is o.Resident with "" (a run from before the option)
// read as ResidentAuto.
func (o Options) ResidentMode() string {
	if o.Resident == "" {
		return ResidentAuto
	}
	return o.Resident
}

// DefaultOptions is the original recipe's optimizer and schedule
// (docs/TRAINING.md) with a batch a CPU can take.
func DefaultOptions() Options {
	return Options{Epochs: 16, Batch: 256, MaxLR: 1e-3, AdamW: DefaultAdamW(), Seed: 0, Keep: 2, LogEvery: 10, Resident: ResidentAuto, Precision: PrecisionFP32, BestFrom: BestFromRaw, Loss: nn.LossMSE}
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
	// Float16 is set when the run trains on the data rounded to float16:
	// its batches came from a float16 copy held by the engine (see
	// Options.Resident). A resumed run keeps to those values, from the
	// engine's copy again or, when that cannot be, from host batches
	// rounded the same way, so that it ends with the same bits as a run
	// never stopped; and a run that has trained on float32 values keeps
	// reading them on the host.
	Float16 bool `json:"float16,omitempty"`
	// LogitScale is the InfoNCE logit scale and its moments under a loss
	// with an InfoNCE term, else nil.
	LogitScale *LogitScale `json:"logit_scale,omitempty"`
	// PendingEval, when not nil, is the evaluation of the epoch that ended
	// at Step, which an interrupt stopped: the state's checkpoint, saved
	// before it, has a name of its own (State.checkpointName), and a
	// resumed run does the evaluation before anything else, then what the
	// run would have done after it, so that the records, the checkpoint of
	// Step and the best one are those of a run never stopped.
	PendingEval *PendingEval `json:"pending_eval,omitempty"`
	// InputsSHA256 is Inputs.SHA256 of the inputs the run trained on up
	// to this state: a resume refuses a checkpoint whose state is not
	// run.json's in this (a checkpoint of another run trained on other
	// contents, or run.json of another run), which it would otherwise
	// continue under this run's name. Absent in states from before it was
	// recorded.
	InputsSHA256 string `json:"inputs_sha256,omitempty"`
	// LogRecords is how many records the metrics log held when the state
	// was saved (the log is synced before it): a resume that finds fewer
	// of them, a log cut or edited by hand or by the disk, says the
	// records are lost. Absent in states from before it was recorded.
	LogRecords int `json:"log_records,omitempty"`
	// LogSHA256 is the hex SHA-256 of those records less the clock's
	// fields (logDigest): a resume that finds as many records (or more),
	// but not these (one lost and another doubled, a digit changed), says
	// the log was edited. Absent in states from before it was recorded.
	LogSHA256 string `json:"log_sha256,omitempty"`
}

// PendingEval is an epoch-end evaluation still to be done: the epoch's
// training loss sum, which its record and the "loss" metric take.
type PendingEval struct {
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
	// Init, when not nil, starts a new run from these weights (a model
	// of the engine's shape) instead of a random initialisation: a
	// fine-tuning run, with a fresh optimizer and schedule. run.json
	// records it (RunInfo.Init). A resume ignores it: the run continues
	// from its checkpoint.
	Init *InitModel
	// CheckPlace, when not nil, refuses a new run's directory where the
	// caller does not let a run be (in another run, in an index). Run
	// calls it once it holds the directory's lock, since the caller's own
	// check before the run began: another process may have made a run or
	// an index around it since.
	CheckPlace func() error
	// AcceptChangedInputs lets a resume continue on training data or
	// evaluation sets whose contents are not the ones the run recorded
	// (RunInfo.Inputs), with a warning; without it such a resume is
	// refused.
	AcceptChangedInputs bool
	// Device is the device the engine computes on ("cpu", "cuda"), which
	// run.json records (RunInfo.Device) for a resume to take by default.
	Device string
	// Encoders names the DINOv2 and CLIP models that made the training
	// data (its extract.json's, else the Init model's), which every
	// checkpoint's model file records for the commands that later bring
	// it together with other vectors. A resume keeps those the checkpoint
	// it continues from records, taking from these only what it does not
	// name.
	Encoders dataset.Encoders

	initRef *InitRef // the run's RunInfo.Init
	inputs  *Inputs  // the run's RunInfo.Inputs
	// wrapRead, when not nil, wraps the function the prefetcher reads
	// batches with (tests: a read that is slow or cancels the run).
	wrapRead func(func(rows []int32, x, t []float32) error) func(rows []int32, x, t []float32) error
	// ema is the moving average of the weights (Options.EMA), nil
	// without one; weights is scratch for the engine's weights. With an
	// engine that keeps the average itself (nn.EMAEngine), emaEngine is it
	// and ema is the host copy, current only after syncEMA.
	ema, weights []float32
	emaEngine    nn.EMAEngine
	// unpruned names the checkpoints pruning left (a file no checkpoint
	// has in them, or one the run may not remove), each said once.
	unpruned map[string]bool
	// metrics is the run's open metrics log, which loop writes and save
	// makes durable before each checkpoint.
	metrics *metricsWriter
}

// InitModel is the model a fine-tuning run starts from.
type InitModel struct {
	Path     string           // the model file it was read from
	Params   []float32        // in [nn.Layout] order
	Encoders dataset.Encoders // what its metadata records
}

// Result summarises a finished run.
type Result struct {
	// AlreadyFinished is true for a resume of a run that had ended (its
	// last step taken and evaluated): it trained and evaluated nothing.
	AlreadyFinished bool
	State           State
	Reports         []retrieval.Report // the last evaluation
	// EMAReports is the last evaluation of the moving average of the
	// weights, in a run that keeps one (Options.EMA).
	EMAReports []retrieval.Report
}

// ErrNonFinite is wrapped by the error of a run stopped by a NaN or
// infinite loss: the engine's nn.ErrNonFinite, so that the trainer and
// every engine report the same sentinel.
var ErrNonFinite = nn.ErrNonFinite

// ErrDiverged is wrapped by the error of a run whose update made the
// weights NaN or infinite (found when they are saved), or so large that
// the model's outputs overflow (found when they are evaluated): after the
// last step of an epoch, or before a checkpoint, where no next step's
// loss shows it.
var ErrDiverged = errors.New("diverged")

// Check refuses options that a new run of the model c on the training
// data d, evaluated on evals, cannot train with: what Run checks of them
// before it opens the run directory, for a caller to say before it opens
// an engine.
func (o Options) Check(c nn.Config, d *Dataset, evals []*retrieval.Set) error {
	if err := o.validate(c, d); err != nil {
		return err
	}
	if _, err := bestMetric(o, evals); err != nil {
		return err
	}
	spe, _, err := Steps(o.Epochs, d.Rows, o.Batch)
	if err != nil {
		return err
	}
	if err := NewOneCycle(o.MaxLR, o.Epochs, spe).Validate(); err != nil {
		return fmt.Errorf("%w (%d epochs x %d rows / batch %d)", err, o.Epochs, d.Rows, o.Batch)
	}
	return nil
}

func (o Options) validate(c nn.Config, d *Dataset) error {
	switch {
	case o.Epochs < 1:
		return fmt.Errorf("epochs %d: must be at least 1", o.Epochs)
	case o.Batch < 1:
		return fmt.Errorf("batch %d: must be at least 1", o.Batch)
	case o.CheckpointEvery < 0:
		return fmt.Errorf("checkpoint interval %d: must not be negative", o.CheckpointEvery)
	case o.Keep < 0:
		return fmt.Errorf("checkpoints to keep %d: must not be negative", o.Keep)
	case o.LogEvery < 0:
		return fmt.Errorf("log interval %d: must not be negative", o.LogEvery)
	case d.InputDim != c.InputDim || d.OutputDim != c.OutputDim:
		return fmt.Errorf("training data %s is %d -> %d wide, the model %d -> %d", d.Dir, d.InputDim, d.OutputDim, c.InputDim, c.OutputDim)
	case o.ResidentMode() != ResidentAuto && o.ResidentMode() != ResidentOff:
		return fmt.Errorf("resident %q: want %q or %q", o.Resident, ResidentAuto, ResidentOff)
	case o.PrecisionMode() != PrecisionFP32 && o.PrecisionMode() != PrecisionFP64 && o.PrecisionMode() != PrecisionBF16:
		return fmt.Errorf("precision %q: want %q, %q or %q", o.Precision, PrecisionFP32, PrecisionBF16, PrecisionFP64)
	case o.EMA != 0 && !(o.EMA > 0 && o.EMA < 1):
		return fmt.Errorf("EMA decay %v: must be in (0, 1)", o.EMA)
	case o.BestFrom != "" && o.BestFrom != BestFromRaw && o.BestFrom != BestFromEMA:
		return fmt.Errorf("best from %q: want %q or %q", o.BestFrom, BestFromRaw, BestFromEMA)
	case o.BestFrom == BestFromEMA && o.EMA == 0:
		return fmt.Errorf("best from %q without a moving average: give an EMA decay", o.BestFrom)
	}
	if err := o.validateLoss(); err != nil {
		return err
	}
	return o.AdamW.Validate()
}

// Steps returns the optimizer steps per epoch and in all of a run of
// epochs over rows in batches of batch rows. It refuses a run without a
// whole batch, and one so long that epochs x rows (a bound on every count
// of steps and rows the run keeps) overflows an int.
func Steps(epochs, rows, batch int) (perEpoch, total int, err error) {
	switch {
	case epochs < 1:
		return 0, 0, fmt.Errorf("epochs %d: must be at least 1", epochs)
	case batch < 1:
		return 0, 0, fmt.Errorf("batch size %d: must be at least 1", batch)
	case rows < batch:
		return 0, 0, fmt.Errorf("the training data has %d rows, fewer than one batch of %d", rows, batch)
	case epochs > math.MaxInt/rows:
		return 0, 0, fmt.Errorf("%d epochs of %d rows: the count of rows trained on overflows (at most %d epochs of these rows)", epochs, rows, math.MaxInt/rows)
	}
	perEpoch = rows / batch
	return perEpoch, epochs * perEpoch, nil
}

// optionsDiff names the options in which a checkpoint's (ck) and
// run.json's (run) differ, by their JSON names, with both values.
func optionsDiff(ck, run Options) string {
	var a, b map[string]any
	ja, _ := json.Marshal(ck)
	jb, _ := json.Marshal(run)
	json.Unmarshal(ja, &a)
	json.Unmarshal(jb, &b)
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var diffs []string
	for _, k := range keys {
		if fmt.Sprint(a[k]) != fmt.Sprint(b[k]) {
			diffs = append(diffs, fmt.Sprintf("%s %v in the checkpoint, %v in run.json", k, orUnset(a[k]), orUnset(b[k])))
		}
	}
	return strings.Join(diffs, "; ")
}

func orUnset(v any) any {
	if v == nil {
		return "unset"
	}
	return v
}

// check reports what in a trainer state read from a checkpoint does not fit
// the run it belongs to (run, as run.json records it) or is not a state a
// run can reach: other options, another schedule, a position outside the
// run, running sums or a best checkpoint that disagree with the position.
func (st State) check(run State, evals []*retrieval.Set) error {
	o := st.Options
	if o != run.Options {
		return fmt.Errorf("its options are not the run's: %s", optionsDiff(o, run.Options))
	}
	if st.Data != run.Data {
		return fmt.Errorf("its training data %+v is not the run's %+v", st.Data, run.Data)
	}
	if err := checkLogitScale(o, st.LogitScale); err != nil {
		return err
	}
	spe, total, err := Steps(o.Epochs, st.Data.Rows, o.Batch)
	if err != nil {
		return err
	}
	if want := NewOneCycle(o.MaxLR, o.Epochs, spe); st.Schedule != want {
		return fmt.Errorf("its schedule %+v is not the options' %+v", st.Schedule, want)
	}
	if err := st.Schedule.Validate(); err != nil { // (a learning rate edited in both, say)
		return err
	}
	switch {
	case st.Epoch < 0 || st.Epoch > o.Epochs:
		return fmt.Errorf("epoch %d is outside the run's [0, %d]", st.Epoch, o.Epochs)
	case st.Batch < 0 || st.Batch >= spe || (st.Epoch == o.Epochs && st.Batch != 0):
		return fmt.Errorf("batch %d of epoch %d is outside the run's %d batches per epoch", st.Batch, st.Epoch, spe)
	case st.Step != st.Epoch*spe+st.Batch:
		return fmt.Errorf("step %d is not the step of epoch %d, batch %d (%d) with %d of %d steps per epoch",
			st.Step, st.Epoch, st.Batch, st.Epoch*spe+st.Batch, spe, total)
	}
	if st.LogitScale != nil {
		if err := st.LogitScale.checkRange(o, st.Schedule, st.Step); err != nil {
			return err
		}
	}
	sinceLog := st.Step
	if o.LogEvery > 0 {
		sinceLog = st.Step % o.LogEvery
	}
	type lossSum struct {
		name  string
		sum   LossSum
		steps int
	}
	sums := []lossSum{{"window", st.Window, sinceLog}, {"epoch_loss", st.EpochLoss, st.Batch}}
	// The epochs whose evaluation is done, which the best checkpoint is
	// one of.
	evaluated := st.Epoch
	if st.PendingEval != nil {
		if st.Epoch == 0 || st.Batch != 0 {
			return fmt.Errorf("it has an evaluation pending at batch %d of epoch %d, not at an epoch end", st.Batch, st.Epoch)
		}
		sums = append(sums, lossSum{"pending evaluation's epoch_loss", st.PendingEval.EpochLoss, spe})
		evaluated--
	}
	for _, l := range sums {
		if l.sum.Rows != l.steps*o.Batch || !(l.sum.Sum >= 0) || l.sum.Sum > roundingMargin*o.maxLoss()*float64(l.sum.Rows) {
			return fmt.Errorf("its %s loss sum %+v is not one of %d steps of %d rows (each loss within [0, %.4g])", l.name, l.sum, l.steps, o.Batch, o.maxLoss())
		}
	}
	if evaluated == 0 {
		if st.Best != nil {
			return fmt.Errorf("it has a best checkpoint before the first epoch's evaluation")
		}
		return nil
	}
	metric, err := ParseMetric(o.BestMetric, evals)
	if err != nil {
		return err
	}
	b := st.Best
	switch {
	case b == nil:
		return fmt.Errorf("it has no best checkpoint after %d evaluated epochs", evaluated)
	case b.Metric != metric.Name:
		return fmt.Errorf("its best checkpoint is by %q, the run's metric is %q", b.Metric, metric.Name)
	case b.Epoch < 1 || b.Epoch > evaluated || b.Step != b.Epoch*spe:
		return fmt.Errorf("its best checkpoint at epoch %d, step %d is not an evaluated epoch end of the run (%d so far)", b.Epoch, b.Step, evaluated)
	case b.Checkpoint != checkpointName(b.Step):
		return fmt.Errorf("its best checkpoint %q is not the one of step %d (%s)", b.Checkpoint, b.Step, checkpointName(b.Step))
	case math.IsNaN(b.Value) || math.IsInf(b.Value, 0):
		return fmt.Errorf("its best %s is %v", b.Metric, b.Value)
	}
	return nil
}

// Run trains from scratch, or from the run directory's last checkpoint when
// resume is set. A cancelled ctx saves a checkpoint and returns ctx.Err();
// resuming it gives the same checkpoints and records, bit for bit, as a run
// never stopped. Cancelled during an epoch-end evaluation, it stops that
// evaluation and saves the checkpoint with the evaluation pending
// (State.PendingEval), which the resume does first. (Cancelled while CLIP's
// own recall is computed, before the run directory is touched, it returns
// ctx.Err() at once and saves nothing.)
// The run directory is locked (LockRunDir) while Run works on it.
func (tr *Trainer) Run(ctx context.Context, resume bool) (Result, error) {
	if tr.Log == nil {
		tr.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := tr.Engine.Config()
	if err := tr.checkRecordedPaths(); err != nil {
		return Result{}, err
	}
	if err := tr.Data.checkTrainable(); err != nil {
		return Result{}, err
	}
	// A run another process trains, a run it cannot resume, and a new
	// run's directory or options that it would refuse, are refused before
	// CLIP's recall, which takes seconds on a large set, and before a
	// resume links the checkpoint a killed run left unlinked (the lock
	// taken below decides: this is only the early word).
	if resume {
		if holder, held := TrainingNow(tr.RunDir); held {
			return Result{}, &LockedError{Dir: tr.RunDir, Holder: holder}
		}
		if err := checkResumable(tr.RunDir); err != nil {
			return Result{}, err
		}
	} else {
		if err := CheckNewRun(tr.RunDir); err != nil {
			return Result{}, err
		}
		if err := tr.Options.Check(c, tr.Data, tr.Evals); err != nil {
			return Result{}, err
		}
	}
	if err := tr.clipRecall(ctx); err != nil {
		return Result{}, err
	}
	var st State
	var resident nn.ResidentEngine
	if resume {
		lock, err := LockRunDir(tr.RunDir)
		if err != nil {
			return Result{}, err
		}
		defer lock.Release()
		if err := tr.finishLastLink(); err != nil {
			return Result{}, err
		}
		if st, err = tr.restore(); err != nil {
			return Result{}, err
		}
		if err := tr.setObjective(st); err != nil {
			return Result{}, fmt.Errorf("--resume: %w", err)
		}
		if resident, err = tr.residency(&st); err != nil {
			return Result{}, err
		}
		// Only now that the resume is sure to go on.
		if err := tr.alignCheckpoints(st); err != nil {
			return Result{}, err
		}
	} else {
		if err := tr.checkPrecision(tr.Options); err != nil {
			return Result{}, err
		}
		spe, _, err := Steps(tr.Options.Epochs, tr.Data.Rows, tr.Options.Batch)
		if err != nil {
			return Result{}, err
		}
		st = State{
			Options:    tr.Options,
			Schedule:   NewOneCycle(tr.Options.MaxLR, tr.Options.Epochs, spe),
			Data:       DataInfo{Rows: tr.Data.Rows, InputDim: tr.Data.InputDim, OutputDim: tr.Data.OutputDim},
			LogitScale: newLogitScale(tr.Options),
		}
		if err := tr.setObjective(st); err != nil {
			return Result{}, err
		}
		// (A directory used for something else was refused before the
		// lock file is made in it, by CheckNewRun, and is again under the
		// lock.)
		lock, err := LockRunDir(tr.RunDir)
		if err != nil {
			return Result{}, err
		}
		// Refused before its run.json is written, the run leaves no lock
		// file or directory it made (two runs started at once, one inside
		// the other, each refuse the other under its lock).
		started := false
		defer func() {
			if started {
				lock.Release()
			} else {
				lock.Abandon()
			}
		}()
		if err := checkNewRunDir(tr.RunDir); err != nil {
			return Result{}, err
		}
		// What a run killed before its first checkpoint was writing; a
		// file another process is writing into the directory now (an
		// average or a projection, checked before this run began) would
		// land beside the run's.
		if live := tr.sweepRunDir(); len(live) > 0 {
			return Result{}, fmt.Errorf("run directory %s: another process may be writing %s into it now: train into a new or empty directory (or remove it, once none is)", tr.RunDir, strings.Join(live, ", "))
		}
		if tr.CheckPlace != nil {
			if err := tr.CheckPlace(); err != nil {
				return Result{}, err
			}
		}
		if tr.inputs, err = InputsOf(tr.Data, tr.Evals); err != nil {
			return Result{}, err
		}
		var params []float32
		if tr.Init != nil {
			if n := c.NumParams(); len(tr.Init.Params) != n {
				return Result{}, fmt.Errorf("init model %s has %d parameters, the model %v %d", tr.Init.Path, len(tr.Init.Params), c, n)
			}
			params = tr.Init.Params
			tr.initRef = &InitRef{Path: atomicfile.RealOrAbs(tr.Init.Path), SHA256: ParamsSHA256(params)}
		} else {
			params = nn.InitParameters[float32](c, tr.Options.Seed)
		}
		if err := tr.Engine.SetParameters(params); err != nil {
			return Result{}, err
		}
		if tr.Options.EMA != 0 {
			tr.ema = slices.Clone(params)
		}
		// Before the run directory is written, so that run.json records
		// whether the run trains on float16 values.
		if resident, err = tr.residency(&st); err != nil {
			return Result{}, err
		}
		if err := startRunDir(tr.RunDir, tr.runInfo(st)); err != nil {
			return Result{}, err
		}
		started = true
	}
	// The run, new or resumed, goes on: its checkpoints are its own.
	if err := claimCheckpointsDir(tr.RunDir); err != nil {
		return Result{}, err
	}
	metric, err := bestMetric(st.Options, tr.Evals)
	if err != nil {
		return Result{}, err
	}
	metrics, err := openMetrics(ctx, filepath.Join(tr.RunDir, MetricsFile), st, tr.Log)
	if err != nil {
		return Result{}, err
	}
	defer metrics.Close()
	tr.metrics = metrics
	finished := st.Step == st.Schedule.TotalSteps && st.PendingEval == nil
	res, err := tr.loop(ctx, st, metric, resident)
	res.AlreadyFinished = finished
	return res, err
}

// bestMetric is the metric that picks the run's best checkpoint. Picked
// from the moving average of the weights, it must be an evaluation's: the
// training loss is the raw weights'.
func bestMetric(o Options, evals []*retrieval.Set) (Metric, error) {
	metric, err := ParseMetric(o.BestMetric, evals)
	if err == nil && o.BestFromMode() == BestFromEMA && metric.Name == "loss" {
		err = fmt.Errorf("best from %q picks by an evaluation of the averaged weights: give evaluation sets and a recall metric, not %q", BestFromEMA, metric.Name)
	}
	return metric, err
}

// float64Engine is the trainer's engine when it computes in float64 (a
// PrecisionFP64 run), else nil.
func (tr *Trainer) float64Engine() *nn.CPUEngine[float64] {
	e, _ := tr.Engine.(*nn.CPUEngine[float64])
	return e
}

// checkPrecision refuses an engine that does not compute in o's precision.
func (tr *Trainer) checkPrecision(o Options) error {
	if want, is := o.PrecisionMode(), EnginePrecision(tr.Engine); want != is {
		return fmt.Errorf("the run trains in %s, but the engine opened for it computes in %s (fp64 is the CPU's float64 engine, bf16 the GPU's mixed precision, fp32 either): if the run's files say different things, they were edited", want, is)
	}
	return nil
}

// EnginePrecision is the arithmetic of e as an Options.Precision value:
// fp64 for the float64 CPU engine, bf16 for an engine whose BF16 method
// says so (the GPU engine in bf16 mixed precision), else fp32.
func EnginePrecision(e nn.Engine) string {
	if _, ok := e.(*nn.CPUEngine[float64]); ok {
		return PrecisionFP64
	}
	if b, ok := e.(interface{ BF16() bool }); ok && b.BF16() {
		return PrecisionBF16
	}
	return PrecisionFP32
}

// loop trains from st to the end of the last epoch. Batches come from
// resident when it is not nil (the data is on the engine's device), else
// from the host through the prefetcher.
func (tr *Trainer) loop(ctx context.Context, st State, metric Metric, resident nn.ResidentEngine) (Result, error) {
	o := st.Options
	order, err := NewOrder(tr.Data.Rows, o.Batch, o.Seed)
	if err != nil {
		return Result{}, err
	}
	if err := tr.startEMA(o.EMA); err != nil {
		return Result{}, err
	}
	spe := order.StepsPerEpoch()
	attrs := []any{"model", tr.Engine.Config().String(), "rows", tr.Data.Rows, "batch", o.Batch,
		"epochs", o.Epochs, "steps", st.Schedule.TotalSteps, "from_step", st.Step, "resident", resident != nil,
		"pipelined", pipelined(resident, o) != nil}
	// An engine that describes itself (the GPU engine: its device and which
	// compiled kernels it loaded) says so in the same line.
	if d, ok := tr.Engine.(fmt.Stringer); ok {
		attrs = append(attrs, "engine", d.String())
	}
	tr.Log.Info("training", attrs...)
	var batches *prefetcher
	if resident == nil {
		read := tr.Data.ReadRows
		if st.Float16 && !tr.Data.Float16() {
			read = tr.Data.readRowsFloat16
		}
		if tr.wrapRead != nil {
			read = tr.wrapRead(read)
		}
		batches = prefetch(ctx, tr.Data, read, order, st.Epoch, st.Batch, o.Epochs)
		defer batches.stop()
	}
	bar := newProgress(tr.Progress, st.Schedule.TotalSteps, st.Step)
	defer bar.stop()
	// Every log line, the engine's and evaluation's included, clears the
	// bar first rather than be written over it.
	defer func(log *slog.Logger) { tr.Log = log }(tr.Log)
	tr.Log = slog.New(clearingHandler{tr.Log.Handler(), bar})
	var res Result
	// The time of the steps since the last metrics record, and their count,
	// for throughput: the steps this process timed (a window resumed from a
	// checkpoint holds rows of steps before it, which it did not).
	var stepTime time.Duration
	var timedSteps int
	// record adds step's loss to the running sums, and writes the metrics
	// record and log line of a logging step; st is the state after step.
	record := func(step int, hp nn.AdamWStep, loss float64) error {
		st.Window.add(loss, o.Batch)
		st.EpochLoss.add(loss, o.Batch)
		bar.set(step, loss)
		if o.LogEvery > 0 && step%o.LogEvery == 0 {
			// The window's rate, for its record and its log line alike;
			// none where no time was measured (an infinite one is no
			// JSON, and stopped the run).
			var rate float64
			if stepTime > 0 && timedSteps > 0 {
				rate = float64(timedSteps*o.Batch) / stepTime.Seconds()
			}
			if err := tr.writeMetrics(st, trainRecord(st, hp, rate)); err != nil {
				return err
			}
			if bar.bar == nil {
				kv := []any{"step", step, "of", st.Schedule.TotalSteps, "epoch", st.Epoch + 1, "loss", logNum(st.Window.mean()), "lr", logNum(hp.LR)}
				if rate > 0 {
					// (The time left at this window's pace, for the steps
					// alone: evaluations and checkpoints come on top; at
					// most a billion seconds, which a Duration holds.)
					left := stepTime.Seconds() / float64(timedSteps) * float64(st.Schedule.TotalSteps-step)
					d := time.Duration(min(left, 1e9) * float64(time.Second))
					if d >= time.Minute {
						d = d.Round(time.Second)
					} else {
						d = d.Round(100 * time.Millisecond)
					}
					kv = append(kv, "samples_per_s", int64(math.Round(rate)), "time_left", d.String())
				}
				tr.Log.Info("step", kv...)
			}
			st.Window, stepTime, timedSteps = LossSum{}, 0, 0
		}
		return nil
	}
	// A pipelined engine (see pipelined) returns each step's loss at the
	// next step; pending is the step whose loss is still on the device, and
	// flush waits for it: before a checkpoint, an evaluation or the end, so
	// that the state saved is that of every step reported.
	pipe := pipelined(resident, o)
	var pending *pendingStep
	flush := func() error {
		if pending == nil {
			return nil
		}
		p := *pending
		pending = nil
		loss, done, err := pipe.FlushLoss()
		if err == nil && !done {
			err = errors.New("the engine had no step pending")
		}
		if err != nil {
			return tr.stepError(p, err)
		}
		return record(p.step, p.hp, loss)
	}
	// interrupted saves the checkpoint a resume continues from, and returns
	// ctx's error.
	interrupted := func() error {
		bar.stop()
		if err := flush(); err != nil {
			return err
		}
		if err := tr.save(st, nil, nil, nil); err != nil {
			return err
		}
		tr.Log.Info("interrupted; saved a checkpoint to resume from", "step", st.Step, "evaluation_pending", st.PendingEval != nil, "run", tr.RunDir)
		return ctx.Err()
	}
	// endEpoch evaluates the epoch that ended at st.Step (st.PendingEval),
	// writes its record, and saves its checkpoint, the best when it
	// improves on st.Best. An interrupt stops the evaluation, and the
	// checkpoint is saved with the evaluation still pending.
	endEpoch := func() error {
		epochLoss := st.PendingEval.EpochLoss.mean()
		if len(tr.Evals) > 0 {
			bar.evaluating()
		}
		reports, err := tr.evaluate(ctx)
		if err != nil {
			if errors.Is(err, ctx.Err()) {
				return interrupted()
			}
			return tr.evalError(pendingStep{step: st.Step, epoch: st.Epoch - 1, batch: spe - 1}, err)
		}
		res.Reports = reports
		value, err := metric.Value(epochLoss, reports)
		if err != nil {
			return err
		}
		rec := evalRecord(st, epochLoss, reports, metric.Name, value)
		var emaReports []retrieval.Report
		if tr.ema != nil && len(tr.Evals) > 0 {
			if emaReports, err = tr.evaluateEMA(ctx); err != nil {
				if errors.Is(err, ctx.Err()) {
					return interrupted()
				}
				return tr.evalError(pendingStep{step: st.Step, epoch: st.Epoch - 1, batch: spe - 1}, err)
			}
			emaValue, err := metric.Value(epochLoss, emaReports)
			if err != nil {
				return err
			}
			emaRec := map[string]any{"sets": emaReports}
			if metric.Name != "loss" {
				// (The training loss is the raw weights': as the
				// average's value it read as a number of the average.)
				emaRec["value"] = emaValue
			}
			rec["ema"] = emaRec
			res.EMAReports = emaReports
			if o.BestFromMode() == BestFromEMA {
				value = emaValue
			}
		}
		if err := tr.writeMetrics(st, rec); err != nil {
			return err
		}
		st.PendingEval = nil
		var improved *Best
		if st.Best == nil || metric.Better(value, st.Best.Value) {
			improved = &Best{Metric: metric.Name, Value: value, Step: st.Step, Epoch: st.Epoch}
		}
		if err := tr.save(st, improved, reports, emaReports); err != nil {
			return err
		}
		if improved != nil {
			st.Best = improved // save named its checkpoint
		}
		kv := []any{"epoch", st.Epoch, "step", st.Step, "loss", logNum(epochLoss)}
		if metric.Name != "loss" {
			kv = append(kv, metric.Name, logNum(value))
		}
		// The recalls of the model the metric judged: under --best-from
		// ema, the moving average's, said so.
		judged := reports
		if o.BestFromMode() == BestFromEMA && emaReports != nil {
			judged = emaReports
			kv = append(kv, "of", "ema")
		}
		tr.Log.Info("epoch done", append(kv, summarize(judged)...)...)
		return nil
	}
	if st.PendingEval != nil {
		if err := endEpoch(); err != nil {
			return res, err
		}
	}
	for st.Epoch < o.Epochs {
		for st.Batch < spe {
			if ctx.Err() != nil {
				return res, interrupted()
			}
			var loss float64
			var start time.Time
			if err := tr.setObjective(st); err != nil {
				return res, err
			}
			if pipe != nil {
				this := pendingStep{step: st.Step + 1, epoch: st.Epoch, batch: st.Batch}
				this.hp = st.Options.AdamW.Step(st.Schedule, this.step)
				start = time.Now()
				prev, done, err := pipe.StepRows(order.BatchRows(st.Epoch, st.Batch), this.hp)
				took := time.Since(start)
				if done && pending == nil {
					return res, fmt.Errorf("step %d: the engine returned the loss of a step the run did not enqueue", this.step)
				}
				if done {
					p := *pending
					pending = nil
					if err != nil {
						return res, tr.stepError(p, err)
					}
					if err := record(p.step, p.hp, prev); err != nil {
						return res, err
					}
				}
				// (Counted after the record of the step before, which may
				// start the count again: counted before, a record of every
				// step left an epoch's last step no time, and its rate was
				// infinite.)
				stepTime += took
				timedSteps++
				if err != nil {
					return res, tr.stepError(this, err)
				}
				pending = &this
				st.Step++
				if err := tr.updateEMA(o.EMA); err != nil {
					return res, err
				}
				st.Batch++
				if o.checkpointsMidEpoch(st.Step, st.Batch, spe) {
					if err := flush(); err != nil {
						return res, err
					}
					if err := tr.save(st, nil, nil, nil); err != nil {
						return res, err
					}
				}
				continue
			}
			if resident != nil {
				start = time.Now()
				loss, err = resident.ForwardBackwardRows(order.BatchRows(st.Epoch, st.Batch))
			} else {
				b, rerr := batches.next()
				if rerr != nil && ctx.Err() != nil {
					// Interrupted while waiting for the batch: the
					// prefetcher may have stopped without it. The check at
					// the top of the loop saves the checkpoint.
					continue
				}
				if rerr != nil {
					return res, tr.stepError(pendingStep{step: st.Step + 1, epoch: st.Epoch, batch: st.Batch}, rerr)
				}
				start = time.Now()
				loss, err = tr.Engine.ForwardBackward(b.x, b.t, o.Batch)
				batches.recycle(b)
			}
			if err == nil && (math.IsNaN(loss) || math.IsInf(loss, 0)) {
				err = fmt.Errorf("%w: %v", ErrNonFinite, loss)
			}
			if err != nil {
				return res, tr.stepError(pendingStep{step: st.Step + 1, epoch: st.Epoch, batch: st.Batch}, err)
			}
			st.Step++
			hp := st.Options.AdamW.Step(st.Schedule, st.Step)
			if err := tr.Engine.Step(hp); err != nil {
				return res, tr.stepError(pendingStep{step: st.Step, epoch: st.Epoch, batch: st.Batch}, err)
			}
			if st.LogitScale != nil {
				st.LogitScale.Step(tr.Engine.LogitScaleGrad(), hp)
			}
			if err := tr.updateEMA(o.EMA); err != nil {
				return res, err
			}
			st.Batch++
			stepTime += time.Since(start)
			timedSteps++
			if err := record(st.Step, hp, loss); err != nil {
				return res, err
			}
			if o.checkpointsMidEpoch(st.Step, st.Batch, spe) {
				if err := tr.save(st, nil, nil, nil); err != nil {
					return res, err
				}
			}
		}
		if err := flush(); err != nil {
			return res, err
		}
		st.Epoch++
		st.Batch = 0
		st.PendingEval = &PendingEval{EpochLoss: st.EpochLoss}
		st.EpochLoss = LossSum{}
		if err := endEpoch(); err != nil {
			return res, err
		}
	}
	res.State = st
	return res, nil
}

// evalError is the error of the evaluation of the epoch whose last step
// is last: where the model's outputs overflowed on a set, and overflow on
// the training data's own features too, the training diverged (the
// epoch's last update, which no next step's loss showed, made weights
// NaN, or of finite but absurd size), which the evaluation alone would
// blame on the features or a damaged model; where they do not, the set's
// features are of another scale, as the evaluation's error says.
func (tr *Trainer) evalError(last pendingStep, err error) error {
	var overflow *retrieval.OverflowError
	if !errors.As(err, &overflow) || !tr.overflowsOnTrainingData() {
		return err
	}
	return tr.stepError(last,
		fmt.Errorf("the epoch's last update %w: the model's output for image %d of evaluation set %s is %v", ErrDiverged, overflow.Image, overflow.Set, overflow.Value))
}

// overflowsOnTrainingData reports whether the model's outputs for the
// first rows of the training data are NaN or infinite (false where they
// cannot be read or projected: the evaluation's error stands).
func (tr *Trainer) overflowsOnTrainingData() bool {
	n := min(8, tr.Data.Rows)
	rows := make([]int32, n)
	for i := range rows {
		rows[i] = int32(i)
	}
	x, t := make([]float32, n*tr.Data.InputDim), make([]float32, n*tr.Data.OutputDim)
	y := make([]float32, n*tr.Engine.Config().OutputDim)
	if tr.Data.ReadRows(rows, x, t) != nil || tr.Engine.Project(y, x, n) != nil {
		return false
	}
	return slices.ContainsFunc(y, func(v float32) bool { return math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) })
}

// pendingStep is a step of the run: its number (1-based), its place in the
// run (epoch 0-based, batch) and its AdamW hyperparameters.
type pendingStep struct {
	step, epoch, batch int
	hp                 nn.AdamWStep
}

// StepError is the error that stopped a run at a step, with what is left
// of the run and what to do (Advice, for dinoclip train's flags: a command
// running the trainer otherwise, demo say, has its own to give).
type StepError struct {
	Step, Epoch, Batch int // the step, its epoch and its batch in the epoch, all 1-based as a reader counts
	Err                error
	Advice             string
}

func (e *StepError) Error() string {
	return fmt.Sprintf("step %d (epoch %d, batch %d): %v; %s", e.Step, e.Epoch, e.Batch, e.Err, e.Advice)
}

func (e *StepError) Unwrap() error { return e.Err }

// stepError is the error that stops the run at step p.
func (tr *Trainer) stepError(p pendingStep, err error) error {
	return &StepError{Step: p.step, Epoch: p.epoch + 1, Batch: p.batch + 1, Err: err, Advice: tr.stopAdvice(p.step, err)}
}

// pipelined is the engine as an nn.PipelinedEngine when the run's steps go
// through one: batches from resident data, on an engine that runs a whole
// step without waiting for the device, under the MSE loss (InfoNCE's logit
// scale is trained on the host from each step's gradient, so its steps
// stay synchronous). Otherwise nil.
func pipelined(resident nn.ResidentEngine, o Options) nn.PipelinedEngine {
	p, ok := resident.(nn.PipelinedEngine)
	if !ok || o.objective(nil).Contrastive() {
		return nil
	}
	return p
}

// heartbeatEvery is how often heartbeat logs (a variable: tests).
var heartbeatEvery = 30 * time.Second

// heartbeat logs what, and the time since the call, every heartbeatEvery
// until stop is called: for work without steps to show (CLIP's own recall,
// an evaluation), minutes on a large evaluation set, which a log read
// through a pipe showed as a hang.
func (tr *Trainer) heartbeat(what string) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(heartbeatEvery)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				tr.Log.Info(what, "elapsed", time.Since(start).Round(time.Second).String())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// clipRecall computes CLIP's own recall on every evaluation set (once per
// set, before anything is written: seconds on a large set), and returns
// ctx's error at once when it is cancelled meanwhile; the computation then
// runs on, unobserved, to its end (or the process's).
func (tr *Trainer) clipRecall(ctx context.Context) error {
	if len(tr.Evals) == 0 {
		return nil
	}
	defer tr.heartbeat("computing CLIP's own recall on the evaluation sets")()
	done := make(chan error, 1)
	go func() {
		for _, s := range tr.Evals {
			if _, err := s.CLIP(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // (both were ready)
			return err
		default:
			return ctx.Err()
		}
	}
}

// writeMetrics appends rec to the run's metrics log; a failed write (a
// full disk) stops the run, saying what is left of it and how to go on,
// as a failed save does.
func (tr *Trainer) writeMetrics(st State, rec map[string]any) error {
	if err := tr.metrics.write(rec); err != nil {
		return fmt.Errorf("%w; %s", err, tr.stopAdvice(st.Step, err))
	}
	return nil
}

// stopAdvice says what is left of a run that a failed step stopped, and
// what to do next: a diverged run (ErrNonFinite, ErrDiverged) would
// diverge again if resumed, bit for bit, so it is started anew with other
// settings; another failure (unreadable data, a device error) can be
// resumed once fixed.
// A loss that is not finite at step 1 came before any update: no setting
// of the optimizer is to blame, but the data or the starting weights.
func (tr *Trainer) stopAdvice(step int, err error) string {
	if _, serr := os.Stat(tr.RunDir); errors.Is(serr, os.ErrNotExist) {
		// (Moved while the run trained: what it saved went with it, and
		// no last link here says it holds no checkpoint.)
		return fmt.Sprintf("the run directory %s is gone (moved or removed while the run trained?); if it was moved, its checkpoints went with it: continue the run where it is now with dinoclip train --resume --out NEW_PLACE", tr.RunDir)
	}
	last := filepath.Join(tr.RunDir, checkpoint.LastLink)
	target, lerr := os.Readlink(last)
	if errors.Is(err, ErrNonFinite) && step == 1 {
		const cause = "the loss was not finite at the first step, before any update: the training data (or the --init model) holds values too large for the model's arithmetic"
		if lerr != nil {
			return fmt.Sprintf("%s; check them, then start the run again (the same --out will do: %s holds no checkpoint)", cause, tr.RunDir)
		}
		return fmt.Sprintf("%s; check them, then train into another --out (%s holds this run's checkpoint of step 0)", cause, tr.RunDir)
	}
	if errors.Is(err, ErrNonFinite) || errors.Is(err, ErrDiverged) {
		if lerr != nil {
			return fmt.Sprintf("the run diverged before its first checkpoint; start it again with other settings (a lower --lr or --weight-decay, say; the same --out will do: %s holds no checkpoint)", tr.RunDir)
		}
		return fmt.Sprintf("the run diverged; its last good checkpoint is %s (%s), which eval and project can use; a resume would repeat the same steps, so train again with other settings (a lower --lr or --weight-decay, say) into another --out",
			last, target)
	}
	var bad *npy.NonFiniteError
	if errors.As(err, &bad) && lerr == nil {
		return fmt.Sprintf("the run stopped; its last checkpoint is %s (%s); a run on corrected data is another run (train it into another --out), or continue this one on the corrected file with: dinoclip train --resume --out %s --accept-changed-inputs",
			last, target, printable.ShellArg(tr.RunDir))
	}
	if lerr != nil {
		return fmt.Sprintf("the run stopped before its first checkpoint; start it again once the problem is fixed (the same --out will do: %s holds no checkpoint)", tr.RunDir)
	}
	return fmt.Sprintf("the run stopped; its last checkpoint is %s (%s); once the problem is fixed, continue it with: dinoclip train --resume --out %s",
		last, target, printable.ShellArg(tr.RunDir))
}

// evaluate projects and ranks every evaluation set, ranking with the
// engine's own top-k when it has one (see evalTopK). A cancelled ctx stops
// it at the next batch of images to project or of queries to rank, with
// ctx's error: on a large set it would otherwise take minutes.
func (tr *Trainer) evaluate(ctx context.Context) ([]retrieval.Report, error) {
	defer tr.heartbeat("evaluating")()
	reports := make([]retrieval.Report, 0, len(tr.Evals))
	topK := tr.evalTopK(ctx)
	project := func(dst, x []float32, n int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return tr.Engine.Project(dst, x, n)
	}
	for _, s := range tr.Evals {
		r, err := s.EvaluateWith(project, topK)
		if err != nil {
			return nil, err
		}
		reports = append(reports, r)
	}
	return reports, nil
}

// startEMA hands the moving average to the engine when it keeps one
// itself (nn.EMAEngine): at the start of a run and of a resumed one, from
// the average of the start (the initial weights or the checkpoint's).
func (tr *Trainer) startEMA(decay float64) error {
	tr.emaEngine = nil
	e, ok := tr.Engine.(nn.EMAEngine)
	if tr.ema == nil || !ok {
		return nil
	}
	if err := e.StartEMA(tr.ema, decay); err != nil {
		return err
	}
	tr.emaEngine = e
	return nil
}

// updateEMA blends the engine's weights into the moving average after an
// optimizer step: in the engine when it keeps the average, else on the
// host from a copy of the weights (nn.BlendEMA, the same bits).
func (tr *Trainer) updateEMA(decay float64) error {
	switch {
	case tr.ema == nil:
		return nil
	case tr.emaEngine != nil:
		return tr.emaEngine.UpdateEMA()
	}
	if tr.weights == nil {
		tr.weights = make([]float32, len(tr.ema))
	}
	if err := tr.Engine.Parameters(tr.weights); err != nil {
		return err
	}
	nn.BlendEMA(tr.ema, tr.weights, decay)
	return nil
}

// syncEMA brings the host copy of the moving average up to date when the
// engine keeps it: before an evaluation of it and a checkpoint.
func (tr *Trainer) syncEMA() error {
	if tr.emaEngine == nil {
		return nil
	}
	if err := tr.emaEngine.EMA(tr.ema); err != nil {
		return fmt.Errorf("copying the moving average of the weights out of the engine: %w", err)
	}
	return nil
}

// evaluateEMA evaluates the moving average of the weights (see evaluate):
// loaded into the engine for the evaluation, the training weights put back
// after it unchanged (a float64 engine's at full precision), also when it
// is interrupted.
func (tr *Trainer) evaluateEMA(ctx context.Context) ([]retrieval.Report, error) {
	if err := tr.syncEMA(); err != nil {
		return nil, err
	}
	var raw32 []float32
	var raw64 []float64
	if e := tr.float64Engine(); e != nil {
		raw64 = slices.Clone(e.Model.Params)
	} else {
		raw32 = make([]float32, len(tr.ema))
		if err := tr.Engine.Parameters(raw32); err != nil {
			return nil, err
		}
	}
	if err := tr.Engine.SetParameters(tr.ema); err != nil {
		return nil, err
	}
	reports, err := tr.evaluate(ctx)
	if raw64 != nil {
		copy(tr.float64Engine().Model.Params, raw64)
	} else if rerr := tr.Engine.SetParameters(raw32); rerr != nil {
		return nil, fmt.Errorf("putting the training weights back after evaluating their moving average: %w", rerr)
	}
	return reports, err
}

// evalTopK is the ranking of an evaluation under ctx: the engine's own
// top-k (the GPU's fused search, see retrieval.TopKOf) when it has one,
// else retrieval.TopKContext, which stops between its tiles of keys once
// ctx is cancelled. When the engine's fails (short of memory
// beside resident training data, say), that ranking is done on the CPU
// instead and the log says why: an evaluation is not worth stopping a run
// for when the CPU can do it.
func (tr *Trainer) evalTopK(ctx context.Context) retrieval.TopKFunc {
	cpu := func(q, keys []float32, nq, nk, dim, k int) ([]int32, []float32, error) {
		return retrieval.TopKContext(ctx, q, keys, nq, nk, dim, k)
	}
	own := retrieval.TopKOf(tr.Engine)
	if own == nil {
		return cpu
	}
	return func(q, keys []float32, nq, nk, dim, k int) ([]int32, []float32, error) {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		idx, scores, err := own(q, keys, nq, nk, dim, k)
		if err == nil {
			return idx, scores, nil
		}
		tr.Log.Warn("the engine's top-k failed; ranking on the CPU", "err", err.Error())
		return cpu(q, keys, nq, nk, dim, k)
	}
}

func summarize(reports []retrieval.Report) []any {
	var kv []any
	for _, r := range reports {
		kv = append(kv, r.Name+"_t2i_pct_clip", logNum(r.PercentOfCLIP.TextToImagePercent),
			r.Name+"_i2t_pct_clip", logNum(r.PercentOfCLIP.ImageToTextPercent))
	}
	return kv
}

// logNum is a number in a log line, to 4 significant digits: 82.24, not
// 82.24000000000001.
type logNum float64

func (x logNum) LogValue() slog.Value {
	return slog.StringValue(strconv.FormatFloat(float64(x), 'g', 4, 64))
}

// clearingHandler clears the progress bar before each log line.
type clearingHandler struct {
	slog.Handler
	bar *progress
}

func (h clearingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.bar.clear()
	return h.Handler.Handle(ctx, r)
}

func (h clearingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return clearingHandler{h.Handler.WithAttrs(as), h.bar}
}

func (h clearingHandler) WithGroup(name string) slog.Handler {
	return clearingHandler{h.Handler.WithGroup(name), h.bar}
}

// trainRecord is the metrics record of a logging step; rate is the rows a
// second of the steps this process timed (see the loop's stepTime), 0 where
// none were.
func trainRecord(st State, hp nn.AdamWStep, rate float64) map[string]any {
	rec := map[string]any{
		"type": "train", "step": st.Step, "epoch": st.Epoch + 1, "loss": st.Window.mean(),
		"lr": hp.LR, "beta1": hp.Beta1,
		"time": time.Now().UTC().Format(time.RFC3339),
	}
	if rate > 0 {
		rec["samples_per_s"] = rate
	}
	if st.LogitScale != nil {
		rec["logit_scale"] = st.LogitScale.Value
	}
	return rec
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
