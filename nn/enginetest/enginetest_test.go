package enginetest_test

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// brokenEngine is the float32 CPU engine with one thing wrong (broken
// names it), for the suite to catch.
type brokenEngine struct {
	*nn.CPUEngine[float32]
	broken string
	calls  int
}

// nudge moves v one part in 1e4 off, far beyond float32 rounding and far
// within a bf16 engine's bounds.
func nudge(v []float32) {
	for i := range v {
		v[i] *= 1 + 1e-4
	}
}

func (e *brokenEngine) Project(dst, x []float32, n int) error {
	err := e.CPUEngine.Project(dst, x, n)
	if e.broken == "output" {
		nudge(dst)
	}
	return err
}

func (e *brokenEngine) Gradients(dst []float32) error {
	err := e.CPUEngine.Gradients(dst)
	if e.broken == "gradient" {
		nudge(dst)
	}
	// (A reduction whose order changes from pass to pass: its last bits.)
	if e.calls++; e.broken == "nondeterministic" && e.calls%2 == 0 && len(dst) > 0 {
		dst[0] = math.Nextafter32(dst[0], float32(math.Inf(1)))
	}
	return err
}

func (e *brokenEngine) LogitScaleGrad() float64 {
	g := e.CPUEngine.LogitScaleGrad()
	if e.broken == "logit scale" {
		g *= 1 + 1e-4
	}
	return g
}

func (e *brokenEngine) Step(s nn.AdamWStep) error {
	if e.broken == "step" {
		s.LR *= 1.01
	}
	return e.CPUEngine.Step(s)
}

func (e *brokenEngine) ForwardBackward(x, t []float32, n int) (float64, error) {
	if e.broken == "short input taken" && len(x) < n*e.Config().InputDim {
		return 0, nil
	}
	loss, err := e.CPUEngine.ForwardBackward(x, t, n)
	if e.broken == "non-finite loss hidden" && errors.Is(err, nn.ErrNonFinite) {
		return 0, nil
	}
	return loss, err
}

func (e *brokenEngine) Moments(m, v []float32) error {
	err := e.CPUEngine.Moments(m, v)
	if e.broken == "moments lost" {
		clear(v)
	}
	return err
}

// brokenVar names the engine TestBrokenEngineSuite runs the suite on.
const brokenVar = "ENGINETEST_BROKEN"

// TestBrokenEngineSuite runs the suite on the engine broken as brokenVar
// says; TestSuiteCatchesBrokenEngines runs it in a child process for each
// breakage and reads which parts failed (the suite fails the *testing.T it
// is given, which no test can hand it and then look at).
func TestBrokenEngineSuite(t *testing.T) {
	broken, ok := os.LookupEnv(brokenVar)
	if !ok {
		t.Skip("run by TestSuiteCatchesBrokenEngines, in a child process")
	}
	enginetest.Run(t, func(c nn.Config) (nn.Engine, error) {
		cpu, err := nn.NewCPUEngine[float32](c)
		return &brokenEngine{CPUEngine: cpu, broken: broken}, err
	})
}

// The suite passes the float32 engine wrapped as it is, and fails it with
// each thing broken, in the part that looks at that thing.
func TestSuiteCatchesBrokenEngines(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	for _, c := range []struct{ broken, part string }{
		{"", ""},
		{"output", "ForwardAndGradients"},
		{"gradient", "ForwardAndGradients"},
		{"logit scale", "Objectives"},
		{"step", "Training"},
		{"short input taken", "BadInput"},
		{"non-finite loss hidden", "NonFiniteLoss"},
		{"moments lost", "ParameterRoundTrip"},
		{"nondeterministic", "Deterministic"},
	} {
		name := c.broken
		if name == "" {
			name = "nothing broken"
		}
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenEngineSuite$", "-test.v")
			cmd.Env = append(os.Environ(), brokenVar+"="+c.broken)
			out, err := cmd.CombinedOutput()
			failed := strings.Contains(string(out), "--- FAIL: TestBrokenEngineSuite/"+c.part+" ")
			switch {
			case !strings.Contains(string(out), "=== RUN   TestBrokenEngineSuite/"):
				t.Fatalf("the suite did not run:\n%s", out)
			case c.broken == "" && err != nil:
				t.Errorf("the unbroken engine failed the suite: %v\n%s", err, out)
			case c.broken != "" && (err == nil || !failed):
				t.Errorf("the suite passed an engine with its %s broken, or its part %s, which looks at that, did not fail (%v):\n%s", c.broken, c.part, err, out)
			}
		})
	}
}
