package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
)

// fakeResident is an nn.ResidentEngine on the CPU, as the GPU engine
// behaves: LoadResident keeps the float16 bits (read in chunks of 7 rows,
// so that chunks straddle shards), ForwardBackwardRows converts the listed
// rows to float32 and runs ForwardBackward. It counts the calls of each
// path and can cancel a context after n steps, like cancelAfter.
type fakeResident struct {
	nn.Engine
	fits      bool // false: LoadResident fails with nn.ErrNotResident
	x, t      []uint16
	loads     int
	rowsSteps int // ForwardBackwardRows calls
	hostSteps int // ForwardBackward calls
	stopAfter int
	cancel    context.CancelFunc
}

var _ nn.ResidentEngine = (*fakeResident)(nil)

func (f *fakeResident) LoadResident(rows, batch int, read nn.Float16Reader) error {
	f.loads++
	f.x, f.t = nil, nil
	if !f.fits {
		return fmt.Errorf("%w: the fake device is full", nn.ErrNotResident)
	}
	c := f.Config()
	x, t := make([]uint16, rows*c.InputDim), make([]uint16, rows*c.OutputDim)
	for lo := 0; lo < rows; lo += 7 {
		hi := min(lo+7, rows)
		if err := read(lo, hi, x[lo*c.InputDim:hi*c.InputDim], t[lo*c.OutputDim:hi*c.OutputDim]); err != nil {
			return err
		}
	}
	f.x, f.t = x, t
	return nil
}

func (f *fakeResident) ForwardBackwardRows(rows []int32) (float64, error) {
	if f.x == nil {
		return 0, errors.New("no resident data")
	}
	f.rowsSteps++
	c := f.Config()
	in, out := c.InputDim, c.OutputDim
	x, t := make([]float32, len(rows)*in), make([]float32, len(rows)*out)
	for i, r := range rows {
		for j := range in {
			x[i*in+j] = npy.Float16Value(f.x[int(r)*in+j])
		}
		for j := range out {
			t[i*out+j] = npy.Float16Value(f.t[int(r)*out+j])
		}
	}
	return f.Engine.ForwardBackward(x, t, len(rows))
}

func (f *fakeResident) ForwardBackward(x, t []float32, n int) (float64, error) {
	f.hostSteps++
	return f.Engine.ForwardBackward(x, t, n)
}

func (f *fakeResident) Step(s nn.AdamWStep) error {
	err := f.Engine.Step(s)
	if f.stopAfter--; f.stopAfter == 0 {
		f.cancel()
	}
	return err
}

// residentTrainer is newTrainer on a fakeResident (returned too) that fits
// or not, logging into log when it is not nil.
func residentTrainer(t *testing.T, dataDir, runDir string, fits bool, log *bytes.Buffer) (*Trainer, *fakeResident) {
	t.Helper()
	var f *fakeResident
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine {
		f = &fakeResident{Engine: e, fits: fits}
		return f
	})
	if log != nil {
		tr.Log = slog.New(slog.NewTextHandler(log, nil))
	}
	return tr, f
}

