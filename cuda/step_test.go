//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
	"github.com/dinoclip/dinoclip/npy"
)

// syncCounter is a driver that counts the calls that make the host wait
// for the device, around the engine's own driver (an Extended one).
type syncCounter struct {
	fullDriver
	syncs, toHost, waits int
}

func (s *syncCounter) Sync() error { s.syncs++; return s.fullDriver.Sync() }

func (s *syncCounter) ToHost(dst unsafe.Pointer, src uintptr, bytes int64) error {
	s.toHost++
	return s.fullDriver.ToHost(dst, src, bytes)
}

func (s *syncCounter) WaitEvent(ev driver.Event) error { s.waits++; return s.fullDriver.WaitEvent(ev) }

// countSyncs puts a syncCounter around e's driver.
func countSyncs(t *testing.T, e *Engine) *syncCounter {
	t.Helper()
	var sc *syncCounter
	on(t, e.dev, func() error {
		sc = &syncCounter{fullDriver: e.dev.drv.(fullDriver)}
		e.dev.drv = sc
		return nil
	})
	return sc
}

// stepHP is the AdamW step s of the tests: the learning rate and β1
// change at every step, as under OneCycleLR, so that a graph replaying the
// scalars of the step it was captured at gives other bits.
func stepHP(s int) nn.AdamWStep {
	return nn.AdamWStep{Step: s, LR: 1e-2 / float64(s), Beta1: 0.95 - 0.01*float64(s), Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// stepEngines opens count engines of data's model, each with the same
// initial parameters and the resident data loaded for batches of up to
// batch rows.
func stepEngines(t *testing.T, newEngine func(nn.Config) (*Engine, error), data *residentData, rows, batch, count int) []*Engine {
	t.Helper()
	c := data.cfg
	params := nn.InitParameters[float32](c, 9)
	var es []*Engine
	for range count {
		e, err := newEngine(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		if err := e.SetParameters(params); err != nil {
			t.Fatal(err)
		}
		if err := e.LoadResident(rows, batch, data.read); err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	return es
}

// state is an engine's parameters and moments.
func state(t *testing.T, e *Engine) (p, m, v []float32) {
	t.Helper()
	n := e.cfg.NumParams()
	p, m, v = make([]float32, n), make([]float32, n), make([]float32, n)
	if err := e.Parameters(p); err != nil {
		t.Fatal(err)
	}
	if err := e.Moments(m, v); err != nil {
		t.Fatal(err)
	}
	return p, m, v
}

func sameState(t *testing.T, what string, got, want *Engine) {
	t.Helper()
	gp, gm, gv := state(t, got)
	wp, wm, wv := state(t, want)
	sameBits(t, what+" parameter", gp, wp)
	sameBits(t, what+" first moment", gm, wm)
	sameBits(t, what+" second moment", gv, wv)
}

// TestStepRowsMatchesSteps: the pipelined step, captured as a graph and
// replayed, and run launch by launch, gives the losses, parameters and
// moments of ForwardBackwardRows and Step, bit for bit, over steps whose
// scalars all differ and a batch size that changes (the change runs one
// step launch by launch and captures again at the next); the losses
// come back one call late and the last from FlushLoss. No step waits for
// the device except for the step before it (one WaitEvent a step from the
// second on, no Sync, no synchronous copy), once the workspace is made.
// (The launch-by-launch engine runs in fp32 only: the emulator is slow, and
// the two modes differ in kernels, not in how a step is enqueued.)
func TestStepRowsMatchesSteps(t *testing.T) {
	t.Run("fp32", func(t *testing.T) { testStepRows(t, NewEngine, true) })
	t.Run("bf16", func(t *testing.T) { testStepRows(t, NewBF16Engine, false) })
}

func testStepRows(t *testing.T, newEngine func(nn.Config) (*Engine, error), withEager bool) {
	const rows, batch = 101, 21
	data := newResidentData(enginetest.Config, rows, 1)
	es := stepEngines(t, newEngine, data, rows, batch, 3)
	graph, eager, ref := es[0], es[1], es[2]
	eager.pipe.noGraphs = true
	modes := []*Engine{graph, eager}
	if !withEager {
		modes = modes[:1]
		eager.Close()
	}
	sizes := []int{21, 21, 21, 13, 13, 13}
	rng := rand.New(rand.NewPCG(4, 4))
	var want []float64
	got := map[*Engine][]float64{}
	counters := map[*Engine]*syncCounter{}
	for _, e := range modes {
		counters[e] = countSyncs(t, e)
	}
	for s, n := range sizes {
		idx := make([]int32, n)
		for i := range idx {
			idx[i] = int32(rng.IntN(rows))
		}
		hp := stepHP(s + 1)
		l, err := ref.ForwardBackwardRows(idx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ref.Step(hp); err != nil {
			t.Fatal(err)
		}
		want = append(want, l)
		for _, e := range modes {
			l, done, err := e.StepRows(idx, hp)
			if err != nil {
				t.Fatal(err)
			}
			if done != (s > 0) {
				t.Fatalf("step %d: done %v", s+1, done)
			}
			if done {
				got[e] = append(got[e], l)
			}
		}
	}
	for _, e := range modes {
		c := counters[e]
		if c.syncs != 0 || c.toHost != 0 || c.waits != len(sizes)-1 {
			t.Errorf("%d steps: %d Syncs, %d synchronous copies to the host and %d event waits; want 0, 0 and %d",
				len(sizes), c.syncs, c.toHost, c.waits, len(sizes)-1)
		}
		l, done, err := e.FlushLoss()
		if err != nil || !done {
			t.Fatalf("FlushLoss: %v, done %v", err, done)
		}
		got[e] = append(got[e], l)
		if _, done, err := e.FlushLoss(); done || err != nil {
			t.Fatalf("a second FlushLoss: done %v, %v", done, err)
		}
		for s := range want {
			if math.Float64bits(got[e][s]) != math.Float64bits(want[s]) {
				t.Fatalf("graphs %v: step %d: loss %v, want %v", !e.pipe.noGraphs, s+1, got[e][s], want[s])
			}
		}
		sameState(t, "after the steps", e, ref)
	}
	// Captured at steps 2 and 5; graph launches at 2-3 and 5-6.
	if p := graph.pipe; p.noGraphs || p.captures != 2 || p.replays != 4 {
		t.Errorf("graphs off %v, %d captures, %d graph launches; want on, 2 and 4", p.noGraphs, p.captures, p.replays)
	}
	if p := eager.pipe; p.captures != 0 || p.replays != 0 {
		t.Errorf("with graphs off: %d captures, %d graph launches", p.captures, p.replays)
	}
}

// TestStepRowsNaNGuard: a step whose loss is not finite changes neither
// the parameters nor the moments, nor does the step enqueued before the
// host reads that loss; the host learns of it one call late, as
// nn.ErrNonFinite, and further steps are refused until SetParameters,
// after which steps update again. A non-finite loss in the last step comes
// from FlushLoss, with the state of the steps before it.
func TestStepRowsNaNGuard(t *testing.T) {
	const rows, batch = 40, 8
	data := newResidentData(enginetest.Config, rows, 3)
	const bad = 17 // a row with a NaN feature
	data.x[bad*data.cfg.InputDim+3] = npy.Float16Bits(float32(math.NaN()))
	good := func(k int) []int32 {
		idx := make([]int32, batch)
		for i := range idx {
			idx[i] = int32((k*batch + i) % bad)
		}
		return idx
	}
	poisoned := append(good(9)[:batch-1], bad)
	es := stepEngines(t, NewEngine, data, rows, batch, 2)
	e, ref := es[0], es[1]
	for s := 1; s <= 3; s++ {
		if _, err := ref.ForwardBackwardRows(good(s)); err != nil {
			t.Fatal(err)
		}
		if err := ref.Step(stepHP(s)); err != nil {
			t.Fatal(err)
		}
	}
	steps := [][]int32{good(1), good(2), good(3), poisoned, good(5)}
	for s, idx := range steps {
		_, _, err := e.StepRows(idx, stepHP(s+1))
		if s < 4 && err != nil {
			t.Fatalf("step %d: %v", s+1, err)
		}
		if s == 4 && !errors.Is(err, nn.ErrNonFinite) {
			t.Fatalf("the step after the non-finite one: %v, want the non-finite loss of step 4", err)
		}
	}
	sameState(t, "after a non-finite loss", e, ref)
	if _, _, err := e.StepRows(good(6), stepHP(6)); !errors.Is(err, nn.ErrNonFinite) {
		t.Fatalf("a step after the non-finite loss was reported: %v, want it refused", err)
	}
	if _, _, err := e.FlushLoss(); !errors.Is(err, nn.ErrNonFinite) {
		t.Fatalf("the loss of the step the guard skipped: %v, want it reported as skipped", err)
	}
	p, _, _ := state(t, ref)
	if err := e.SetParameters(p); err != nil {
		t.Fatal(err)
	}
	before, _, _ := state(t, e)
	if _, _, err := e.StepRows(good(6), stepHP(4)); err != nil {
		t.Fatalf("a step after SetParameters: %v", err)
	}
	l, done, err := e.FlushLoss()
	if err != nil || !done || math.IsNaN(l) {
		t.Fatalf("FlushLoss after SetParameters: %v, %v, %v", l, done, err)
	}
	if after, _, _ := state(t, e); math.Float32bits(after[0]) == math.Float32bits(before[0]) && math.Float32bits(after[len(after)-1]) == math.Float32bits(before[len(before)-1]) {
		t.Error("the step after SetParameters left the parameters as they were")
	}

	// A non-finite loss in the last step: FlushLoss reports it.
	es = stepEngines(t, NewEngine, data, rows, batch, 1)
	e = es[0]
	for s, idx := range [][]int32{good(1), good(2), good(3), poisoned} {
		if _, _, err := e.StepRows(idx, stepHP(s+1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, done, err := e.FlushLoss(); !done || !errors.Is(err, nn.ErrNonFinite) {
		t.Fatalf("FlushLoss of a non-finite step: done %v, %v", done, err)
	}
	sameState(t, "after a non-finite last step", e, ref)
}

// TestStepRowsErrors: bad rows, a step number of 0, no resident data and
// an InfoNCE objective are refused before anything is enqueued.
func TestStepRowsErrors(t *testing.T) {
	c := enginetest.Config
	e, err := NewEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, _, err := e.StepRows([]int32{0}, stepHP(1)); err == nil {
		t.Error("a step without resident data: no error")
	}
	data := newResidentData(c, 10, 1)
	if err := e.LoadResident(10, 4, data.read); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"row out of range": func() error { _, _, err := e.StepRows([]int32{0, 10}, stepHP(1)); return err },
		"no rows":          func() error { _, _, err := e.StepRows(nil, stepHP(1)); return err },
		"step 0":           func() error { _, _, err := e.StepRows([]int32{1}, stepHP(0)); return err },
		"InfoNCE": func() error {
			if err := e.SetObjective(nn.Objective{Loss: nn.LossInfoNCE}); err != nil {
				t.Fatal(err)
			}
			defer e.SetObjective(nn.Objective{})
			_, _, err := e.StepRows([]int32{1, 2}, stepHP(1))
			return err
		},
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if e.pipe.enqueued != 0 {
		t.Errorf("%d steps enqueued by refused calls", e.pipe.enqueued)
	}
}

// DINOCLIP_CUDA_GRAPHS turns the captured step off with "off", keeps it
// with "on" or unset, and refuses anything else as the engine opens, before
// the process's first open checks the engine on a device of its own (a
// "0" that left the graphs on would mislead the one debugging them).
func TestGraphsSetting(t *testing.T) {
	for _, c := range []struct {
		value string
		off   bool
		wrong bool
	}{{"", false, false}, {"on", false, false}, {"off", true, false}, {"0", false, true}, {"OFF", false, true}} {
		t.Setenv(graphsEnv, c.value)
		if c.wrong {
			freshEngineVerdict(t)
			checked := false
			open := openForCheck
			openForCheck = func() (*Device, error) { checked = true; return open() }
			e, err := NewEngine(enginetest.Config)
			openForCheck = open
			if want := fmt.Sprintf("cuda: %s=%q: want off or on", graphsEnv, c.value); err == nil || !strings.HasPrefix(err.Error(), want) || checked {
				t.Errorf("%s=%q: engine opened with error %v (after the engine check: %v), want %q before it", graphsEnv, c.value, err, checked, want)
			}
			if e != nil {
				e.Close()
			}
			continue
		}
		e, err := NewEngine(enginetest.Config)
		if err != nil {
			t.Fatalf("%s=%q: %v", graphsEnv, c.value, err)
		}
		if e.pipe.noGraphs != c.off {
			t.Errorf("%s=%q: graphs off %v, want %v", graphsEnv, c.value, e.pipe.noGraphs, c.off)
		}
		e.Close()
	}
}
