package train

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
)

var loopModel = nn.Config{InputDim: 6, HiddenDim: 8, OutputDim: 4, Blocks: 1}

func loopOptions() Options {
	o := DefaultOptions()
	o.Epochs, o.Batch, o.MaxLR, o.Seed, o.LogEvery, o.CheckpointEvery, o.Keep = 3, 8, 1e-2, 5, 2, 3, 1
	return o
}

// tinyEval is an evaluation set whose CLIP image embeddings are the
// training targets' function of its features, in memory.
func tinyEval(t testing.TB, data *Dataset) *retrieval.Set {
	t.Helper()
	n := 12
	rows := make([]int32, n)
	for i := range rows {
		rows[i] = int32(i)
	}
	x, y := make([]float32, n*data.InputDim), make([]float32, n*data.OutputDim)
	if err := data.ReadRows(rows, x, y); err != nil {
		t.Fatal(err)
	}
	caps := make([]int, n)
	for i := range caps {
		caps[i] = i
	}
	return &retrieval.Set{Name: "tiny", Images: n, Captions: n, FeatureDim: data.InputDim, EmbeddingDim: data.OutputDim,
		ImageFeatures: x, ImageCLIP: y, CaptionCLIP: y, CaptionImage: caps}
}

func newTrainer(t testing.TB, dataDir, runDir string, wrap func(nn.Engine) nn.Engine) *Trainer {
	t.Helper()
	data, err := OpenDataset(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { data.Close() })
	e, err := nn.NewCPUEngine[float32](loopModel)
	if err != nil {
		t.Fatal(err)
	}
	var eng nn.Engine = e
	if wrap != nil {
		eng = wrap(e)
	}
	return &Trainer{Engine: eng, Data: data, Evals: []*retrieval.Set{tinyEval(t, data)}, Options: loopOptions(), RunDir: runDir}
}