func sameParams(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: parameter %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

func checkpointState(t *testing.T, runDir string) State {
	t.Helper()
	ck, err := checkpoint.Load(filepath.Join(runDir, checkpoint.LastLink))
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(ck.State, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// Resident training takes every batch by row index and trains on the data
// rounded to float16: on float16 shards it is the host run bit for bit,
// and on float32 shards it is the host run on a float16 copy of them.
func TestResidentTrainsOnFloat16Values(t *testing.T) {
	f16Dir, f32Dir := t.TempDir(), t.TempDir()
	tinyData(t, f16Dir, 100, 40, loopModel.InputDim, loopModel.OutputDim, true)
	tinyData(t, f32Dir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)

	hostDir := t.TempDir()
	host := newTrainer(t, f16Dir, hostDir, nil)
	if _, err := host.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	want := params(t, host.Engine)
	host32 := newTrainer(t, f32Dir, t.TempDir(), nil)
	if _, err := host32.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}

	for _, dir := range []string{f16Dir, f32Dir} {
		runDir := t.TempDir()
		var log bytes.Buffer
		tr, f := residentTrainer(t, dir, runDir, true, &log)
		res, err := tr.Run(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(dir)
		if f.loads != 1 || f.rowsSteps != res.State.Step || f.hostSteps != 0 || res.State.Step != 36 {
			t.Fatalf("%s: %d loads, %d resident and %d host steps of %d, want 1 load and every step resident",
				name, f.loads, f.rowsSteps, f.hostSteps, res.State.Step)
		}
		sameParams(t, "resident vs host batches of the float16 data", params(t, tr.Engine), want)
		if a, b := metricsLines(t, runDir), metricsLines(t, hostDir); !slices.Equal(a, b) {
			t.Fatalf("metrics differ from the host run:\n%s\nvs\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
		if !res.State.Float16 || !checkpointState(t, runDir).Float16 {
			t.Error("the state does not record that the run trains on float16 values")
		}
		b, err := os.ReadFile(filepath.Join(runDir, RunFile))
		if err != nil || !strings.Contains(string(b), `"float16": true`) {
			t.Errorf("run.json does not record float16: %s %v", b, err)
		}
		if !strings.Contains(log.String(), "training data resident on the device as float16") {
			t.Errorf("log: %s", log.String())
		}
	}
	if slices.Equal(params(t, host32.Engine), want) {
		t.Fatal("float32 shards trained from the host equal the float16 run: they were not float32")
	}
}

// A resident run stopped anywhere and resumed ends with the bits of a run
// never stopped: resident again, from host batches rounded to float16 when
// the data no longer fits, or on an engine that holds no data. A run that
// started on the host's float32 values stays on them.
func TestResidentResumeIsBitIdentical(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false) // float32: rounding matters
	straightDir := t.TempDir()
	straight, _ := residentTrainer(t, dataDir, straightDir, true, nil)
	if _, err := straight.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	want := params(t, straight.Engine)

	type resume int
	const (
		resident resume = iota // the data fits again
		full                   // LoadResident fails: rounded host batches
		plain                  // the CPU engine: rounded host batches
	)
	for _, tc := range []struct {
		stops  []int
		resume resume
	}{{[]int{5}, resident}, {[]int{12}, resident}, {[]int{4, 17}, resident}, {[]int{5}, full}, {[]int{3, 20}, plain}} {
		runDir := t.TempDir()
		again := false
		for _, n := range tc.stops {
			ctx, cancel := context.WithCancel(context.Background())
			tr, f := residentTrainer(t, dataDir, runDir, true, nil)
			f.stopAfter, f.cancel = n, cancel
			if _, err := tr.Run(ctx, again); !errors.Is(err, context.Canceled) {
				t.Fatalf("stops %v: run ended with %v, want context.Canceled", tc.stops, err)
			}
			cancel()
			again = true
		}
		if !checkpointState(t, runDir).Float16 {
			t.Fatalf("stops %v: the interrupted run's state does not record float16", tc.stops)
		}
		var log bytes.Buffer
		var tr *Trainer
		var f *fakeResident
		switch tc.resume {
		case resident, full:
			tr, f = residentTrainer(t, dataDir, runDir, tc.resume == resident, &log)
		case plain:
			tr = newTrainer(t, dataDir, runDir, nil)
			tr.Log = slog.New(slog.NewTextHandler(&log, nil))
		}
		res, err := tr.Run(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("stops %v, resumed %d", tc.stops, tc.resume)
		sameParams(t, what, params(t, tr.Engine), want)
		if a, b := metricsLines(t, runDir), metricsLines(t, straightDir); !slices.Equal(a, b) {
			t.Fatalf("%s: metrics differ from the uninterrupted run:\n%s\nvs\n%s", what, strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
		if !res.State.Float16 {
			t.Errorf("%s: the final state lost float16", what)
		}
		switch tc.resume {
		case resident:
			if f.hostSteps != 0 || f.rowsSteps == 0 {
				t.Errorf("%s: %d host and %d resident steps after resuming", what, f.hostSteps, f.rowsSteps)
			}
		case full:
			if f.rowsSteps != 0 || f.hostSteps == 0 || !strings.Contains(log.String(), "rounded to float16 as the run started") {
				t.Errorf("%s: %d host and %d resident steps after resuming; log %s", what, f.hostSteps, f.rowsSteps, log.String())
			}
		case plain:
			if !strings.Contains(log.String(), "rounded to float16 as the run started") {
				t.Errorf("%s: log %s", what, log.String())
			}
		}
	}

	// Started on the host (the data did not fit), resumed where it fits:
	// it stays on the float32 values it started with.
	hostDir := t.TempDir()
	host := newTrainer(t, dataDir, hostDir, nil)
	if _, err := host.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tr, f := residentTrainer(t, dataDir, runDir, false, nil)
	f.stopAfter, f.cancel = 7, cancel
	if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	cancel()
	var log bytes.Buffer
	tr, f = residentTrainer(t, dataDir, runDir, true, &log)
	res, err := tr.Run(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if f.loads != 0 || f.rowsSteps != 0 || res.State.Float16 || !strings.Contains(log.String(), "stays on the host") {
		t.Errorf("a run started on float32 host batches: %d loads, %d resident steps after resuming, float16 %v; log %s",
			f.loads, f.rowsSteps, res.State.Float16, log.String())
	}
	sameParams(t, "started on the host, resumed where the data fits", params(t, tr.Engine), params(t, host.Engine))
}

// Data that does not fit trains from host batches (the log says why), as
// does Resident "off"; a bad value of the option is refused.
func TestResidentFallbackAndOff(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	host := newTrainer(t, dataDir, t.TempDir(), nil)
	if _, err := host.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	want := params(t, host.Engine)

	var log bytes.Buffer
	tr, f := residentTrainer(t, dataDir, t.TempDir(), false, &log)
	res, err := tr.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if f.loads != 1 || f.rowsSteps != 0 || f.hostSteps != 36 || res.State.Float16 {
		t.Errorf("not fitting: %d loads, %d resident and %d host steps, float16 %v", f.loads, f.rowsSteps, f.hostSteps, res.State.Float16)
	}
	if !strings.Contains(log.String(), "not resident") || !strings.Contains(log.String(), "the fake device is full") {
		t.Errorf("the log does not say why the data is not resident: %s", log.String())
	}
	sameParams(t, "fallback", params(t, tr.Engine), want)

	tr, f = residentTrainer(t, dataDir, t.TempDir(), true, nil)
	tr.Options.Resident = ResidentOff
	if _, err := tr.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if f.loads != 0 || f.rowsSteps != 0 {
		t.Errorf("resident off: %d loads, %d resident steps", f.loads, f.rowsSteps)
	}
	sameParams(t, "resident off", params(t, tr.Engine), want)

	tr, _ = residentTrainer(t, dataDir, t.TempDir(), true, nil)
	tr.Options.Resident = "sometimes"
	if _, err := tr.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), `resident "sometimes"`) {
		t.Errorf("resident \"sometimes\": %v", err)
	}
}

// A value float16 cannot hold keeps the data on the host (and trains on
// it there); a NaN stops the run before its first step, naming the file.
func TestResidentDataErrors(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	path := filepath.Join(dataDir, "shard-b"+FeatureSuffix)
	x, shape, err := npy.ReadFloat32(path)
	if err != nil {
		t.Fatal(err)
	}
	x[3*loopModel.InputDim+2] = 1e5
	if err := npy.WriteFloat32(path, shape, x); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	tr, f := residentTrainer(t, dataDir, t.TempDir(), true, &log)
	if _, err := tr.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if f.rowsSteps != 0 || f.hostSteps != 36 || !strings.Contains(log.String(), "shard-b.dino.npy: row 3, column 2 is 100000, beyond float16") {
		t.Errorf("a value beyond float16: %d resident, %d host steps; log %s", f.rowsSteps, f.hostSteps, log.String())
	}

	x[3*loopModel.InputDim+2] = float32(math.NaN())
	if err := npy.WriteFloat32(path, shape, x); err != nil {
		t.Fatal(err)
	}
	tr, f = residentTrainer(t, dataDir, t.TempDir(), true, nil)
	_, err = tr.Run(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "shard-b.dino.npy: row 3, column 2 is NaN") || f.rowsSteps+f.hostSteps != 0 {
		t.Errorf("NaN in the data: %v after %d steps", err, f.rowsSteps+f.hostSteps)
	}
}

// topKEngine is an engine with its own top-k, as the GPU engine has: it
// counts its calls and fails when told to.
type topKEngine struct {
	nn.Engine
	calls int
	fail  bool
}

func (e *topKEngine) TopK(q, keys []float32, nq, nk, dim, k int) ([]int32, []float32, error) {
	e.calls++
	if e.fail {
		return nil, nil, errors.New("out of GPU memory: top-k")
	}
	return retrieval.TopK(q, keys, nq, nk, dim, k)
}

// Evaluation ranks with the engine's own top-k when it has one, and with
// the CPU's when that fails; the reports are the same.
func TestEvaluationUsesTheEnginesTopK(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	plain := newTrainer(t, dataDir, t.TempDir(), nil)
	want, err := plain.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, fail := range []bool{false, true} {
		var e *topKEngine
		var log bytes.Buffer
		tr := newTrainer(t, dataDir, t.TempDir(), func(inner nn.Engine) nn.Engine { e = &topKEngine{Engine: inner, fail: fail}; return e })
		tr.Log = slog.New(slog.NewTextHandler(&log, nil))
		res, err := tr.Run(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if e.calls != 2*3 { // both directions, 3 epochs, one set
			t.Errorf("failing %v: the engine's top-k ran %d times, want 6", fail, e.calls)
		}
		if fail != strings.Contains(log.String(), "ranking on the CPU") {
			t.Errorf("failing %v: log %s", fail, log.String())
		}
		if !reflect.DeepEqual(res.Reports, want.Reports) {
			t.Errorf("failing %v: reports %+v, want %+v", fail, res.Reports, want.Reports)
		}
	}
}
