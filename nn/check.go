package nn

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/dinoclip/dinoclip/internal/leconv"
)

// The engine check: an engine against the float64 CPU engine on one small
// problem, with the tolerances of its precision. Package cuda runs it on
// the first GPU engine of each precision a process opens, because the GPU
// kernels are proven in an emulator and a GPU can still disagree; the
// engine suite (package nn/enginetest) runs it on every engine, so that it
// is known to pass where the engine is right.

// Tolerances are the bounds an engine is held to, each a norm-wise
// relative difference ||a-b||/||b|| from the float64 CPU engine: the
// output and the loss (Forward), each gradient tensor (Gradient), each
// loss and parameter tensor after training steps (Train).
type Tolerances struct{ Forward, Gradient, Train float64 }

// FP32Tolerances are the tolerances of a float32 engine. float32 rounds at
// 6e-8 and a GEMM of depth k accumulates about sqrt(k) roundings, so a few
// layers deep the forward pass is good to ~1e-6; the float32 CPU engine
// measures 2e-7 on the output. Gradients pass through twice as many layers
// and the LayerNorm backward's cancellations (g - mean(g) - xhat mean(g
// xhat)), and after 20 AdamW steps the normalised update lr m/sqrt(v) has
// turned relative gradient errors into absolute parameter errors; the CPU
// engine measures 5e-7 and 3e-7. The bounds leave a factor of 20 to 50 for
// engines that sum in another order (a GPU's tiled GEMMs and tree
// reductions) and stay far below what any real mistake produces (a wrong
// index or a missing term moves a tensor by O(1)).
var FP32Tolerances = Tolerances{Forward: 1e-5, Gradient: 2e-5, Train: 2e-5}

// BF16Tolerances are the tolerances of a bf16 mixed-precision engine (bf16
// GEMM operands and stored GEMM inputs, float32 accumulation, LayerNorm,
// GELU, loss and optimizer state, as PyTorch autocast). bf16 keeps 8
// significant bits (7 stored, one implicit): rounding to nearest errs by
// at most u = 2^-8 relative (half a unit in the last place), by
// u/sqrt(3) = 2.3e-3 in root mean square over values spread across a
// binade. A product of two rounded operands is off by up to 2u; in a dot
// product of depth K these errors are independent, so the norm-wise
// relative error of a GEMM's output stays near sqrt(2) u/sqrt(3) whatever
// K, while the worst element's error relative to its value grows like
// 2u sqrt(K) (the sum of K terms of random sign is sqrt(K) times smaller
// than the sum of their sizes). The engine suite's model is 7 GEMMs deep,
// each rounding a weight and an activation; LayerNorm renormalises, so the
// errors add roughly in quadrature: about sqrt(14) u/sqrt(3) = 8.6e-3 on
// the output (the bf16 GPU engine measures 5.7e-3). The backward pass is
// twice as deep and its LayerNorm backward cancels (g - mean(g) - xhat
// mean(g xhat)), which amplifies relative errors of small gradients:
// measured 1.4e-2. After 20 AdamW steps the parameters measure 2.4e-3 and
// the losses 6.4e-4 (the normalised update turns gradient errors into
// absolute parameter errors of about lr per step). The bounds leave a
// factor of 3 to 4; a wrong index or a missing term moves a tensor by
// O(1), and a bf16 weight copy that AdamW leaves stale moves the
// parameters by 0.14 after the 20 steps.
var BF16Tolerances = Tolerances{Forward: 2e-2, Gradient: 5e-2, Train: 1e-2}

// RelDiff is ||a-b|| / ||b|| (or ||a-b|| when b is zero); +Inf when the
// two differ in length, are empty, or either holds a NaN (or an infinity
// that leaves it undefined), so that a check "RelDiff(...) > tol" fails
// where it compared nothing or NaN (a NaN difference compares false with
// any bound).
func RelDiff[A, B Float](a []A, b []B) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	r := math.Sqrt(num)
	if den != 0 {
		r = math.Sqrt(num / den)
	}
	if math.IsNaN(r) { // (a NaN, or infinities on both sides)
		return math.Inf(1)
	}
	return r
}