func params(t testing.TB, e nn.Engine) []float32 {
	p := make([]float32, e.Config().NumParams())
	if err := e.Parameters(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// cancelAfter cancels a context once its engine has taken n steps.
type cancelAfter struct {
	nn.Engine
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Step(s nn.AdamWStep) error {
	err := c.Engine.Step(s)
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return err
}

// metricsLines reads metrics.jsonl without the fields that depend on the
// clock.
func metricsLines(t testing.TB, runDir string) []string {
	f, err := os.Open(filepath.Join(runDir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		delete(rec, "time")
		delete(rec, "samples_per_s")
		b, _ := json.Marshal(rec)
		lines = append(lines, string(b))
	}
	return lines
}

func TestTrainingLearnsAndKeepsBest(t *testing.T) {
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	tr := newTrainer(t, dataDir, runDir, nil)
	tr.Options.Epochs = 8
	res, err := tr.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if res.State.Step != 8*12 || res.State.Epoch != 8 {
		t.Fatalf("ended at step %d epoch %d, want 96 and 8", res.State.Step, res.State.Epoch)
	}
	var first, last float64
	for _, l := range metricsLines(t, runDir) {
		var rec struct {
			Type string
			Loss float64
		}
		json.Unmarshal([]byte(l), &rec)
		if rec.Type == "train" {
			if first == 0 {
				first = rec.Loss
			}
			last = rec.Loss
		}
	}
	if !(last < 0.7*first) {
		t.Fatalf("training loss went from %v to %v: it did not learn", first, last)
	}
	best, err := os.Readlink(filepath.Join(runDir, checkpoint.BestLink))
	if err != nil {
		t.Fatal(err)
	}
	if best != res.State.Best.Checkpoint {
		t.Fatalf("best link %s, state says %s", best, res.State.Best.Checkpoint)
	}
	ck, err := checkpoint.Load(filepath.Join(runDir, checkpoint.LastLink))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ck.Params, params(t, tr.Engine)) {
		t.Fatal("the last checkpoint does not hold the final parameters")
	}
	var reports []retrieval.Report
	if err := json.Unmarshal([]byte(ck.Meta["metrics"]), &reports); err != nil || len(reports) != 1 || reports[0].Name != "tiny" {
		t.Fatalf("the epoch-end checkpoint's metrics metadata %q: %v", ck.Meta["metrics"], err)
	}
	// Step checkpoints beyond Keep are pruned: last and best, plus one.
	if cks := stepCheckpoints(runDir); len(cks) > 3 {
		t.Fatalf("%d checkpoints kept, want at most 3", len(cks))
	}
	// A second run into the same directory is refused.
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("second run into the same directory: %v", err)
	}
}

// Interrupting a run at any step and resuming it ends with the same bits as
// a run never stopped, and the same metrics.
func TestResumeIsBitIdentical(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	straightDir := t.TempDir()
	straight := newTrainer(t, dataDir, straightDir, nil)
	if _, err := straight.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	want := params(t, straight.Engine)
	// 12 steps per epoch: stop mid-epoch, on a checkpoint step, at an epoch
	// end, and twice in one run.
	for _, stops := range [][]int{{5}, {3}, {12}, {4, 17}} {
		runDir := t.TempDir()
		resume := false
		for _, n := range stops {
			ctx, cancel := context.WithCancel(context.Background())
			tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: n, cancel: cancel} })
			if _, err := tr.Run(ctx, resume); !errors.Is(err, context.Canceled) {
				t.Fatalf("stops %v: run ended with %v, want context.Canceled", stops, err)
			}
			cancel()
			resume = true
		}
		tr := newTrainer(t, dataDir, runDir, nil)
		tr.Options.Epochs = 99 // ignored: a resumed run keeps its own options
		if _, err := tr.Run(context.Background(), true); err != nil {
			t.Fatal(err)
		}
		got := params(t, tr.Engine)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("stops %v: parameter %d is %v after resuming, %v without stopping", stops, i, got[i], want[i])
			}
		}
		if a, b := metricsLines(t, runDir), metricsLines(t, straightDir); !slices.Equal(a, b) {
			t.Fatalf("stops %v: metrics differ from the uninterrupted run:\n%s\nvs\n%s", stops, strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
	}
}

func TestResumeRefusesOtherData(t *testing.T) {
	dataDir, otherDir, runDir := t.TempDir(), t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	tinyData(t, otherDir, 90, 40, loopModel.InputDim, loopModel.OutputDim, false)
	ctx, cancel := context.WithCancel(context.Background())
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 2, cancel: cancel} })
	tr.Run(ctx, false)
	_, err := newTrainer(t, otherDir, runDir, nil).Run(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "100 rows") {
		t.Fatalf("resume on other data: %v", err)
	}
	if _, err := newTrainer(t, dataDir, t.TempDir(), nil).Run(context.Background(), true); err == nil || !strings.Contains(err.Error(), "nothing to resume") {
		t.Fatalf("resume of an empty directory: %v", err)
	}
}

// blowUpAfter sets every parameter of the real engine it wraps to NaN
// after optimizer step n, as a diverging run would end up, so that the
// engine's own next forward pass finds the loss not finite.
type blowUpAfter struct {
	nn.Engine
	n  int
	to float32 // the value of every parameter after step n; NaN if 0
}

func (e *blowUpAfter) Step(s nn.AdamWStep) error {
	if err := e.Engine.Step(s); err != nil {
		return err
	}
	if s.Step == e.n {
		to := e.to
		if to == 0 {
			to = float32(math.NaN())
		}
		w := make([]float32, e.Config().NumParams())
		for i := range w {
			w[i] = to
		}
		return e.Engine.SetParameters(w)
	}
	return nil
}

// overflowOnHuge projects features of a magnitude beyond 1e30 to NaN, as
// a model of float32 arithmetic overflows on features far beyond its
// training data's scale (which random weights do not reliably show).
type overflowOnHuge struct{ nn.Engine }

