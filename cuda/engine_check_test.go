//go:build cuda

package cuda

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
)

// freshEngineVerdict forgets the process's engine verdicts for the test,
// so that the next open checks again, and restores them afterwards.
func freshEngineVerdict(t *testing.T) {
	setAside(t, &engineVerdict.Mutex, &engineVerdict.engineOutcome)
}

// The check passes right kernels in each precision, by a margin: at most
// half of any bound (in the emulator the largest is 0.37 of one, bf16's
// output after a step, most of it the rounding of the operands to bf16,
// which any GPU does alike), so that a GPU, which sums in other orders, is
// not refused by a bound it only just misses. An open runs it once per
// process and precision and keeps the verdict.
func TestEngineCheckPasses(t *testing.T) {
	freshEngineVerdict(t)
	for _, bf16 := range []bool{false, true} {
		d, _ := openDevice(t)
		r, err := runEngineCheck(d, bf16)
		if err != nil {
			t.Fatal(err)
		}
		if r.Wrong != "" || !(r.Worst < 0.5) || r.Unchecked != "" {
			t.Fatalf("%s: %+v", precisionName(bf16), r)
		}
		t.Logf("%s engine check: largest difference %.2g of its bound, %s", precisionName(bf16), r.Worst, r.WorstAt)
		if err := checkEngine(bf16); err != nil {
			t.Fatal(err)
		}
		engineVerdict.Lock()
		done, wrong := engineVerdict.done, engineVerdict.wrong
		engineVerdict.Unlock()
		if i := map[bool]int{false: 0, true: 1}[bf16]; !done[i] || wrong[i] != "" {
			t.Fatalf("%s: after a passing check, the verdicts are done %v, wrong %q", precisionName(bf16), done, wrong)
		}
	}
}

// A refusal kept for a precision stops every later open of that precision,
// saying which runs instead, and leaves the other precision alone.
func TestEngineCheckRefuses(t *testing.T) {
	freshEngineVerdict(t)
	c := nn.Config{InputDim: 16, HiddenDim: 32, OutputDim: 16, Blocks: 1}
	engineVerdict.Lock()
	engineVerdict.done, engineVerdict.wrong = [2]bool{true, true}, [2]string{"", "a test's disagreement"}
	engineVerdict.Unlock()
	if _, err := NewBF16Engine(c); !errors.Is(err, nn.ErrFailedCheck) || !strings.Contains(err.Error(), "a test's disagreement") || !strings.Contains(err.Error(), "--precision fp32") {
		t.Fatalf("bf16 after a refusal: %v", err)
	}
	e, err := NewEngine(c)
	if err != nil {
		t.Fatalf("fp32 after bf16's refusal: %v", err)
	}
	e.Close()
	engineVerdict.Lock()
	engineVerdict.wrong = [2]string{"a test's disagreement", ""}
	engineVerdict.Unlock()
	if _, err := NewEngine(c); !errors.Is(err, nn.ErrFailedCheck) || !strings.Contains(err.Error(), "a test's disagreement") || !strings.Contains(err.Error(), "--device cpu") {
		t.Fatalf("fp32 after a refusal: %v", err)
	}
}

// The check's pipelined steps take each path a training step has: the
// first launched kernel by kernel, the second captured as a CUDA graph,
// the third a replay of it.
func TestEngineCheckRunsTheGraph(t *testing.T) {
	d, _ := openDevice(t)
	e, err := buildEngine(d, nn.CheckConfig, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := nn.CheckEngine(e, nn.FP32Tolerances)
	if err != nil || r.Wrong != "" || r.Unchecked != "" {
		t.Fatalf("%+v, %v", r, err)
	}
	on(t, d, func() error {
		if p := e.pipe; p.noGraphs || p.captures != 1 || p.replays != 2 {
			t.Errorf("graphs off %v, %d captures, %d graph launches; want on, 1 and 2", p.noGraphs, p.captures, p.replays)
		}
		return nil
	})
}

// A kernel that fails and takes the check's CUDA context with it is a
// disagreement, which the process keeps (the same kernel would take every
// engine's context with it), saying what the check was doing; an error
// that leaves the context working, a copy that fails, is the device's: an
// error, and no verdict.
func TestEngineCheckDeviceErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		lie  func(fullDriver) fullDriver
		lost bool
	}{
		{"lost context", func(f fullDriver) fullDriver { return lostContext{f, new(bool)} }, true},
		{"failing copies", func(f fullDriver) fullDriver { return failingCopies{f} }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, _ := openDevice(t)
			on(t, d, func() error {
				l := c.lie(d.drv.(fullDriver))
				d.drv, d.tc.ext = l, l
				return nil
			})
			r, err := runEngineCheck(d, false)
			if c.lost {
				if err != nil || !strings.HasPrefix(r.Wrong, "the output: ") || !strings.HasSuffix(r.Wrong, "; the CUDA context was lost with it") || !math.IsInf(r.Worst, 1) {
					t.Fatalf("%+v, %v", r, err)
				}
				t.Log(r.Wrong)
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "the output: ") || r.Wrong != "" {
				t.Fatalf("%+v, %v", r, err)
			}
			t.Log(err)
		})
	}
}