// PerturbNorms moves the LayerNorm parameters of params (shape c) off
// their initial 1 and 0, by normal noise of scale 0.2 from seed, so that
// their gradients and their use in the backward pass are exercised (with
// gamma = 1 and beta = 0 a kernel that reads the wrong LayerNorm's
// parameters computes the same).
func PerturbNorms(c Config, params []float32, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for _, tn := range c.Layout().Tensors {
		if tn.Kind == NormWeight || tn.Kind == NormBias {
			v := View(params, tn)
			for i := range v {
				v[i] += float32(0.2 * rng.NormFloat64())
			}
		}
	}
}

// CheckConfig is the shape of the check's model (50,472 parameters): every
// width a multiple of 8 (the bf16 GEMMs' rows are 16-byte aligned) and
// none a power of two, and two residual blocks, so that a block's input
// gradient flows into another's output. It is small because the check
// runs at the first open of a GPU engine in every process, the host
// emulator's included, which spends seconds on each 10,000 parameters:
// every thread of a row kernel takes one column here and each GEMM one
// ragged tile. The kernels' index arithmetic at the model's real widths
// is the kernel tests' to prove; the check proves that the GPU runs the
// kernels as the emulator does.
var CheckConfig = Config{InputDim: 40, HiddenDim: 96, OutputDim: 72, Blocks: 2}

// CheckRows is the batch of the check's problem: a multiple of no power of
// two above 4, so every tile of rows is ragged, and InfoNCE's softmax runs
// over 12 rows.
const CheckRows = 12

// checkStep is the AdamW step of the check, from checkMoments: early in
// training (step 3), so that both bias corrections matter (1 - 0.9^3 =
// 0.27 and 1 - 0.999^3 = 0.003) and a step number one off moves the
// update by 9%, with a rate that makes the update about 0.008 g/r per
// element.
var checkStep = AdamWStep{LR: 0.4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 3}

// checkPipelinedStep is pipelined step i (from 0) of the check: checkStep
// one step later each time, with a rate and a beta1 of its own, so that a
// CUDA graph that replays the scalars of the step it was captured at
// computes another update, and at a quarter of checkStep's rate or less,
// so that the weights move little between the steps and the first moment,
// which sums their gradients, is not a small difference of them (at
// checkStep's rate it magnified the gradients' relative error 1.8 times).
func checkPipelinedStep(i int) AdamWStep {
	s := checkStep
	s.LR *= [checkPipelinedSteps]float64{0.125, 0.0625, 0.1875}[i]
	s.Beta1 = [checkPipelinedSteps]float64{0.9, 0.85, 0.95}[i]
	s.Step += i
	return s
}

// checkMoments are the AdamW moments the check's steps start from, given
// the gradients g of the float64 engine: the first moment zero, and for
// each tensor of rms gradient r (1 where it is all zeros) the second
// moment r^2, as if earlier steps had seen such gradients. A step's
// update, lr (1-beta1) g / (1-beta1^t) / sqrt(beta2 r^2 / (1-beta2^t)) in
// effect, is then in proportion to g, and its relative error is the
// gradient's. From zero moments the first step's update would be
// lr sign(g), which flips wherever a gradient is near zero and two
// engines differ in its sign.
func checkMoments(c Config, g []float64) (m, v []float32) {
	m, v = make([]float32, len(g)), make([]float32, len(g))
	for _, tn := range c.Layout().Tensors {
		gt, vt := View(g, tn), View(v, tn)
		var ss float64
		for _, x := range gt {
			ss += x * x
		}
		r := math.Sqrt(ss / float64(len(gt)))
		if r == 0 {
			r = 1
		}
		for i := range vt {
			vt[i] = float32(r * r)
		}
	}
	return m, v
}

// checkEMADecay is the decay of the check's moving average.
const checkEMADecay = 0.9