func (e overflowOnHuge) Project(dst, x []float32, n int) error {
	if err := e.Engine.Project(dst, x, n); err != nil {
		return err
	}
	if slices.ContainsFunc(x, func(v float32) bool { return math.Abs(float64(v)) > 1e30 }) {
		dst[0] = float32(math.NaN())
	}
	return nil
}

// An update that blows the weights up shows in no loss before the next
// step's: the run stops as diverged where it would otherwise save them
// (the end of the last epoch, without evaluation sets; a checkpoint within
// an epoch) or evaluate them (weights finite but so large that the outputs
// overflow: the evaluation blamed the features or a damaged model), and
// its last checkpoint is the one before.
func TestDivergedBeforeTheNextLoss(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	for _, c := range []struct {
		name  string
		step  int
		to    float32
		evals bool
		want  string
	}{
		{"NaN weights after the last step, no evaluation", 36, 0, false, "step 36 diverged: it made weight 0 NaN"},
		{"NaN weights at a checkpoint within an epoch", 6, 0, false, "step 6 diverged: it made weight 0 NaN"},
		{"weights of 1e30 after the first epoch, evaluated", 12, 1e30, true, "step 12 (epoch 1, batch 12): the epoch's last update diverged: the model's output for image 0 of evaluation set"},
		{"NaN weights after the first epoch, evaluated", 12, 0, true, "step 12 (epoch 1, batch 12): the epoch's last update diverged: the model's output for image 0 of evaluation set tiny is NaN"},
	} {
		runDir := t.TempDir()
		tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &blowUpAfter{Engine: e, n: c.step, to: c.to} })
		if !c.evals {
			tr.Evals, tr.Options.BestMetric = nil, "loss"
		}
		_, err := tr.Run(context.Background(), false)
		if !errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "the run diverged; its last good checkpoint") {
			t.Errorf("%s: error %v, want the run diverged saying %q", c.name, err, c.want)
			continue
		}
		ck, err := checkpoint.Load(filepath.Join(runDir, checkpoint.LastLink))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var st State
		json.Unmarshal(ck.State, &st)
		if st.Step >= c.step {
			t.Errorf("%s: last checkpoint at step %d, want one before the divergence", c.name, st.Step)
		}
	}
	// An evaluation set of another scale overflows a sound model: its
	// features are to blame, not the training.
	tr := newTrainer(t, dataDir, t.TempDir(), func(e nn.Engine) nn.Engine { return overflowOnHuge{e} })
	tr.Evals[0].ImageFeatures[0] = 1e31
	_, err := tr.Run(context.Background(), false)
	var overflow *retrieval.OverflowError
	if !errors.As(err, &overflow) || errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), "features of another scale") {
		t.Errorf("an evaluation set of features 3e37 times its scale: error %v, want the evaluation's overflow, not a divergence", err)
	}
}

func TestNaNLossStopsAndKeepsLastGoodCheckpoint(t *testing.T) {
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &blowUpAfter{Engine: e, n: 7} })
	_, err := tr.Run(context.Background(), false)
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "step 8") {
		t.Fatalf("error %v, want a non-finite loss at step 8", err)
	}
	ck, err := checkpoint.Load(filepath.Join(runDir, checkpoint.LastLink))
	if err != nil {
		t.Fatal(err)
	}
	var st State
	json.Unmarshal(ck.State, &st)
	if st.Step != 6 {
		t.Fatalf("last checkpoint at step %d, want 6 (checkpoints every 3 steps)", st.Step)
	}
}

