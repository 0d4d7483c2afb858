package nn

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// RelDiff is the relative difference, and +Inf (which fails any bound)
// where it would compare nothing or NaN.
func TestRelDiff(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, c := range []struct {
		name string
		a, b []float64
		want float64
	}{
		{"equal", []float64{3, 4}, []float64{3, 4}, 0},
		{"relative", []float64{3, 4.5}, []float64{3, 4}, 0.1},
		{"b zero: absolute", []float64{3, 4}, []float64{0, 0}, 5},
		{"NaN in a", []float64{nan, 4}, []float64{3, 4}, inf},
		{"NaN in b", []float64{3, 4}, []float64{3, nan}, inf},
		{"infinities both sides", []float64{inf, 4}, []float64{inf, 4}, inf},
		{"infinity in b only", []float64{3, 4}, []float64{inf, 4}, inf},
		{"lengths differ", []float64{3}, []float64{3, 4}, inf},
		{"empty", nil, nil, inf},
	} {
		if got := RelDiff(c.a, c.b); !(math.Abs(got-c.want) <= 1e-12 || got == c.want) {
			t.Errorf("%s: RelDiff = %v, want %v", c.name, got, c.want)
		}
	}
}

// checkTestEngine is the float32 CPU engine with the optional interfaces
// a GPU engine has (resident rows, pipelined steps, the moving average),
// each done the plain way, and with one thing broken where broken names
// it, so that the check's every comparison is seen to catch its mistake.
type checkTestEngine struct {
	*CPUEngine[float32]
	broken string

	x, t    []float32 // the resident rows
	pending bool
	loss    float64
	ema     []float32
	decay   float64

	graphRows []int32    // the rows a stale graph replays
	graphStep *AdamWStep // the scalars a stale graph replays
}

func (e *checkTestEngine) Project(dst, x []float32, n int) error {
	err := e.CPUEngine.Project(dst, x, n)
	if e.broken == "output" {
		dst[len(dst)/2] += 1
	}
	return err
}

func (e *checkTestEngine) ForwardBackward(x, t []float32, n int) (float64, error) {
	loss, err := e.CPUEngine.ForwardBackward(x, t, n)
	if e.broken == "loss" {
		loss *= 1.1
	}
	return loss, err
}

func (e *checkTestEngine) Loss(x, t []float32, n int) (float64, error) {
	loss, err := e.CPUEngine.Loss(x, t, n)
	if e.broken == "loss without gradients" {
		loss *= 1.1
	}
	return loss, err
}

func (e *checkTestEngine) Gradients(dst []float32) error {
	err := e.CPUEngine.Gradients(dst)
	if e.broken == "gradient" {
		// The last tensor's gradient (the last LayerNorm's bias).
		last := e.Config().Layout().Tensors
		clear(View(dst, last[len(last)-1]))
	}
	return err
}

func (e *checkTestEngine) LogitScaleGrad() float64 {
	if e.broken == "logit scale" {
		return 1.5 * e.CPUEngine.LogitScaleGrad()
	}
	return e.CPUEngine.LogitScaleGrad()
}

func (e *checkTestEngine) Step(s AdamWStep) error {
	switch e.broken {
	case "step":
		s.Beta2 = 0.99 // the second moment's bias correction
	case "step without the gradient":
		clear(e.CPUEngine.Model.Grads)
	case "second moment without the gradient":
		v := append([]float32(nil), e.CPUEngine.V...)
		if err := e.CPUEngine.Step(s); err != nil {
			return err
		}
		for i := range v {
			e.CPUEngine.V[i] = float32(s.Beta2) * v[i]
		}
		return nil
	}
	return e.CPUEngine.Step(s)
}

func (e *checkTestEngine) Moments(m, v []float32) error {
	err := e.CPUEngine.Moments(m, v)
	if e.broken == "moments" {
		v[0] *= 100
	}
	return err
}

func (e *checkTestEngine) StartEMA(init []float32, decay float64) error {
	e.ema, e.decay = append([]float32(nil), init...), decay
	return nil
}

func (e *checkTestEngine) UpdateEMA() error {
	w := make([]float32, len(e.ema))
	if err := e.Parameters(w); err != nil {
		return err
	}
	if e.broken == "moving average" {
		w, e.ema = e.ema, w // the decay the wrong way round
	}
	BlendEMA(e.ema, w, e.decay)
	return nil
}

func (e *checkTestEngine) EMA(dst []float32) error { copy(dst, e.ema); return nil }

func (e *checkTestEngine) LoadResident(rows, batch int, read Float16Reader) error {
	if e.broken == "no room for resident rows" {
		return fmt.Errorf("a test's full GPU: %w", ErrNotResident)
	}
	c := e.Config()
	x, t := make([]uint16, rows*c.InputDim), make([]uint16, rows*c.OutputDim)
	if err := read(0, rows, x, t); err != nil {
		return err
	}
	e.x, e.t = float16Values(x), float16Values(t)
	return nil
}

func (e *checkTestEngine) ForwardBackwardRows(rows []int32) (float64, error) {
	c := e.Config()
	xRows := rows
	if e.broken == "resident rows" {
		// Each input with the next row's target (the pairs in another
		// order would be no mistake: the losses sum over the batch).
		xRows = append([]int32{rows[len(rows)-1]}, rows[:len(rows)-1]...)
	}
	loss, err := e.CPUEngine.ForwardBackward(gatherRows(e.x, xRows, c.InputDim), gatherRows(e.t, rows, c.OutputDim), len(rows))
	if e.broken == "resident gradient in its last bit" {
		g := e.CPUEngine.Model.Grads
		g[7] = math.Nextafter32(g[7], float32(math.Inf(1)))
	}
	return loss, err
}