// checkPipelinedSteps is how many pipelined steps the check runs: the
// first of a shape runs launch by launch, the second is captured as a
// CUDA graph and the third replays it (package cuda's step.go), and from
// the second on each returns the loss of the one before.
const checkPipelinedSteps = 3

// roundingFloor bounds what storing a float32 (or computing it in float32
// from float32 values in a few operations) changes a value by, relative to
// it: a few units of 2^-24. Where the check compares a change (a step's,
// a moment's, an average's) rather than a value, this much of the value
// is allowed on top of the bound on the change.
const roundingFloor = 0x1p-22

// ErrFailedCheck is what an engine that failed a check on this machine
// (CheckEngine, or a GPU engine's own checks) is refused with: retrying
// will not help, another precision or device may.
var ErrFailedCheck = errors.New("the engine failed its check on this machine")

// CheckResult is what CheckEngine found: the first disagreement beyond
// its bound in words ("" when there is none), the largest difference it
// measured relative to its bound (below 1 where all are within) and what
// it was of, and what it could not check, and why ("" where it checked
// everything).
type CheckResult struct {
	Wrong     string
	Worst     float64
	WorstAt   string
	Unchecked string
}

// CheckEngine compares e with the float64 CPU engine on one problem of e's
// shape, CheckRows rows from a fixed seed, and reports where they differ by
// more than tol; err is an error of either engine (a device that fails,
// say), after what the check was doing. A loss that is not finite (an
// error wrapping ErrNonFinite) is a disagreement, not an error. What it
// compares:
//
//   - the output (Project) and, under the MSE and under MSE + InfoNCE,
//     the loss (ForwardBackward and Loss) within tol.Forward, and each
//     gradient tensor and the logit scale's gradient within tol.Gradient;
//   - after one AdamW step (checkStep, from checkMoments), what the step
//     added to each parameter tensor and each first moment, within
//     tol.Gradient (it is in proportion to the gradient), and to each
//     second moment, within 2 tol.Gradient (the gradient's square, whose
//     relative error is twice the gradient's), each allowing roundingFloor
//     of the value besides; and the output from the stepped weights;
//   - where e is an EMAEngine, what one update added to the moving
//     average, as for the parameters;
//   - where e is a ResidentEngine, the loss and gradients of resident rows
//     under MSE + InfoNCE, and where it is a PipelinedEngine, the losses of
//     checkPipelinedSteps pipelined steps (checkPipelinedStep) under the
//     MSE, each returned one call later, and what they added to the
//     parameters and moments, as above. An engine that cannot hold the
//     rows (ErrNotResident: a GPU short of memory) leaves these out, and
//     Unchecked says so;
//   - and e with itself, bit for bit, as those interfaces promise: the
//     resident rows' loss and gradients with ForwardBackward's of their
//     values from the host, and the pipelined steps' losses, parameters
//     and moments with those of ForwardBackwardRows and Step of the same
//     rows and scalars from the same start (a race or an order that
//     changes from run to run, which would break a resumed run's promise
//     to end as an uninterrupted one, can stay within the bounds).
//
// It stops at the first disagreement. The inputs are float16 values, so
// that the resident rows are the host batch's. CheckEngine changes e's
// parameters, moments, objective and resident data: an engine built for
// the check, not one in use.
func CheckEngine(e Engine, tol Tolerances) (CheckResult, error) {
	c := e.Config()
	ref, err := NewCPUEngine[float64](c)
	if err != nil {
		return CheckResult{}, err
	}
	params := InitParameters[float32](c, 7)
	PerturbNorms(c, params, 8)
	k := &checkComparer{c: c, e: e, ref: ref, tol: tol, params: params}
	err = k.compare()
	switch {
	case errors.Is(err, errDisagree):
		err = nil
	case errors.Is(err, ErrNonFinite):
		k.disagree(fmt.Sprintf("%s: %v", k.doing, err))
		err = nil
	case err != nil:
		err = fmt.Errorf("%s: %w", k.doing, err)
	}
	return k.CheckResult, err
}