// float16 shards hold the float32 data rounded to 11 significant bits; the
// same run on both ends within that rounding's effect.
func TestFloat16AndFloat32ShardsTrainAlike(t *testing.T) {
	var finals [2][]float32
	for i, f16 := range []bool{false, true} {
		dataDir := t.TempDir()
		tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, f16)
		tr := newTrainer(t, dataDir, t.TempDir(), nil)
		if _, err := tr.Run(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		finals[i] = params(t, tr.Engine)
	}
	var num, den float64
	for i := range finals[0] {
		d := float64(finals[0][i] - finals[1][i])
		num += d * d
		den += float64(finals[0][i]) * float64(finals[0][i])
	}
	// float16's unit roundoff is 4.9e-4: inputs perturbed that much move
	// the trained parameters by about as much (measured: 7e-5), far less
	// than the O(1) difference of training on other data. Zero would mean
	// the float16 files were not float16.
	if rel := math.Sqrt(num / den); !(rel > 0 && rel <= 1e-3) {
		t.Fatalf("float16 and float32 training differ by %.3g (relative), want (0, 1e-3]", rel)
	} else {
		t.Logf("float16 vs float32 shards: final parameters differ by %.3g", rel)
	}
}

// A run killed with SIGKILL at arbitrary moments never leaves a checkpoint
// that does not load, leaves no lock behind that blocks the next process,
// and resumes to the same result. The first child is killed only once it
// has written a checkpoint (waiting for it, not guessing a delay), the
// others at delays from their start, some before they load anything. A
// child that fails (an error, a crash) fails the test: only a kill may end
// it early.
func TestKilledRunLeavesLoadableCheckpoints(t *testing.T) {
	if os.Getenv("DINOCLIP_TRAIN_CHILD") != "" {
		return
	}
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	last := filepath.Join(runDir, checkpoint.LastLink)
	for i, delay := range []time.Duration{30, 0, 60, 110, 170} {
		var out strings.Builder
		cmd := exec.Command(os.Args[0], "-test.run=^TestTrainChild$", "-test.v")
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = append(os.Environ(), "DINOCLIP_TRAIN_CHILD=1", "DINOCLIP_TRAIN_DATA="+dataDir, "DINOCLIP_TRAIN_RUN="+runDir, "DINOCLIP_TRAIN_RESUME="+strconv.FormatBool(i > 0))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if i == 0 {
			// Until the first checkpoint, or the child's end.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
				if _, err := os.Lstat(last); err == nil {
					break
				}
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatalf("the child wrote no checkpoint in a minute:\n%s", out.String())
				}
				if len(exited) > 0 {
					break
				}
			}
			// A second process on the running child's directory is refused.
			lock, err := LockRunDir(runDir)
			var locked *LockedError
			switch {
			case err == nil:
				lock.Release()
				// Only a child that has finished its run lets go.
				select {
				case e := <-exited:
					exited <- e
				case <-time.After(5 * time.Second):
					t.Fatalf("locked the run directory while the child (pid %d) trains in it", cmd.Process.Pid)
				}
			case !errors.As(err, &locked) || locked.Holder != "pid "+strconv.Itoa(cmd.Process.Pid):
				t.Fatalf("lock while the child (pid %d) trains: %v", cmd.Process.Pid, err)
			}
		}
		select {
		case err := <-exited:
			// It ended before the kill: it must have finished the run.
			if err != nil {
				t.Fatalf("child %d failed before it was killed: %v\n%s", i, err, out.String())
			}
		case <-time.After(delay * time.Millisecond):
			cmd.Process.Kill()
			err := <-exited
			if err == nil {
				break // it finished the run just before the kill
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child %d: %v, want it killed by SIGKILL\n%s", i, err, out.String())
			}
		}
		entries, _ := os.ReadDir(filepath.Join(runDir, CheckpointsDir))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue // a temporary directory being written when killed
			}
			if _, err := checkpoint.Load(filepath.Join(runDir, CheckpointsDir, e.Name())); err != nil {
				t.Fatalf("after child %d was killed: %v", i, err)
			}
		}
	}
	tr := newTrainer(t, dataDir, runDir, nil)
	tr.Options.CheckpointEvery = 1
	if _, err := tr.Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	straight := newTrainer(t, dataDir, t.TempDir(), nil)
	straight.Options.CheckpointEvery = 1
	if _, err := straight.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(params(t, tr.Engine), params(t, straight.Engine)) {
		t.Fatal("resumed after kills, the parameters differ from an uninterrupted run")
	}
}