func (e *checkTestEngine) StepRows(rows []int32, s AdamWStep) (float64, bool, error) {
	prev, done := e.loss, e.pending
	switch {
	case e.broken == "stale graph" && e.graphRows == nil:
		e.graphRows = rows
	case e.broken == "stale graph":
		rows = e.graphRows // a replay of the first step's rows
	case e.broken == "pipelined divergence" && done:
		return 0, false, fmt.Errorf("a test's overflow: %w", ErrNonFinite)
	case e.broken == "stale scalars" && e.graphStep == nil:
		e.graphStep = &s
	case e.broken == "stale scalars":
		s = *e.graphStep // a replay of the first step's learning rate and betas
		s.Step++
	}
	loss, err := e.ForwardBackwardRows(rows)
	if err != nil {
		return 0, false, err
	}
	if e.broken == "pipelined step" {
		s.LR *= 1.5
	}
	if e.broken == "pipelined loss in its last bit" {
		loss = math.Nextafter(loss, math.Inf(1))
	}
	e.loss, e.pending = loss, true
	if err := e.Step(s); err != nil {
		return 0, false, err
	}
	if e.broken == "pipelined step in its last bit" {
		p := e.CPUEngine.Model.Params
		p[0] = math.Nextafter32(p[0], float32(math.Inf(1)))
	}
	return prev, done, nil
}

func (e *checkTestEngine) FlushLoss() (float64, bool, error) {
	done := e.pending
	e.pending = false
	if e.broken == "pipelined state in its last bit" {
		e.CPUEngine.V[0] = math.Nextafter32(e.CPUEngine.V[0], float32(math.Inf(1)))
	}
	if e.broken == "pipelined loss" {
		return e.loss, false, nil
	}
	return e.loss, done, nil
}

var (
	_ PipelinedEngine = (*checkTestEngine)(nil)
	_ EMAEngine       = (*checkTestEngine)(nil)
)

// The check passes the float32 engine with every optional interface, and
// fails it with each thing broken, naming what is wrong.
func TestCheckEngine(t *testing.T) {
	for _, c := range []struct{ broken, want string }{
		{"", ""},
		{"output", "the output"},
		{"loss", "the loss under the mse ("},
		{"loss without gradients", "the loss without gradients under the mse ("},
		{"gradient", "the gradient of layer_norm.bias under the mse:"},
		{"logit scale", "the logit scale's gradient under the mse+infonce (InfoNCE weight 0.25)"},
		{"step", "the change of input_proj.weight in an AdamW step:"},
		{"step without the gradient", "the change of input_proj.weight in an AdamW step:"},
		{"second moment without the gradient", "the change of AdamW's second moment of input_proj.weight in an AdamW step:"},
		{"moments", "the change of AdamW's second moment of input_proj.weight in an AdamW step:"},
		{"moving average", "the moving average's change of input_proj.weight in an update"},
		{"resident rows", "the loss of resident rows under the mse+infonce"},
		{"pipelined step", "the loss of pipelined step 2 (from pipelined step 3)"},
		{"stale graph", "the loss of pipelined step 2 (from pipelined step 3)"},
		{"pipelined divergence", "pipelined step 2 (or step 1's loss, which it returns): a test's overflow: loss is not finite"},
		{"stale scalars", "the loss of pipelined step 3 (from FlushLoss)"},
		{"pipelined loss", "FlushLoss returned no loss, where step 3's was due"},
		{"resident gradient in its last bit", "the gradient input_proj.weight[7] is "},
		{"pipelined loss in its last bit", "pipelined step 1's loss is "},
		// (Which comparison sees it first depends on the GEMMs' rounding:
		// a later loss, or the parameter itself.)
		{"pipelined step in its last bit", ": not bit for bit"},
		{"pipelined state in its last bit", "AdamW's second moment of input_proj.weight[0] is "},
		{"no room for resident rows", ""},
	} {
		cpu, err := NewCPUEngine[float32](CheckConfig)
		if err != nil {
			t.Fatal(err)
		}
		r, err := CheckEngine(&checkTestEngine{CPUEngine: cpu, broken: c.broken}, FP32Tolerances)
		switch {
		case err != nil:
			t.Errorf("%q: %v", c.broken, err)
		case c.want == "" && (r.Wrong != "" || !(r.Worst < 0.25) || r.WorstAt == ""):
			// (A right float32 engine measures 0.053: a check grown
			// stricter than that would refuse right GPU engines.)
			t.Errorf("%q: %+v", c.broken, r)
		case c.want == "" && (r.Unchecked == "") != (c.broken == ""):
			t.Errorf("%q: unchecked %q", c.broken, r.Unchecked)
		case c.want != "" && (!strings.Contains(r.Wrong, c.want) || !(r.Worst > 1)):
			t.Errorf("%q broken: %+v, want %q in Wrong", c.broken, r, c.want)
		}
	}
}

// An engine that fails is an error of the check, not a disagreement, and
// the error says what the check was doing.
func TestCheckEngineError(t *testing.T) {
	cpu, err := NewCPUEngine[float32](Config{InputDim: 8, HiddenDim: 8, OutputDim: 8, Blocks: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := CheckEngine(failingEngine{cpu}, FP32Tolerances)
	if !errors.Is(err, errFailingDevice) || err.Error() != "the output: a failing device" || r.Wrong != "" {
		t.Fatalf("an engine whose Project fails: %+v, %v", r, err)
	}
}

type failingEngine struct{ *CPUEngine[float32] }

var errFailingDevice = errors.New("a failing device")

func (failingEngine) Project(dst, x []float32, n int) error { return errFailingDevice }