// checkComparer runs the check and keeps its result.
type checkComparer struct {
	CheckResult
	c      Config
	e      Engine
	ref    *CPUEngine[float64]
	tol    Tolerances
	params []float32
	doing  string // what e is computing: for an error, and a loss that is not finite
}

// errDisagree stops compare at the first disagreement, which Wrong holds.
var errDisagree = errors.New("nn: the engine check found a disagreement")

// compare runs the check: nil when it has compared everything, errDisagree
// at the first disagreement, or an error of an engine.
func (k *checkComparer) compare() error {
	c, e, ref, tol := k.c, k.e, k.ref, k.tol
	const n = CheckRows
	x16, t16 := checkData(c, n)
	x, t := float16Values(x16), float16Values(t16)
	k.doing = "setting the parameters"
	if err := k.reset(nil, nil); err != nil {
		return err
	}

	if err := k.output("the output", x); err != nil {
		return err
	}

	contrastive := Objective{Loss: LossMSEInfoNCE, InfoNCEWeight: 0.25, LogitScale: InitLogitScale}
	for _, o := range []Objective{{}, contrastive} {
		k.doing = "setting the objective"
		if err := k.setObjective(o); err != nil {
			return err
		}
		what := "under the " + describeObjective(o)
		refLoss, _, err := k.lossAndGradients(what, o, func() (float64, error) { return e.ForwardBackward(x, t, n) }, x, t)
		if err != nil {
			return err
		}
		k.doing = "the loss without gradients " + what
		l, err := e.Loss(x, t, n)
		if err != nil {
			return err
		}
		if err := k.scalar(k.doing, l, refLoss, tol.Forward); err != nil {
			return err
		}
	}

	// One step from the gradients of MSE + InfoNCE.
	m0, v0 := checkMoments(c, ref.Model.Grads)
	k.doing = "an AdamW step"
	for _, eng := range []Engine{e, ref} {
		if err := eng.SetMoments(m0, v0); err != nil {
			return err
		}
		if err := eng.Step(checkStep); err != nil {
			return err
		}
	}
	if _, err := k.stepped("an AdamW step", v0, 1); err != nil {
		return err
	}
	// The output again, from the weights the step wrote (a bf16 engine's
	// GEMMs read a copy of its own).
	if err := k.output("the output after an AdamW step", x); err != nil {
		return err
	}

	if em, ok := e.(EMAEngine); ok {
		k.doing = "the moving average"
		if err := em.StartEMA(k.params, checkEMADecay); err != nil {
			return err
		}
		if err := em.UpdateEMA(); err != nil {
			return err
		}
		got := make([]float32, len(k.params))
		if err := em.EMA(got); err != nil {
			return err
		}
		want := append([]float32(nil), k.params...)
		stepped := make([]float32, len(k.params))
		if err := ref.Parameters(stepped); err != nil {
			return err
		}
		BlendEMA(want, stepped, checkEMADecay)
		if err := changes(k, "the moving average's change of", "in an update", got, want, k.params, tol.Gradient); err != nil {
			return err
		}
	}

	re, ok := e.(ResidentEngine)
	if !ok {
		return nil
	}
	k.doing = "loading resident rows"
	err := re.LoadResident(n, n, func(lo, hi int, xs, ts []uint16) error {
		copy(xs, x16[lo*c.InputDim:hi*c.InputDim])
		copy(ts, t16[lo*c.OutputDim:hi*c.OutputDim])
		return nil
	})
	if errors.Is(err, ErrNotResident) {
		k.Unchecked = fmt.Sprintf("resident rows and pipelined steps (%v)", err)
		return nil
	}
	if err != nil {
		return err
	}
	k.doing = "setting the parameters and moments"
	if err := k.reset(m0, v0); err != nil {
		return err
	}
	rows := checkBatch(n, 0)
	xr, tr := gatherRows(x, rows, c.InputDim), gatherRows(t, rows, c.OutputDim)
	what := "of resident rows under the " + describeObjective(contrastive)
	var residentLoss float64
	fbRows := func() (l float64, err error) {
		l, err = re.ForwardBackwardRows(rows)
		residentLoss = l
		return l, err
	}
	_, grads, err := k.lossAndGradients(what, contrastive, fbRows, xr, tr)
	if err != nil {
		return err
	}
	if err := k.residentAsHost(residentLoss, grads, xr, tr); err != nil {
		return err
	}

	pe, ok := e.(PipelinedEngine)
	if !ok {
		return nil
	}
	return k.pipelined(pe, x, t)
}