// TestTrainChild is the process TestKilledRunLeavesLoadableCheckpoints kills.
// It resumes when asked to and the run has a checkpoint (an earlier child
// may have been killed before its first).
func TestTrainChild(t *testing.T) {
	if os.Getenv("DINOCLIP_TRAIN_CHILD") == "" {
		t.Skip("run by TestKilledRunLeavesLoadableCheckpoints")
	}
	tr := newTrainer(t, os.Getenv("DINOCLIP_TRAIN_DATA"), os.Getenv("DINOCLIP_TRAIN_RUN"), func(e nn.Engine) nn.Engine { return slowEngine{e} })
	tr.Options.CheckpointEvery = 1
	resume := os.Getenv("DINOCLIP_TRAIN_RESUME") == "true"
	if resume {
		if _, err := os.Lstat(filepath.Join(tr.RunDir, checkpoint.LastLink)); err != nil {
			resume = false
		}
	}
	if _, err := tr.Run(context.Background(), resume); err != nil {
		t.Fatalf("child run (resume %v): %v", resume, err)
	}
}

// slowEngine takes 5 ms a step, so that kills land at many points of a run.
type slowEngine struct{ nn.Engine }

func (e slowEngine) Step(s nn.AdamWStep) error {
	time.Sleep(5 * time.Millisecond)
	return e.Engine.Step(s)
}

// stepCounter counts the engine's optimizer steps.
type stepCounter struct {
	nn.Engine
	steps atomic.Int64 // read by the prefetcher's goroutine too
}

func (c *stepCounter) Step(s nn.AdamWStep) error { c.steps.Add(1); return c.Engine.Step(s) }

// A Ctrl-C that arrives while the loop waits for the prefetcher's next
// batch still saves a checkpoint at the last step taken: the prefetcher
// may stop without handing the batch over (it picks at random between
// that and the cancellation), which was returned as a failed step with
// nothing saved since the last periodic checkpoint. The read of the fifth
// batch waits until the loop has taken the four steps before it (it is
// then idle in next(); a fixed sleep was too short on a loaded machine)
// and cancels the run.
func TestInterruptWhileWaitingForDataSaves(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	for range 8 {
		runDir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		var counter *stepCounter
		tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { counter = &stepCounter{Engine: e}; return counter })
		reads := 0
		tr.wrapRead = func(read func(rows []int32, x, t []float32) error) func(rows []int32, x, t []float32) error {
			return func(rows []int32, x, t []float32) error {
				err := read(rows, x, t)
				if reads++; reads == 5 {
					for deadline := time.Now().Add(10 * time.Second); counter.steps.Load() < 4 && time.Now().Before(deadline); {
						time.Sleep(time.Millisecond)
					}
					time.Sleep(5 * time.Millisecond) // into next()
					cancel()
				}
				return err
			}
		}
		_, err := tr.Run(ctx, false)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run cancelled while reading: %v", err)
		}
		ck, err := checkpoint.Load(filepath.Join(runDir, checkpoint.LastLink))
		if err != nil {
			t.Fatal(err)
		}
		var st State
		if err := json.Unmarshal(ck.State, &st); err != nil {
			t.Fatal(err)
		}
		if steps := int(counter.steps.Load()); st.Step != steps || st.Step < 4 {
			t.Fatalf("interrupted after %d steps, the last checkpoint is at step %d", steps, st.Step)
		}
	}
}

// moveAfter renames the run directory from to to after its n-th step.
type moveAfter struct {
	nn.Engine
	n        int
	from, to string
}

func (m *moveAfter) Step(s nn.AdamWStep) error {
	err := m.Engine.Step(s)
	if m.n--; m.n == 0 {
		if rerr := os.Rename(m.from, m.to); rerr != nil {
			return rerr
		}
	}
	return err
}

