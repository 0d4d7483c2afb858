//go:build cuda

package cuda

import (
	"errors"
	"strings"
	"testing"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/driver"
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
		r, _, err := runEngineCheck(d, bf16)
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
		if i := precisionIndex(bf16); !done[i] || wrong[i] != "" {
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

// checkWithDriver makes the engine check's Devices, for the test, ones
// whose driver lie gives, and returns how many it opens.
func checkWithDriver(t *testing.T, lie func(fullDriver) fullDriver) *int {
	opens := new(int)
	t.Cleanup(func() { openForCheck = Open })
	openForCheck = func() (*Device, error) {
		*opens++
		d, err := Open()
		if err != nil {
			return nil, err
		}
		return d, d.do(func() error {
			l := lie(d.drv.(fullDriver))
			d.drv, d.tc.ext = l, l
			return nil
		})
	}
	return opens
}

// A kernel's fault (which on a GPU takes the check's CUDA context with it)
// and a launch the driver refuses with the context sound after it fail
// the check, and the process keeps the refusal, which says what the check
// was doing and what runs instead: the same kernel would fail so in every
// engine. Any other error (a copy or a wait that fails, a launch that
// reports a context lost otherwise) is the device's: an error, no
// verdict, the next open checks again, and the check has released what
// its engine held of the driver (pinned memory, events, CUDA graphs).
func TestEngineCheckDeviceErrors(t *testing.T) {
	counter := &heldCounter{held: map[string]int{}}
	for _, c := range []struct {
		name string
		lie  func(fullDriver) fullDriver
		want string // in the refusal; "" where it is an error
	}{
		{"a kernel's fault", func(f fullDriver) fullDriver { return lostContext{f, new(bool)} }, "the CUDA context was lost with it"},
		{"a launch refused", func(f fullDriver) fullDriver { return refusedLaunches{f, nil} }, "a test's refused launch"},
		{"a launch reporting a lost context", func(f fullDriver) fullDriver { return refusedLaunches{f, new(bool)} }, ""},
		{"failing copies", func(f fullDriver) fullDriver { return failingCopies{f} }, ""},
		{"a failing wait", func(f fullDriver) fullDriver { counter.fullDriver, counter.failed = f, false; return counter }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			freshEngineVerdict(t)
			opens := checkWithDriver(t, c.lie)
			for call := 1; call <= 2; call++ {
				err := checkEngine(false)
				t.Logf("open %d: %v", call, err)
				if c.want == "" {
					if err == nil || errors.Is(err, nn.ErrFailedCheck) || *opens != call {
						t.Fatalf("open %d: %v after %d checks, want an error of the device and a check at each open", call, err, *opens)
					}
					continue
				}
				if !errors.Is(err, nn.ErrFailedCheck) || !strings.Contains(err.Error(), "(the output: ") ||
					!strings.Contains(err.Error(), c.want) || !strings.HasSuffix(err.Error(), "use --device cpu") || *opens != 1 {
					t.Fatalf("open %d: %v after %d checks, want a refusal with %q, kept", call, err, *opens, c.want)
				}
			}
		})
	}
	if counter.captured == 0 {
		t.Fatalf("the failing wait came before the check captured a CUDA graph (%v)", counter.held)
	}
	for what, n := range counter.held {
		if n != 0 {
			t.Errorf("the check that failed left %d %s", n, what)
		}
	}
}

// refusedLaunches refuses every launch, as a driver refuses a kernel that
// asks for more than the GPU has, leaving the context sound; or, where
// lost is not nil, reports at the first launch a context lost to what is
// no kernel's fault (an ECC error), and at every Sync after it.
type refusedLaunches struct {
	fullDriver
	lost *bool
}

func (r refusedLaunches) Launch(k, gx, gy, block int, args []uint64) error {
	return r.refuse()
}

func (r refusedLaunches) LaunchEx(k int, cfg driver.LaunchConfig, params [][]byte) error {
	return r.refuse()
}

func (r refusedLaunches) Sync() error {
	if r.lost != nil && *r.lost {
		return errors.New("a test's uncorrectable ECC error")
	}
	return r.fullDriver.Sync()
}

func (r refusedLaunches) refuse() error {
	if r.lost != nil {
		*r.lost = true
		return errors.New("a test's uncorrectable ECC error")
	}
	return errors.New("a test's refused launch")
}

// DINOCLIP_CUDA_CHECK=warn opens an engine whose check found wrong values
// (a warning, and its description says UNCHECKED: in bf16, its GEMMs' too,
// which the copies' lie makes wrong on both paths), and still refuses one
// whose kernels cannot run (a fault, a launch refused); strictly, the
// refusal of wrong values names the setting, that of kernels that cannot
// run does not. A mistyped setting is refused before the check opens a
// device. (Each precision keeps the verdict it had under the setting it
// was checked with: the test checks afresh under each.)
func TestEngineCheckWarn(t *testing.T) {
	c := nn.Config{InputDim: 16, HiddenDim: 32, OutputDim: 16, Blocks: 1}
	for _, k := range []struct {
		name      string
		lie       func(fullDriver) fullDriver
		bf16      bool
		cannotRun bool
		desc      []string // in the description of the engine opened under warn
	}{
		{"wrong values", func(f fullDriver) fullDriver { return wrongCopies{f} }, false, false,
			[]string{"; UNCHECKED: the engine failed its check (the output: "}},
		{"wrong values, bf16", func(f fullDriver) fullDriver { return wrongCopies{f} }, true, false,
			[]string{"; UNCHECKED: the engine failed its check (the output: ", "; UNCHECKED bf16 GEMMs: they failed their check ("}},
		{"a kernel's fault", func(f fullDriver) fullDriver { return lostContext{f, new(bool)} }, false, true, nil},
		{"a launch refused", func(f fullDriver) fullDriver { return refusedLaunches{f, nil} }, false, true, nil},
	} {
		t.Run(k.name, func(t *testing.T) {
			if k.bf16 && testing.Short() {
				t.Skip("the bf16 case (its GEMMs' check twice) runs in the emulator pass without -short")
			}
			freshEngineVerdict(t)
			freshVerdict(t)
			checkWithDriver(t, k.lie)
			t.Setenv(checkEnv, "")
			err := checkEngine(k.bf16)
			if !errors.Is(err, nn.ErrFailedCheck) || strings.Contains(err.Error(), checkEnv+"=warn") == k.cannotRun {
				t.Fatalf("checked strictly: %v; want a refusal that names %s=warn only where the kernels run", err, checkEnv)
			}
			t.Setenv(checkEnv, "warn")
			freshEngineVerdict(t)
			freshVerdict(t)
			open := NewEngine
			if k.bf16 {
				open = NewBF16Engine
			}
			e, err := open(c)
			if k.cannotRun {
				if !errors.Is(err, nn.ErrFailedCheck) {
					t.Fatalf("under warn, kernels that cannot run: %v, want the refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("under warn, wrong values: %v, want the engine", err)
			}
			defer e.Close()
			for _, want := range k.desc {
				if s := e.String(); !strings.Contains(s, want) {
					t.Fatalf("the description lacks %q: %s", want, s)
				}
			}
		})
	}
	t.Run("mistyped", func(t *testing.T) {
		freshEngineVerdict(t)
		opens := checkWithDriver(t, func(f fullDriver) fullDriver { return f })
		t.Setenv(checkEnv, "1")
		_, err := NewBF16Engine(c)
		if want := checkEnv + `="1": want warn or on (or unset)`; err == nil || !strings.Contains(err.Error(), want) || *opens != 0 {
			t.Fatalf("%v after %d opens of the check, want %q before any", err, *opens, want)
		}
	})
}

// A disagreement is the check's verdict whatever closing its context
// reports after it.
func TestEngineCheckVerdictOutlivesClose(t *testing.T) {
	d, _ := openDevice(t)
	on(t, d, func() error {
		w := wrongCopies{d.drv.(fullDriver)}
		d.drv, d.tc.ext = w, w
		return nil
	})
	r, cannotRun, err := runEngineCheck(d, false)
	if err != nil || !strings.HasPrefix(r.Wrong, "the output: ") || cannotRun {
		t.Fatalf("%+v, %v", r, err)
	}
}

// wrongCopies adds 1 to the first value of every copy to the host, and
// fails to close.
type wrongCopies struct{ fullDriver }

func (w wrongCopies) ToHost(dst unsafe.Pointer, src uintptr, bytes int64) error {
	err := w.fullDriver.ToHost(dst, src, bytes)
	if bytes >= 4 {
		*(*float32)(dst) += 1
	}
	return err
}

func (w wrongCopies) Close() error {
	return errors.Join(w.fullDriver.Close(), errors.New("a test's failing close"))
}

// heldCounter counts what is held of the driver by kind (pinned buffers,
// events, graphs, graph executables) and the graphs captured, and fails
// the first WaitEvent after a capture: an error of the device, not a
// kernel's fault.
type heldCounter struct {
	fullDriver
	held     map[string]int
	captured int
	failed   bool
}

func (h *heldCounter) count(what string, n int, err error) error {
	if err == nil {
		h.held[what] += n
	}
	return err
}

func (h *heldCounter) HostAlloc(bytes int) ([]byte, error) {
	b, err := h.fullDriver.HostAlloc(bytes)
	return b, h.count("pinned buffers", 1, err)
}

func (h *heldCounter) HostFree(b []byte) error {
	return h.count("pinned buffers", -1, h.fullDriver.HostFree(b))
}

func (h *heldCounter) NewEvent() (driver.Event, error) {
	ev, err := h.fullDriver.NewEvent()
	return ev, h.count("events", 1, err)
}

func (h *heldCounter) DestroyEvent(ev driver.Event) error {
	return h.count("events", -1, h.fullDriver.DestroyEvent(ev))
}

func (h *heldCounter) EndCapture() (driver.Graph, error) {
	g, err := h.fullDriver.EndCapture()
	if err == nil {
		h.captured++
	}
	return g, h.count("graphs", 1, err)
}

func (h *heldCounter) DestroyGraph(g driver.Graph) error {
	return h.count("graphs", -1, h.fullDriver.DestroyGraph(g))
}

func (h *heldCounter) Instantiate(g driver.Graph) (driver.GraphExec, error) {
	x, err := h.fullDriver.Instantiate(g)
	return x, h.count("graph executables", 1, err)
}

func (h *heldCounter) DestroyGraphExec(x driver.GraphExec) error {
	return h.count("graph executables", -1, h.fullDriver.DestroyGraphExec(x))
}

func (h *heldCounter) WaitEvent(ev driver.Event) error {
	if h.captured > 0 && !h.failed {
		h.failed = true
		return errors.New("a test's failing wait")
	}
	return h.fullDriver.WaitEvent(ev)
}