// pipelined runs checkPipelinedSteps pipelined steps of pe under the MSE,
// each on another batch of the resident rows x and t, from moments of the
// first batch's MSE gradients, and compares them with the float64
// engine's ForwardBackward and Step.
func (k *checkComparer) pipelined(pe PipelinedEngine, x, t []float32) error {
	c, ref := k.c, k.ref
	const n = CheckRows
	k.doing = "setting up the pipelined steps"
	if err := k.setObjective(Objective{}); err != nil {
		return err
	}
	batch := func(i int) ([]int32, []float32, []float32) {
		rows := checkBatch(n, i+1)
		return rows, gatherRows(x, rows, c.InputDim), gatherRows(t, rows, c.OutputDim)
	}
	if err := ref.SetParameters(k.params); err != nil {
		return err
	}
	_, x0, t0 := batch(0)
	if _, err := ref.ForwardBackward(x0, t0, n); err != nil {
		return err
	}
	m0, v0 := checkMoments(c, ref.Model.Grads)
	if err := k.reset(m0, v0); err != nil {
		return err
	}
	var refLosses, losses []float64
	check := func(call string, loss float64, done bool, step int) error {
		if !done {
			return k.disagree(fmt.Sprintf("%s returned no loss, where step %d's was due", call, step+1))
		}
		losses = append(losses, loss)
		return k.scalar(fmt.Sprintf("the loss of pipelined step %d (from %s)", step+1, call), loss, refLosses[step], k.tol.Forward)
	}
	for i := range checkPipelinedSteps {
		rows, xi, ti := batch(i)
		s := checkPipelinedStep(i)
		k.doing = fmt.Sprintf("pipelined step %d", i+1)
		if i > 0 {
			k.doing += fmt.Sprintf(" (or step %d's loss, which it returns)", i)
		}
		loss, done, err := pe.StepRows(rows, s)
		if err != nil {
			return err
		}
		refLoss, err := ref.ForwardBackward(xi, ti, n)
		if err != nil {
			return err
		}
		if err := ref.Step(s); err != nil {
			return err
		}
		refLosses = append(refLosses, refLoss)
		if i == 0 {
			if done {
				return k.disagree("the first pipelined step returned a loss, where none was due")
			}
			continue
		}
		if err := check(fmt.Sprintf("pipelined step %d", i+1), loss, done, i-1); err != nil {
			return err
		}
	}
	k.doing = "the last pipelined step's loss"
	loss, done, err := pe.FlushLoss()
	if err != nil {
		return err
	}
	if err := check("FlushLoss", loss, done, checkPipelinedSteps-1); err != nil {
		return err
	}
	after, err := k.stepped(fmt.Sprintf("%d pipelined steps", checkPipelinedSteps), v0, checkPipelinedSteps)
	if err != nil {
		return err
	}
	return k.pipelinedAsSteps(pe, losses, after, m0, v0, func(i int) ([]int32, AdamWStep) {
		rows, _, _ := batch(i)
		return rows, checkPipelinedStep(i)
	})
}