// A run whose directory is moved while it trains stops at its next write
// saying that the directory is gone, its checkpoints with it, and how to
// go on where it is now: not that it stopped before its first checkpoint.
func TestRunDirectoryMovedWhileTraining(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	runDir := filepath.Join(t.TempDir(), "run")
	moved := filepath.Join(t.TempDir(), "moved")
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &moveAfter{Engine: e, n: 4, from: runDir, to: moved} })
	_, err := tr.Run(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "the run directory "+runDir+" is gone (moved or removed while the run trained?)") ||
		strings.Contains(err.Error(), "before its first checkpoint") {
		t.Errorf("a run whose directory was moved after 4 steps: %v", err)
	}
	if _, err := os.Stat(filepath.Join(moved, checkpoint.LastLink, checkpoint.ModelFile)); err != nil {
		t.Errorf("the moved run has no last checkpoint: %v", err)
	}
}

// slowSteps is an engine whose every forward and backward pass takes at
// least d more.
type slowSteps struct {
	nn.Engine
	d time.Duration
}

func (s *slowSteps) ForwardBackward(x, t []float32, n int) (float64, error) {
	time.Sleep(s.d)
	return s.Engine.ForwardBackward(x, t, n)
}

// The rate of a resumed run's first record is of the steps it timed, not
// of the window's rows since the record before, some of which the run
// stopped had trained: counted so, it was twice the rate.
func TestResumedRateCountsTheStepsTimed(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	runDir := t.TempDir()
	const step = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine {
		return &cancelAfter{Engine: &slowSteps{Engine: e, d: step}, n: 5, cancel: cancel}
	})
	tr.Options.LogEvery, tr.Options.CheckpointEvery, tr.Evals = 10, 0, nil
	if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("the run to stop after 5 steps: %v", err)
	}
	tr = newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &slowSteps{Engine: e, d: step} })
	tr.Evals = nil
	if _, err := tr.Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(runDir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	// At most batch/step samples a second (the steps take longer than
	// the sleep, never shorter); twice it is the rows of ten steps over
	// the time of five.
	limit := float64(tr.Options.Batch) / step.Seconds()
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			Type        string   `json:"type"`
			Step        int      `json:"step"`
			SamplesPerS *float64 `json:"samples_per_s"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Type != "train" || rec.Step != 10 {
			continue
		}
		found = true
		if rec.SamplesPerS == nil {
			t.Errorf("the resumed run's record of step 10 has no samples_per_s")
		} else if *rec.SamplesPerS > 1.25*limit {
			t.Errorf("the resumed run's record of step 10: samples_per_s %.0f, want at most %.0f", *rec.SamplesPerS, limit)
		}
	}
	if !found {
		t.Errorf("no record of step 10 in the resumed run's metrics:\n%s", b)
	}
}

// CheckpointsSaved counts what the loop saves: a checkpoint at each
// epoch's end, and one at each step checkpointsMidEpoch takes.
func TestCheckpointsSaved(t *testing.T) {
	for _, c := range []struct{ epochs, rows, batch, every int }{
		{1, 64, 16, 1}, {1, 64, 16, 2}, {3, 64, 16, 2}, {3, 70, 16, 3}, {5, 100, 7, 4}, {2, 10, 3, 5}, {4, 64, 16, 0}, {2, 10, 20, 1},
	} {
		o := DefaultOptions()
		o.Epochs, o.Batch, o.CheckpointEvery = c.epochs, c.batch, c.every
		spe, want, step := c.rows/c.batch, int64(c.epochs), 0
		for range c.epochs {
			for batch := 1; batch <= spe; batch++ {
				if step++; o.checkpointsMidEpoch(step, batch, spe) {
					want++
				}
			}
		}
		if got := o.CheckpointsSaved(c.rows); got != want {
			t.Errorf("%+v: %d checkpoints saved, want %d", c, got, want)
		}
	}
}