// residentAsHost holds e to the ResidentEngine's promise, bit for bit:
// ForwardBackward of the host rows x and t gives the loss (loss) and the
// gradients (resident) that ForwardBackwardRows of the same resident rows
// gave just before. A GPU that gathers or converts the rows otherwise than
// the emulator, or sums in an order that changes from run to run, differs
// from itself where the float64 engine's bounds would not see it.
func (k *checkComparer) residentAsHost(loss float64, resident, x, t []float32) error {
	k.doing = "the loss and gradients of the resident rows' values from the host"
	l, err := k.e.ForwardBackward(x, t, CheckRows)
	if err != nil {
		return err
	}
	if math.Float64bits(l) != math.Float64bits(loss) {
		return k.disagree(fmt.Sprintf("the loss of resident rows is %v, of their values from the host %v: not bit for bit", loss, l))
	}
	host := make([]float32, k.c.NumParams())
	if err := k.e.Gradients(host); err != nil {
		return err
	}
	return k.sameBits("the gradient", "of resident rows", "of their values from the host", resident, host)
}

// pipelinedAsSteps holds pe to the PipelinedEngine's promise, bit for bit:
// from the same parameters and moments (m0, v0), ForwardBackwardRows and
// Step of each pipelined step's rows and scalars (step(i)) give the losses
// its pipelined steps returned (losses) and the state they left (after),
// which pe holds now. A CUDA graph that replays a kernel out of its order,
// or a step that races with the next, differs so.
func (k *checkComparer) pipelinedAsSteps(pe PipelinedEngine, losses []float64, after engineState, m0, v0 []float32, step func(i int) ([]int32, AdamWStep)) error {
	k.doing = "the pipelined steps again, as ForwardBackwardRows and Step"
	if err := pe.SetParameters(k.params); err != nil {
		return err
	}
	if err := pe.SetMoments(m0, v0); err != nil {
		return err
	}
	for i, want := range losses {
		rows, s := step(i)
		l, err := pe.ForwardBackwardRows(rows)
		if err != nil {
			return err
		}
		if math.Float64bits(l) != math.Float64bits(want) {
			return k.disagree(fmt.Sprintf("pipelined step %d's loss is %v, ForwardBackwardRows's of its rows %v: not bit for bit", i+1, want, l))
		}
		if err := pe.Step(s); err != nil {
			return err
		}
	}
	again, err := k.state(pe)
	if err != nil {
		return err
	}
	const pipelined, stepped = "after the pipelined steps", "after ForwardBackwardRows and Step"
	if err := k.sameBits("the parameter", pipelined, stepped, after.params, again.params); err != nil {
		return err
	}
	if err := k.sameBits("AdamW's first moment of", pipelined, stepped, after.m, again.m); err != nil {
		return err
	}
	return k.sameBits("AdamW's second moment of", pipelined, stepped, after.v, again.v)
}

// engineState is an engine's parameters and AdamW moments (m, v), as the
// host reads them.
type engineState struct{ params, m, v []float32 }

// state reads e's parameters and moments.
func (k *checkComparer) state(e Engine) (engineState, error) {
	np := k.c.NumParams()
	s := engineState{make([]float32, np), make([]float32, np), make([]float32, np)}
	if err := e.Parameters(s.params); err != nil {
		return engineState{}, err
	}
	if err := e.Moments(s.m, s.v); err != nil {
		return engineState{}, err
	}
	return s, nil
}

// sameBits returns a disagreement where a and b, two parameter-shaped
// values, differ in any bit, naming the first element that does: "<what>
// <tensor>[i] <aWhen> ..., <bWhen> ...".
func (k *checkComparer) sameBits(what, aWhen, bWhen string, a, b []float32) error {
	for _, tn := range k.c.Layout().Tensors {
		av, bv := View(a, tn), View(b, tn)
		for i := range av {
			if math.Float32bits(av[i]) != math.Float32bits(bv[i]) {
				return k.disagree(fmt.Sprintf("%s %s[%d] is %v %s, %v %s: not bit for bit", what, tn.Name, i, av[i], aWhen, bv[i], bWhen))
			}
		}
	}
	return nil
}

// checkBatch is the rows of batch i (from 0) of the check's n resident
// rows: all of them in an order of the batch's own, but row 1+i in
// place of row 2+i, taken twice, as a shuffled epoch's batch takes rows
// from the resident set. Row 0 (the zero target) is in every batch of the
// check, and each batch is another multiset, so a step that reuses an
// earlier batch's rows differs (an order alone would not: the losses sum
// over the batch).
func checkBatch(n, i int) []int32 {
	rows := make([]int32, n)
	for j := range rows {
		rows[j] = int32((j*5 + i) % n)
		if rows[j] == int32((1+i)%n) {
			rows[j] = int32((2 + i) % n)
		}
	}
	return rows
}

// reset gives both engines the check's parameters, and the moments m and
// v where they are given.
func (k *checkComparer) reset(m, v []float32) error {
	for _, eng := range []Engine{k.e, k.ref} {
		if err := eng.SetParameters(k.params); err != nil {
			return err
		}
		if m == nil {
			continue
		}
		if err := eng.SetMoments(m, v); err != nil {
			return err
		}
	}
	return nil
}

// setObjective sets o on both engines.
func (k *checkComparer) setObjective(o Objective) error {
	for _, eng := range []Engine{k.e, k.ref} {
		if err := eng.SetObjective(o); err != nil {
			return err
		}
	}
	return nil
}

// within records the relative difference d of what, bounded by tol, and
// returns errDisagree, with Wrong set, where d is beyond it (or NaN).
func (k *checkComparer) within(what string, d, tol float64) error {
	if r := d / tol; r > k.Worst || math.IsNaN(r) || k.WorstAt == "" {
		k.Worst, k.WorstAt = r, what
	}
	if !(d <= tol) {
		k.Wrong = fmt.Sprintf("%s: relative difference %.3g, more than %g", what, d, tol)
		return errDisagree
	}
	return nil
}

// disagree records a disagreement that has no measured difference (a loss
// that is not finite, or one returned when none was due or not when it
// was), at what e is computing, and returns errDisagree.
func (k *checkComparer) disagree(wrong string) error {
	k.Wrong, k.Worst, k.WorstAt = wrong, math.Inf(1), k.doing
	return errDisagree
}

// output compares e's output (Project) of the check's inputs x with the
// float64 engine's, within tol.Forward.
func (k *checkComparer) output(what string, x []float32) error {
	k.doing = what
	out, refOut := make([]float32, CheckRows*k.c.OutputDim), make([]float32, CheckRows*k.c.OutputDim)
	if err := k.e.Project(out, x, CheckRows); err != nil {
		return err
	}
	if err := k.ref.Project(refOut, x, CheckRows); err != nil {
		return err
	}
	return k.within(what, RelDiff(out, refOut), k.tol.Forward)
}

// scalar is within for one value and the float64 engine's.
func (k *checkComparer) scalar(what string, got, want, tol float64) error {
	return k.within(fmt.Sprintf("%s (%v, the CPU's %v)", what, got, want), math.Abs(got-want)/math.Abs(want), tol)
}

// lossAndGradients runs fb (a ForwardBackward of e under the objective o,
// on x and t or on resident rows of their values) and the float64
// engine's ForwardBackward of x and t, compares their losses, each
// gradient tensor and (under a contrastive o) the logit scale's gradient,
// and returns the float64 engine's loss and e's gradients.
func (k *checkComparer) lossAndGradients(what string, o Objective, fb func() (float64, error), x, t []float32) (refLoss float64, grads []float32, err error) {
	k.doing = "the loss and gradients " + what
	loss, err := fb()
	if err != nil {
		return 0, nil, err
	}
	refLoss, err = k.ref.ForwardBackward(x, t, CheckRows)
	if err != nil {
		return 0, nil, err
	}
	if err := k.scalar("the loss "+what, loss, refLoss, k.tol.Forward); err != nil {
		return 0, nil, err
	}
	grads = make([]float32, k.c.NumParams())
	if err := k.e.Gradients(grads); err != nil {
		return 0, nil, err
	}
	for _, tn := range k.c.Layout().Tensors {
		if err := k.within("the gradient of "+tn.Name+" "+what, RelDiff(View(grads, tn), View(k.ref.Model.Grads, tn)), k.tol.Gradient); err != nil {
			return 0, nil, err
		}
	}
	if o.Contrastive() {
		err = k.scalar("the logit scale's gradient "+what, k.e.LogitScaleGrad(), k.ref.LogitScaleGrad(), k.tol.Gradient)
	}
	return refLoss, grads, err
}

// stepped compares what steps AdamW steps from the check's parameters,
// a zero first moment and the second moment v0 added to the parameters
// and the moments (the second moment's old part decays by beta2 a step),
// and returns the state of e it compared.
func (k *checkComparer) stepped(what string, v0 []float32, steps int) (engineState, error) {
	s, err := k.state(k.e)
	if err != nil {
		return engineState{}, err
	}
	np := k.c.NumParams()
	when := "in " + what
	if err := changes(k, "the change of", when, s.params, k.ref.Model.Params, k.params, k.tol.Gradient); err != nil {
		return engineState{}, err
	}
	if err := changes(k, "AdamW's first moment of", when, s.m, k.ref.M, make([]float64, np), k.tol.Gradient); err != nil {
		return engineState{}, err
	}
	decayed := make([]float64, np)
	for i, x := range v0 {
		decayed[i] = math.Pow(checkStep.Beta2, float64(steps)) * float64(x)
	}
	if err := changes(k, "the change of AdamW's second moment of", when, s.v, k.ref.V, decayed, 2*k.tol.Gradient); err != nil {
		return engineState{}, err
	}
	return s, nil
}

// changes compares, tensor by tensor (all in Layout order), the change
// got - base with want - base, where base is the value the change was
// made to: "<what> <tensor> <when>". The difference may exceed tol
// times the norm of want's change by roundingFloor of want's norm.
func changes[W, B Float](k *checkComparer, what, when string, got []float32, want []W, base []B, tol float64) error {
	for _, tn := range k.c.Layout().Tensors {
		g, w, b := View(got, tn), View(want, tn), View(base, tn)
		var diff, change, size float64
		for i := range g {
			wi := float64(w[i])
			d, c := float64(g[i])-wi, wi-float64(b[i])
			diff, change, size = diff+d*d, change+c*c, size+wi*wi
		}
		excess := math.Max(0, math.Sqrt(diff)-roundingFloor*math.Sqrt(size))
		rel := excess / math.Sqrt(change)
		if change == 0 && excess == 0 {
			rel = 0 // (both unchanged, as a zero gradient leaves a moment)
		}
		if err := k.within(what+" "+tn.Name+" "+when, rel, tol); err != nil {
			return err
		}
	}
	return nil
}

// checkData is the check's inputs [n, InputDim] and targets [n,
// OutputDim] as float16 bits: normal values, with target row 0 all zeros
// (the unit-norm clamp).
func checkData(c Config, n int) (x, t []uint16) {
	rng := rand.New(rand.NewPCG(9, 10))
	x, t = make([]uint16, n*c.InputDim), make([]uint16, n*c.OutputDim)
	for i := range x {
		x[i] = leconv.Float16Bits(float32(rng.NormFloat64()))
	}
	for i := c.OutputDim; i < len(t); i++ {
		t[i] = leconv.Float16Bits(float32(rng.NormFloat64()))
	}
	return x, t
}

// float16Values is v's float16 bits as float32 values.
func float16Values(v []uint16) []float32 {
	out := make([]float32, len(v))
	for i, h := range v {
		out[i] = leconv.Float16Value(h)
	}
	return out
}

// gatherRows is rows rows of the row-major matrix v of width dim.
func gatherRows(v []float32, rows []int32, dim int) []float32 {
	out := make([]float32, 0, len(rows)*dim)
	for _, r := range rows {
		out = append(out, v[int(r)*dim:(int(r)+1)*dim]...)
	}
	return out
}

// describeObjective names o for the check's messages.
func describeObjective(o Objective) string {
	if o.Contrastive() {
		return fmt.Sprintf("%s (InfoNCE weight %g)", o.LossName(), o.InfoNCEWeight)
	}
	return o.LossName()
}
