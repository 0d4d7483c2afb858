package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/flock/flocktest"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/safetensors"
)

// stoppedRun trains loopOptions on 100 rows (12 steps per epoch) and stops
// after n steps, leaving a run to resume.
func stoppedRun(t *testing.T, n int) (dataDir, runDir string) {
	t.Helper()
	dataDir, runDir = t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: n, cancel: cancel} })
	if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("run stopped after %d steps: %v", n, err)
	}
	return dataDir, runDir
}

// tamperState rewrites the trainer state in the last checkpoint's
// optimizer.safetensors through edit, as a hostile or careless hand would.
func tamperState(t *testing.T, runDir string, edit func(map[string]any)) {
	t.Helper()
	dir := filepath.Join(runDir, checkpoint.LastLink)
	ck, err := checkpoint.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(ck.State, &st); err != nil {
		t.Fatal(err)
	}
	edit(st)
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	n := len(ck.M)
	if err := safetensors.Write(filepath.Join(dir, checkpoint.OptimizerFile), []safetensors.Tensor{
		safetensors.NewFloat32("exp_avg", []int{n}, ck.M),
		safetensors.NewFloat32("exp_avg_sq", []int{n}, ck.V),
	}, map[string]string{"format": checkpoint.OptimizerFormat, "state": string(b)}); err != nil {
		t.Fatal(err)
	}
}

// A trainer state that does not fit its run is refused on resume with an
// error naming what is wrong, never a panic and never a silent resume (an
// epoch -1 used to panic in Order.BatchRows; a step of 10^12 ran the
// schedule past its end; batch 999 skipped the rest of an epoch).
func TestResumeRefusesTamperedState(t *testing.T) {
	set := func(path string, v any) func(map[string]any) {
		return func(st map[string]any) {
			keys := strings.Split(path, ".")
			m := st
			for _, k := range keys[:len(keys)-1] {
				m = m[k].(map[string]any)
			}
			m[keys[len(keys)-1]] = v
		}
	}
	cases := []struct {
		name  string
		stop  int // steps before the stop: 5 is mid-epoch 0, 17 mid-epoch 1
		edit  func(map[string]any)
		wants string
	}{
		{"epoch -1", 5, set("epoch", -1), "epoch -1 is outside"},
		{"epoch past the run", 5, set("epoch", 7), "epoch 7 is outside"},
		{"step 1e12", 5, set("step", 1e12), "step 1000000000000"},
		{"step behind the position", 17, set("step", 3), "step 3"},
		{"batch 999", 5, set("batch", 999), "batch 999"},
		{"batch -1", 5, set("batch", -1), "batch -1"},
		{"other epochs", 5, set("options.epochs", 30), "epochs 30 in the checkpoint"},
		{"other batch size", 5, set("options.batch", 0), "batch 0"},
		{"longer schedule", 5, set("schedule.total_steps", 1e6), "schedule"},
		{"other data", 5, set("data.rows", 50), "50 rows"},
		{"window sum", 5, set("window.rows", -8), "window"},
		{"negative epoch loss", 5, set("epoch_loss.sum", -1), "epoch_loss"},
		{"huge window loss", 5, set("window.sum", 1e308), "window loss sum"},
		{"epoch loss beyond the bound", 5, set("epoch_loss.sum", 4.1*40), "within [0, 4]"},
		{"no best after an epoch", 17, set("best", nil), "no best checkpoint"},
		{"best by another metric", 17, set("best.metric", "loss"), `"loss"`},
		{"best from the future", 17, set("best.step", 24), "step 24"},
		{"best elsewhere", 17, set("best.checkpoint", "../../etc"), "../../etc"},
		{"not json", 5, func(st map[string]any) { clear(st); st["step"] = "x" }, "trainer state"},
		// Stopped at step 12, in the evaluation of the first epoch end.
		{"evaluation pending mid-epoch", 17, set("pending_eval", map[string]any{"epoch_loss": map[string]any{"sum": 0, "rows": 96}}), "not at an epoch end"},
		{"pending evaluation of a shorter epoch", 12, set("pending_eval.epoch_loss.rows", 8), "pending evaluation's epoch_loss"},
		{"best before the first evaluation", 12, set("best", map[string]any{"metric": "r5", "value": 50, "step": 12, "epoch": 1, "checkpoint": checkpointName(12)}), "before the first epoch's evaluation"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dataDir, runDir := stoppedRun(t, c.stop)
			tamperState(t, runDir, c.edit)
			tr := newTrainer(t, dataDir, runDir, nil)
			_, err := tr.Run(context.Background(), true)
			if err == nil || !strings.Contains(err.Error(), c.wants) {
				t.Fatalf("resume of a state with %s: error %v, want one containing %q", c.name, err, c.wants)
			}
		})
	}
	// The untouched state resumes.
	dataDir, runDir := stoppedRun(t, 17)
	tamperState(t, runDir, func(map[string]any) {})
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
		t.Fatalf("resume of an untouched state: %v", err)
	}
}

// A run.json whose options are not its last checkpoint's is refused as
// edited, before anything is taken from it: edited to fp64 or to keep a
// moving average, it asked for files no checkpoint of the run holds, and
// the run was called broken beyond repair (remove it), its last link
// there, pending (a kill before the run linked its first checkpoint; it is
// left pending) or gone.
func TestResumeRefusesEditedRunFile(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(*Options)
		wants string
	}{
		{"fp64", func(o *Options) { o.Precision = PrecisionFP64 }, "precision fp32 in the checkpoint, fp64 in run.json"},
		{"a moving average", func(o *Options) { o.EMA = 0.9 }, "ema unset in the checkpoint, 0.9 in run.json"},
		{"more epochs", func(o *Options) { o.Epochs++ }, "epochs 3 in the checkpoint, 4 in run.json"},
	} {
		for _, link := range []string{"there", "pending", "gone"} {
			t.Run(fmt.Sprintf("%s, last link %s", c.name, link), func(t *testing.T) {
				dataDir, runDir := stoppedRun(t, 5)
				info, err := ReadRunInfo(runDir)
				if err != nil {
					t.Fatal(err)
				}
				c.edit(&info.Options)
				if err := writeJSON(filepath.Join(runDir, RunFile), info); err != nil {
					t.Fatal(err)
				}
				switch link {
				case "pending":
					os.Remove(filepath.Join(runDir, checkpoint.BestLink)) // (step 5 is no epoch end: no best yet)
					if err := os.Rename(filepath.Join(runDir, checkpoint.LastLink), filepath.Join(runDir, checkpoint.NewLinkName(checkpoint.LastLink))); err != nil {
						t.Fatal(err)
					}
				case "gone": // (its advice to link the newest would end in this refusal)
					if err := os.Remove(filepath.Join(runDir, checkpoint.LastLink)); err != nil {
						t.Fatal(err)
					}
				}
				errs := map[string]error{"CheckResumable": CheckResumable(runDir)}
				errs["the resume"] = runErr(newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true))
				for what, err := range errs {
					if err == nil || !strings.Contains(err.Error(), c.wants) || !strings.Contains(err.Error(), "was edited") || strings.Contains(err.Error(), "remove") {
						t.Errorf("%s of a run whose run.json was edited to %s: %v, want %q, and no advice to remove it", what, c.name, err, c.wants)
					}
				}
				if link == "pending" && PendingLastLink(runDir) == "" {
					t.Errorf("the refused resume linked the pending checkpoint")
				}
			})
		}
	}
}

// A new run refused for its directory or its options is refused before
// CLIP's own recall, which takes seconds on a large set (here it would
// fail: the set's caption-image map is cut).
func TestNewRunRefusedBeforeCLIPRecall(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	for _, c := range []struct {
		name, dir string
		edit      func(*Options)
		want      string
	}{
		{"a run's directory", runDir, func(*Options) {}, "already holds a run"},
		{"options", t.TempDir(), func(o *Options) { o.EMA, o.BestFrom, o.BestMetric = 0.9, BestFromEMA, "loss" }, `not "loss"`},
	} {
		tr := newTrainer(t, dataDir, c.dir, nil)
		tr.Evals[0].CaptionImage = nil
		c.edit(&tr.Options)
		if _, err := tr.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("a new run refused for %s: %v, want %q", c.name, err, c.want)
		}
	}
}

// runErr is the error of a call that returns a value and an error.
func runErr[T any](_ T, err error) error { return err }

// Counts that multiply are checked: an epoch count whose steps overflow an
// int is refused instead of wrapping to a short run that cycles the
// learning rate forever.
func TestStepsOverflow(t *testing.T) {
	if spe, total, err := Steps(3, 100, 8); err != nil || spe != 12 || total != 36 {
		t.Fatalf("Steps(3, 100, 8) = %d, %d, %v; want 12, 36", spe, total, err)
	}
	for _, c := range []struct{ epochs, rows, batch int }{
		{2305843009213693953, 64, 16}, {math.MaxInt, 2, 1}, {math.MaxInt/100 + 1, 100, 100},
	} {
		if _, total, err := Steps(c.epochs, c.rows, c.batch); err == nil {
			t.Errorf("Steps(%d, %d, %d): no error, %d steps", c.epochs, c.rows, c.batch, total)
		}
	}
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	runDir := t.TempDir()
	tr := newTrainer(t, dataDir, runDir, nil)
	tr.Options.Epochs = 2305843009213693953
	if _, err := tr.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "2305843009213693953 epochs") {
		t.Fatalf("a run of 2305843009213693953 epochs: %v", err)
	}
}

// A run directory is locked while a run works on it: a second lock (a
// second process, or a second open file in this one: flock locks belong to
// open files) gets a clear error naming the holder; once released, the
// directory can be locked again.
func TestRunDirLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	first, err := LockRunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockRunDir(dir)
	var locked *LockedError
	want := "run " + dir + " is locked by another process (pid " + strconv.Itoa(os.Getpid()) + ")"
	if !errors.As(err, &locked) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second lock: error %v, want a LockedError containing %q", err, want)
	}
	// A trainer on the locked directory refuses before touching it.
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	for _, resume := range []bool{false, true} {
		if _, err := newTrainer(t, dataDir, dir, nil).Run(context.Background(), resume); !errors.As(err, &locked) {
			t.Fatalf("run (resume %v) on a locked directory: %v", resume, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the refused runs wrote into the locked directory: %d entries", len(entries))
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := LockRunDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	// The lock file removed while its trainer holds it (taken for a
	// stale one): the next trainer is refused all the same, where the
	// system locks directories.
	if runtime.GOOS != "windows" {
		if err := os.Remove(filepath.Join(dir, LockFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := LockRunDir(dir); !errors.As(err, &locked) || !strings.Contains(err.Error(), "lock file was removed") {
			t.Fatalf("lock after the holder's lock file was removed: %v, want a LockedError", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, LockFile)); err == nil {
			t.Error("the refused lock made a lock file nobody holds")
		}
		// info and a resume see the run training all the same.
		if holder, held := TrainingNow(dir); !held || !strings.Contains(holder, "lock file was removed") {
			t.Errorf("TrainingNow with the holder's lock file removed: %q, %v; want held", holder, held)
		}
	}
	again.Release()
	if err := os.WriteFile(filepath.Join(dir, LockFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// A reader looking whether the run trains (checkUnlocked, as info and
	// eval do) holds a shared lock for an instant: a trainer starting then
	// waits it out rather than being refused.
	flocktest.Hold(t, filepath.Join(dir, LockFile), false, 10*time.Millisecond)
	during, err := LockRunDir(dir)
	if err != nil {
		t.Fatalf("lock while a reader looks: %v", err)
	}
	during.Release()
}

// run.json holds what a resume needs (model, data and evaluation sets,
// options) and, after a run, where it ended: its last step and best
// checkpoint.
func TestRunInfoAfterRun(t *testing.T) {
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	tr := newTrainer(t, dataDir, runDir, nil)
	res, err := tr.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ReadRunInfo(runDir)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dataDir)
	switch {
	case info.Model != loopModel || info.DataDir != abs:
		t.Errorf("run.json: model %v, data %q; want %v, %q", info.Model, info.DataDir, loopModel, abs)
	case len(info.Evals) != 1 || info.Evals[0].Name != "tiny":
		t.Errorf("run.json: evaluation sets %+v, want the one named tiny", info.Evals)
	case info.Options != tr.Options:
		t.Errorf("run.json: options %+v, want %+v", info.Options, tr.Options)
	case info.Step != 36 || info.Epoch != 3 || info.Step != res.State.Step:
		t.Errorf("run.json: step %d, epoch %d; want 36 and 3", info.Step, info.Epoch)
	case info.Best == nil || *info.Best != *res.State.Best || info.Best.Metric != "r5":
		t.Errorf("run.json: best %+v, want %+v", info.Best, res.State.Best)
	}
}

// A diverged run's error names only checkpoints that exist, and its advice
// works: before the first checkpoint, a new run into the same directory.
func TestDivergedRunAdvice(t *testing.T) {
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &blowUpAfter{Engine: e, n: 1} })
	_, err := tr.Run(context.Background(), false)
	if !errors.Is(err, ErrNonFinite) || strings.Contains(err.Error(), checkpoint.LastLink) || !strings.Contains(err.Error(), "same --out will do") {
		t.Fatalf("divergence before the first checkpoint: %v", err)
	}
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), false); err != nil {
		t.Fatalf("following the advice (a new run into %s): %v", runDir, err)
	}
}

// A loss that is not finite at the very first step is no matter of the
// optimizer's settings: the advice points at the data.
func TestNonFiniteFirstStepAdvice(t *testing.T) {
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return nonFiniteLoss{e} })
	_, err := tr.Run(context.Background(), false)
	if !errors.Is(err, ErrNonFinite) || !strings.HasPrefix(err.Error(), "step 1 ") || !strings.Contains(err.Error(), "before any update") ||
		strings.Contains(err.Error(), "--lr") || !strings.Contains(err.Error(), "holds no checkpoint") {
		t.Fatalf("a loss not finite at step 1: %v", err)
	}
	// A run stopped as it started (its checkpoint of step 0), resumed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr = newTrainer(t, dataDir, runDir, nil)
	tr.Log = slog.New(cancelOnMessage{"training", cancel})
	if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("a run stopped as it starts: %v", err)
	}
	tr = newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return nonFiniteLoss{e} })
	if _, err = tr.Run(context.Background(), true); !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "another --out") || strings.Contains(err.Error(), "holds no checkpoint") {
		t.Fatalf("a loss not finite at step 1 of a run with a step-0 checkpoint: %v", err)
	}
}

// cancelOnMessage is a log handler that calls cancel at a record with the
// message msg: a stop requested at that moment of a run.
type cancelOnMessage struct {
	msg    string
	cancel context.CancelFunc
}

func (h cancelOnMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h cancelOnMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.cancel()
	}
	return nil
}
func (h cancelOnMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h cancelOnMessage) WithGroup(string) slog.Handler      { return h }

// nonFiniteLoss is an engine whose every loss is infinite.
type nonFiniteLoss struct{ nn.Engine }

func (e nonFiniteLoss) ForwardBackward(x, t []float32, n int) (float64, error) {
	if _, err := e.Engine.ForwardBackward(x, t, n); err != nil {
		return 0, err
	}
	return math.Inf(1), nil
}

// A run whose run.json was deleted can be neither resumed (a resume reads
// the run's inputs from it) nor trained into anew; both say so and give
// the way to start a new run from its weights.
func TestRunWithoutRunFile(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	if err := os.Remove(filepath.Join(runDir, RunFile)); err != nil {
		t.Fatal(err)
	}
	advice := func(ck string) string {
		return "holds a run's checkpoints but no run.json (deleted?), which a resume reads: it can be neither resumed nor trained into; put run.json back, or start a new run from the weights of its newest whole checkpoint (dinoclip train --init " + filepath.Join(runDir, ck) + " "
	}
	check := func(what, want string) {
		t.Helper()
		for _, resume := range []bool{true, false} {
			_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), resume)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("resume %v of a run without its run.json, %s: %v; want %q", resume, what, err, want)
			}
		}
	}
	check("its last checkpoint linked", advice(checkpointName(5)))
	// Killed while relinking its last (only the new link's temporary left).
	last := filepath.Join(runDir, checkpoint.LastLink)
	if err := os.Rename(last, filepath.Join(runDir, checkpoint.NewLinkName(checkpoint.LastLink))); err != nil {
		t.Fatal(err)
	}
	check("its last link being replaced", advice(checkpointName(5)))
	// Its newest checkpoint gone: the advice names the one left, not a link
	// leading nowhere.
	if err := os.RemoveAll(filepath.Join(runDir, checkpointName(5))); err != nil {
		t.Fatal(err)
	}
	check("its newest checkpoint gone", advice(checkpointName(3)))
	for _, c := range stepCheckpoints(runDir) {
		os.Remove(filepath.Join(runDir, c.name, checkpoint.OptimizerFile))
	}
	check("no checkpoint whole", "and none of its checkpoints is whole; remove "+runDir)
}

// A metrics log that lost records up to the checkpoint a run resumes from
// (cut inside an early record, whose fragment names no step; emptied;
// removed) is said so on resume, from the count the checkpoint recorded;
// one that holds as many records, but not those (one lost and another
// doubled, a digit changed), from their digest; an intact one, cut only
// after the checkpoint as a kill cuts it, or with its clock's fields
// changed (as a resumed run's are), is not. A record lost in a line
// dropped with a warning of its own, which names a step kept (cut off
// after its step, garbled after it), is warned of once, by that warning; a
// record lost besides lines that name no step (a note written in, a line
// of zeros: they may have held none, or one past the checkpoint) is
// warned of too, and a blank line is no damage.
func TestResumeWarnsOfLostMetricsRecords(t *testing.T) {
	const fewer, edited = "the metrics log holds fewer records up to the checkpoint resumed from", "are not those it held when the checkpoint was saved"
	const dropped = "the record is lost|the records they held are lost"
	for _, damage := range []string{"none", "clock", "cut", "emptied", "removed", "doubled", "digit", "cut after its step",
		"garbled", "zeroed", "the last kept zeroed", "lost, and a zeroed line after", "lost, and a note written in",
		"lost, and a blank line", "a blank line", "damaged past the checkpoint", "damaged at the checkpoint, its type gone"} {
		t.Run(damage, func(t *testing.T) {
			dataDir, runDir := stoppedRun(t, 5)
			st := checkpointState(t, runDir)
			path := filepath.Join(runDir, MetricsFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if records := bytes.Count(b, []byte("\n")); st.LogRecords < 2 || records < st.LogRecords {
				t.Fatalf("the checkpoint of step 5 records %d log records, the log holds %d", st.LogRecords, records)
			}
			lines := bytes.SplitAfter(b, []byte("\n"))
			switch damage {
			case "none":
				err = os.WriteFile(path, append(b, `{"type":"train","lo`...), 0o644) // (a kill's torn last line)
			case "clock":
				b = regexp.MustCompile(`"time":"[^"]*"`).ReplaceAll(b, []byte(`"time":"2001-01-01T00:00:00Z"`))
				err = os.WriteFile(path, regexp.MustCompile(`"samples_per_s":[^,}]*,`).ReplaceAll(b, nil), 0o644)
			case "doubled":
				lines[1] = lines[0]
				err = os.WriteFile(path, bytes.Join(lines, nil), 0o644)
			case "digit":
				loss := regexp.MustCompile(`"loss":[0-9.]*[0-9]`).FindIndex(b)
				if loss == nil {
					t.Fatalf("no loss in the log:\n%s", b)
				}
				b[loss[1]-1] = "1234567890"[b[loss[1]-1]-'0']
				err = os.WriteFile(path, b, 0o644)
			case "cut":
				err = os.WriteFile(path, b[:bytes.IndexByte(b, '\n')+8], 0o644)
			case "cut after its step":
				step := regexp.MustCompile(`"step":\d+,`).FindIndex(lines[1])
				if step == nil {
					t.Fatalf("no step in the log's second line %s", lines[1])
				}
				err = os.WriteFile(path, append(lines[0], lines[1][:step[1]]...), 0o644)
			case "garbled":
				step := regexp.MustCompile(`"step":\d+,`).FindIndex(lines[0])
				if step == nil {
					t.Fatalf("no step in the log's first line %s", lines[0])
				}
				lines[0] = append(lines[0][:step[1]:step[1]], "\x00\x00\x00\n"...)
				err = os.WriteFile(path, bytes.Join(lines, nil), 0o644)
			case "zeroed":
				lines[0] = []byte("\x00\x00\x00\n")
				err = os.WriteFile(path, bytes.Join(lines, nil), 0o644)
			case "the last kept zeroed":
				lines[st.LogRecords-1] = []byte("\x00\x00\x00\n")
				err = os.WriteFile(path, bytes.Join(lines, nil), 0o644)
			case "lost, and a zeroed line after":
				err = os.WriteFile(path, append(bytes.Join(lines[1:], nil), "\x00\x00\x00\n"...), 0o644)
			case "lost, and a note written in":
				err = os.WriteFile(path, append([]byte("# resumed with a lower lr\n"), bytes.Join(lines[1:], nil)...), 0o644)
			case "lost, and a blank line":
				err = os.WriteFile(path, append(bytes.Join(lines[1:], nil), "\n"...), 0o644)
			case "a blank line":
				err = os.WriteFile(path, append([]byte("\n"), b...), 0o644)
			case "damaged past the checkpoint", "damaged at the checkpoint, its type gone":
				// Records of a later step (a run killed after it wrote them),
				// the first damaged, the second whole: the resume writes
				// both again, and nothing is lost. At the checkpoint's own
				// step, the damaged one held a record the resume keeps.
				at := map[bool]int{true: st.Step + 1, false: st.Step}[damage == "damaged past the checkpoint"]
				damaged := fmt.Sprintf(`{"step":%d,"lo`+"\x00\x00\n", at)
				later := fmt.Sprintf(`{"step":%d,"type":"train","loss":1}`+"\n", st.Step+2)
				err = os.WriteFile(path, append(bytes.Join(lines[:st.LogRecords], nil), damaged+later...), 0o644)
			case "emptied":
				err = os.WriteFile(path, nil, 0o644)
			case "removed":
				err = os.Remove(path)
			}
			if err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			tr := newTrainer(t, dataDir, runDir, nil)
			tr.Log = slog.New(slog.NewTextHandler(&log, nil))
			if _, err := tr.Run(context.Background(), true); err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{"cut": {fewer}, "emptied": {fewer}, "removed": {fewer}, "doubled": {edited},
				"digit": {edited}, "cut after its step": {dropped}, "garbled": {dropped}, "zeroed": {dropped, fewer},
				"the last kept zeroed": {dropped, fewer}, "lost, and a zeroed line after": {dropped, fewer},
				"lost, and a note written in": {dropped, fewer}, "lost, and a blank line": {fewer},
				"damaged at the checkpoint, its type gone": {dropped}}[damage]
			for _, warning := range []string{fewer, edited, dropped} {
				if warned := regexp.MustCompile(warning).MatchString(log.String()); warned != slices.Contains(want, warning) {
					t.Errorf("metrics log %s: warned %v of %q:\n%s", damage, warned, warning, log.String())
				}
			}
			if slices.Contains(want, fewer) && !strings.Contains(log.String(), fmt.Sprintf("recorded=%d", st.LogRecords)) {
				t.Errorf("the warning does not give the %d records recorded:\n%s", st.LogRecords, log.String())
			}
		})
	}
}

// A run whose last checkpoint is damaged (a digit of its trainer state
// changed on disk, which the tensors' SHA-256 does not cover; a flipped
// bit in a tensor) is refused, and told to link the newest checkpoint
// before it as the last; doing so resumes from there.
func TestDamagedLastOffersAnOlderCheckpoint(t *testing.T) {
	for _, damage := range []string{"state", "tensor"} {
		t.Run(damage, func(t *testing.T) {
			dataDir, runDir := stoppedRun(t, 5)
			last := filepath.Join(runDir, checkpoint.LastLink)
			opt := filepath.Join(runDir, checkpointName(5), checkpoint.OptimizerFile)
			b, err := os.ReadFile(opt)
			if err != nil {
				t.Fatal(err)
			}
			at := bytes.Index(b, []byte(`\"step\":5`)) + len(`\"step\":`)
			if damage == "tensor" {
				at = len(b) - 3
			}
			if at < len(`\"step\":`) {
				t.Fatal("no step in the trainer state")
			}
			b[at] ^= 1 // (step 4 in the state: a digit changed)
			if err := os.WriteFile(opt, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
			want := []string{"newest whole checkpoint before it is " + checkpointName(3) + ": link it as the last to resume from there (ln -sfn " + checkpointName(3) + " " + last, "the checkpoint is damaged or was edited"}
			if damage == "tensor" {
				want[1] = "tensors do not match their recorded SHA-256"
			}
			for _, w := range want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("resume of a run whose last checkpoint's %s is damaged: %v; want %q", damage, err, w)
				}
			}
			os.Remove(last)
			if err := os.Symlink(checkpointName(3), last); err != nil {
				t.Fatal(err)
			}
			res, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
			if err != nil || res.State.Step != res.State.Schedule.TotalSteps {
				t.Fatalf("resume after linking %s: %v", checkpointName(3), err)
			}
		})
	}
	// A checkpoint before it that is damaged too is not offered.
	dataDir, runDir := stoppedRun(t, 5)
	for _, step := range []int{5, 3} {
		opt := filepath.Join(runDir, checkpointName(step), checkpoint.OptimizerFile)
		b, err := os.ReadFile(opt)
		at := bytes.Index(b, []byte(fmt.Sprintf(`\"step\":%d`, step)))
		if err != nil || at < 0 {
			t.Fatalf("no step in the trainer state of %s: %v", opt, err)
		}
		b[at+len(`\"step\":`)] ^= 1
		if err := os.WriteFile(opt, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "the checkpoint is damaged or was edited") || strings.Contains(err.Error(), "before it is "+checkpointName(3)) {
		t.Errorf("resume of a run whose last two checkpoints' states are damaged: %v; want the older one not offered", err)
	}
}

// A run whose last checkpoint was deleted while older ones are left is
// told to link the newest of them as the last, from a resume and from a
// new run; doing so resumes from there.
func TestDanglingLastLinksAnOlderCheckpoint(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	last := filepath.Join(runDir, checkpoint.LastLink)
	if err := os.RemoveAll(filepath.Join(runDir, checkpointName(5))); err != nil {
		t.Fatal(err)
	}
	want := "ln -sfn " + checkpointName(3) + " " + last
	for _, resume := range []bool{true, false} {
		_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), resume)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "remove "+runDir) {
			t.Errorf("resume %v on a run without its last checkpoint, an older one left: %v; want the advice %q", resume, err, want)
		}
	}
	if err := os.Remove(last); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(checkpointName(3), last); err != nil {
		t.Fatal(err)
	}
	res, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
	if err != nil {
		t.Fatalf("resume after linking %s: %v", checkpointName(3), err)
	}
	if res.State.Step != res.State.Schedule.TotalSteps {
		t.Errorf("resumed from step 3: ended at step %d of %d", res.State.Step, res.State.Schedule.TotalSteps)
	}
}

// Linked back to a checkpoint whose recorded best was pruned since (after
// a later best), a run resumes without a best link, and finishes.
func TestResumeWhoseBestIsGone(t *testing.T) {
	// (Stopped at step 24 itself, the run would stop the evaluation of
	// that epoch end.)
	dataDir, runDir := stoppedRun(t, 25)
	st := checkpointState(t, runDir)
	if st.Best == nil || st.Best.Checkpoint != checkpointName(24) {
		t.Fatalf("stopped at step 25: best %+v, want the epoch end at 24", st.Best)
	}
	if err := os.RemoveAll(filepath.Join(runDir, checkpointName(24))); err != nil {
		t.Fatal(err)
	}
	_, older := newestCheckpoints(runDir)
	if older == "" {
		t.Fatal("no older checkpoint left")
	}
	last := filepath.Join(runDir, checkpoint.LastLink)
	os.Remove(last)
	if err := os.Symlink(older, last); err != nil {
		t.Fatal(err)
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	b := checkpointState(t, runDir).Best
	if b == nil || exists(filepath.Join(runDir, b.Checkpoint)) {
		t.Fatalf("the state of %s: best %+v, want one that is gone", older, b)
	}
	// best names it, dangling.
	bestLink := filepath.Join(runDir, checkpoint.BestLink)
	os.Remove(bestLink)
	if err := os.Symlink(b.Checkpoint, bestLink); err != nil {
		t.Fatal(err)
	}
	// One step of the resume: the dangling best link is gone.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 1, cancel: cancel} })
	if _, err := tr.Run(ctx, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("resume from %s: %v", older, err)
	}
	if _, err := os.Lstat(bestLink); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after a resume, the best link to a checkpoint that is gone is still there: %v", err)
	}
	res, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
	if err != nil {
		t.Fatalf("resume from %s: %v", older, err)
	}
	if res.State.Step != res.State.Schedule.TotalSteps {
		t.Errorf("ended at step %d of %d", res.State.Step, res.State.Schedule.TotalSteps)
	}
	if target, err := os.Readlink(filepath.Join(runDir, checkpoint.BestLink)); err == nil && !exists(filepath.Join(runDir, target)) {
		t.Errorf("best links %s, which is gone", target)
	}
}

// Pointed back to a checkpoint from before its first evaluation (no best
// yet), a run's best link, a later checkpoint's, goes with it.
func TestResumeBeforeAnyBest(t *testing.T) {
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	stop, cancelStop := context.WithCancel(context.Background())
	defer cancelStop()
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 16, cancel: cancelStop} })
	tr.Options.Keep = 10 // (step 9 kept)
	if _, err := tr.Run(stop, false); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	bestLink := filepath.Join(runDir, checkpoint.BestLink)
	if target, err := os.Readlink(bestLink); err != nil || target != checkpointName(12) {
		t.Fatalf("stopped at step 16: best links %q (%v), want %s", target, err, checkpointName(12))
	}
	last := filepath.Join(runDir, checkpoint.LastLink)
	os.Remove(last)
	if err := os.Symlink(checkpointName(9), last); err != nil {
		t.Fatal(err)
	}
	if b := checkpointState(t, runDir).Best; b != nil {
		t.Fatalf("the state of step 9 has a best: %+v", b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr = newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 1, cancel: cancel} })
	tr.Options.Keep = 10
	if _, err := tr.Run(ctx, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("resume from step 9: %v", err)
	}
	if target, err := os.Readlink(bestLink); err == nil {
		t.Errorf("after resuming from before any best, best links %s", target)
	}
}

// A run whose last checkpoint was deleted, with no other left, gives one
// way out, the same from a resume and from a new run: remove the directory
// or use another.
func TestDanglingLastOneWayOut(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	if err := os.RemoveAll(filepath.Join(runDir, CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	want := "remove " + runDir + ", or train into another --out"
	for _, resume := range []bool{true, false} {
		_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), resume)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "--resume") {
			t.Errorf("resume %v on a run without its last checkpoint: %v; want only the advice %q", resume, err, want)
		}
	}
	if err := CheckResumable(runDir); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("CheckResumable: %v", err)
	}
}

// terminalLines replays what a terminal shows for out: a carriage return
// moves to the start of the line, where later text overwrites earlier.
func terminalLines(out string) []string {
	var lines []string
	var line []rune
	col := 0
	for _, r := range out {
		switch r {
		case '\n':
			lines = append(lines, strings.TrimRight(string(line), " "))
			line, col = line[:0], 0
		case '\r':
			col = 0
		default:
			if col < len(line) {
				line[col] = r
			} else {
				line = append(line, r)
			}
			col++
		}
	}
	return append(lines, strings.TrimRight(string(line), " "))
}

// On a terminal the progress bar and the log share stderr: every log line
// is a line of its own (the bar cleared first), the bar says when the run
// evaluates, and it reaches 100%. Log numbers have no float noise, and no
// key appears twice in a line.
func TestProgressAndLogShareTheTerminal(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	var term strings.Builder
	for _, evals := range []bool{true, false} {
		term.Reset()
		tr := newTrainer(t, dataDir, t.TempDir(), func(e nn.Engine) nn.Engine { return slowEngine{e} })
		if !evals {
			tr.Evals = nil
		}
		tr.Progress = &term
		tr.Log = slog.New(slog.NewTextHandler(&term, nil))
		if _, err := tr.Run(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		out := term.String()
		if evals && !strings.Contains(out, "evaluating…") {
			t.Errorf("the bar never says it is evaluating:\n%q", out)
		}
		var logLines int
		sawFull := false
		for _, l := range terminalLines(out) {
			if strings.Contains(l, "100%") && strings.Contains(l, "36/36") {
				sawFull = true
			}
			if !strings.Contains(l, "level=") {
				continue
			}
			logLines++
			if !strings.HasPrefix(l, "time=") || strings.Contains(l, "step/s") || strings.Contains(l, "evaluating") {
				t.Errorf("a log line shares its terminal line with the bar: %q", l)
			}
			seen := map[string]bool{}
			for _, f := range strings.Fields(l) {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					continue
				}
				if seen[k] {
					t.Errorf("key %s twice in %q", k, l)
				}
				seen[k] = true
				if len(strings.TrimLeft(v, "-0123456789.")) == 0 && len(strings.TrimLeft(v, "-0.")) > 8 {
					t.Errorf("float noise %s=%s in %q", k, v, l)
				}
			}
		}
		if logLines < 4 || !sawFull {
			t.Errorf("evals %v: %d log lines, bar at 100%%: %v; terminal:\n%s", evals, logLines, sawFull, strings.Join(terminalLines(out), "\n"))
		}
	}
}

// A checkpoint's two files belong together: a model.safetensors copied in
// from another step (or an optimizer.safetensors from one) is refused on
// resume, rather than continuing one step's weights with another step's
// moments and position (it used to resume silently, and an optimizer file
// of a finished run made the run report itself finished).
func TestResumeRefusesMixedCheckpointFiles(t *testing.T) {
	for _, file := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile} {
		_, early := stoppedRun(t, 5)
		dataDir, runDir := stoppedRun(t, 17)
		b, err := os.ReadFile(filepath.Join(early, checkpoint.LastLink, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(runDir, checkpoint.LastLink, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
		if err == nil || !strings.Contains(err.Error(), "step 5") || !strings.Contains(err.Error(), "step 17") {
			t.Errorf("resume with %s of step 5 in the checkpoint of step 17: %v", file, err)
		}
	}
}

// A checkpoint whose model records no step (written over by dinoclip
// average, say, which records none) is refused on resume: its weights are
// not those the optimizer state goes with.
func TestResumeRefusesModelWithoutStep(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	path := filepath.Join(runDir, checkpoint.LastLink, checkpoint.ModelFile)
	m, err := checkpoint.ReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := checkpoint.WriteModel(path, m.Config, m.Params, nil); err != nil {
		t.Fatal(err)
	}
	_, err = newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "records no step") {
		t.Errorf("resume with a model that records no step: %v", err)
	}
}

// A resume of a directory that is not there, of a file, of one that holds
// no run, or of one within a run says so rather than that the run "has no
// checkpoint yet; start the run without --resume" (which a new run into
// a run's checkpoints would then refuse).
func TestCheckResumableNoRunDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{filepath.Join(dir, "nowhere"): "no such run directory", file: "not a directory"} {
		err := CheckResumable(path)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "no checkpoint yet") {
			t.Errorf("CheckResumable(%s): %v, want an error saying %q", path, err, want)
		}
	}
	if err := CheckResumable(dir); err == nil || !strings.Contains(err.Error(), "it holds no run") {
		t.Errorf("CheckResumable of an empty directory: %v", err)
	}
	_, runDir := stoppedRun(t, 5)
	for _, within := range []string{CheckpointsDir, checkpoint.LastLink, checkpointName(5)} {
		want := "it is within the run directory " + runDir + ": resume that, with --out " + runDir
		if err := CheckResumable(filepath.Join(runDir, within)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckResumable(RUN/%s): %v, want %q", within, err, want)
		}
	}
}

// A last that is a directory, not the link the trainer keeps, is refused
// before training; the resume used to train to its first checkpoint and
// then fail to replace it ("rename .last.tmp last: file exists").
func TestResumeRefusesLastNotALink(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	last := filepath.Join(runDir, checkpoint.LastLink)
	if err := os.Rename(filepath.Join(runDir, unlinkLast(t, runDir)), last); err != nil {
		t.Fatal(err)
	}
	_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "not a link") {
		t.Fatalf("resume with a directory as last: %v", err)
	}
}

// unlinkLast removes the last link of the run in runDir and returns
// where it led.
func unlinkLast(t *testing.T, runDir string) string {
	t.Helper()
	last := filepath.Join(runDir, checkpoint.LastLink)
	target, err := os.Readlink(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(last); err != nil {
		t.Fatal(err)
	}
	return target
}

// A resume of a run that another process is starting (locked, no
// checkpoint yet) says it is locked, not "start the run without --resume",
// which would be refused as locked in turn.
func TestCheckResumableLockedRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	lock, err := LockRunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var locked *LockedError
	if err := CheckResumable(dir); !errors.As(err, &locked) {
		t.Errorf("CheckResumable of a locked run without checkpoints: %v, want a LockedError", err)
	}
	lock.Release()
	if err := CheckResumable(dir); err == nil || !strings.Contains(err.Error(), "no checkpoint yet") {
		t.Errorf("CheckResumable after the lock was released: %v", err)
	}
}

// A run another process trains is locked to a resume whatever its files
// look like: read by a process without the lock, the last link may move
// between two files of a checkpoint, which then look like two steps' (a
// resume during a run was told to put the checkpoint's own files back).
func TestCheckResumableTrainedRun(t *testing.T) {
	_, runDir := stoppedRun(t, 5)
	model := filepath.Join(runDir, checkpoint.LastLink, checkpoint.ModelFile)
	kept, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	// (As a checkpoint of another step, mid-replacement, reads: a model
	// file the optimizer's step is not.)
	if err := os.WriteFile(model, []byte("not a checkpoint's"), 0o644); err != nil {
		t.Fatal(err)
	}
	lock, err := LockRunDir(runDir)
	if err != nil {
		t.Fatal(err)
	}
	var locked *LockedError
	if err := CheckResumable(runDir); !errors.As(err, &locked) {
		t.Errorf("CheckResumable of a run another process trains: %v, want a LockedError", err)
	}
	lock.Release()
	if err := CheckResumable(runDir); err == nil || errors.As(err, &locked) {
		t.Errorf("CheckResumable of the damaged run, unlocked: %v, want why it cannot be resumed", err)
	}
	os.WriteFile(model, kept, 0o644)
	if err := CheckResumable(runDir); err != nil {
		t.Errorf("CheckResumable of the run restored: %v", err)
	}
}

// A run another process trains is refused at once, before CLIP's recall
// on the evaluation sets (seconds on a large one): with a cancelled
// context, that computation would end the run with context.Canceled.
func TestRunLockedRefusedFirst(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	lock, err := LockRunDir(runDir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, resume := range []bool{true, false} {
		var locked *LockedError
		if _, err := newTrainer(t, dataDir, runDir, nil).Run(ctx, resume); !errors.As(err, &locked) {
			t.Errorf("Run (resume %v) of a locked run: %v, want a LockedError", resume, err)
		}
	}
}

// A run whose last link was removed by hand, with its checkpoints still
// there, is neither "nothing to resume" (whose advice, a new run, would
// prune them) nor overwritten by a new run: both name the newest
// checkpoint to link again, and the checkpoints stay.
func TestOrphanedCheckpointsRefused(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	target := unlinkLast(t, runDir)
	for _, resume := range []bool{true, false} {
		_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), resume)
		if err == nil || !strings.Contains(err.Error(), "no last link") || !strings.Contains(err.Error(), target) {
			t.Errorf("resume %v without the last link: %v, want an error naming %s", resume, err, target)
		}
		if _, err := os.Stat(filepath.Join(runDir, target, checkpoint.ModelFile)); err != nil {
			t.Fatalf("resume %v: the checkpoint is gone: %v", resume, err)
		}
	}
}

// A resume checks the contents of its inputs, not only their shape: a
// training file rewritten with other values of the same shape, or an
// evaluation set with other contents, is refused with the file named and
// the way out; --accept-changed-inputs (AcceptChangedInputs) continues on
// them and records them; a copy of the run's data elsewhere resumes; and a
// run.json from before the record resumes with a warning.
func TestResumeRefusesChangedInputs(t *testing.T) {
	rewrite := func(t *testing.T, dataDir string) {
		path := filepath.Join(dataDir, "shard-b"+FeatureSuffix)
		data, shape, err := npy.ReadFloat32(path)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] += 1 // one value, mid-file
		if err := npy.WriteFloat32(path, shape, data); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("rewritten data", func(t *testing.T) {
		dataDir, runDir := stoppedRun(t, 5)
		rewrite(t, dataDir)
		_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
		if err == nil || !strings.Contains(err.Error(), "shard-b"+FeatureSuffix+" is not the file") || !strings.Contains(err.Error(), "--accept-changed-inputs") {
			t.Fatalf("resume on a rewritten file: %v", err)
		}
		tr := newTrainer(t, dataDir, runDir, nil)
		tr.AcceptChangedInputs = true
		if _, err := tr.Run(context.Background(), true); err != nil {
			t.Fatalf("resume with AcceptChangedInputs: %v", err)
		}
		info, err := ReadRunInfo(runDir)
		if err != nil {
			t.Fatal(err)
		}
		now, err := InputsOf(tr.Data, tr.Evals)
		if err != nil {
			t.Fatal(err)
		}
		if d := info.Inputs.diff(now, dataDir, tr.Evals); d != "" {
			t.Fatalf("run.json after an accepted change does not record the new inputs: %s", d)
		}
	})
	t.Run("accepted, killed before its next checkpoint", func(t *testing.T) {
		// As a resume accepting changed data leaves the run when killed
		// before its next checkpoint: run.json records the new inputs,
		// the checkpoint's state the old ones.
		dataDir, runDir := stoppedRun(t, 5)
		rewrite(t, dataDir)
		tr := newTrainer(t, dataDir, runDir, nil)
		info, err := ReadRunInfo(runDir)
		if err != nil {
			t.Fatal(err)
		}
		if info.Inputs, err = InputsOf(tr.Data, tr.Evals); err != nil {
			t.Fatal(err)
		}
		if err := writeJSON(filepath.Join(runDir, RunFile), info); err != nil {
			t.Fatal(err)
		}
		if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
			t.Fatalf("the resume after an accepted one killed before its checkpoint: %v", err)
		}
	})
	// A checkpoint, or run.json, of another run of the same options on
	// other contents: each was taken for the run's own.
	otherRun := func(t *testing.T) (dataDir, runDir string) {
		dataDir, runDir = t.TempDir(), t.TempDir()
		tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
		rewrite(t, dataDir)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 5, cancel: cancel} })
		if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
			t.Fatalf("the other run stopped after 5 steps: %v", err)
		}
		return dataDir, runDir
	}
	t.Run("another run's checkpoint", func(t *testing.T) {
		dataDir, runDir := stoppedRun(t, 5)
		_, other := otherRun(t)
		ckpt := filepath.Join(runDir, checkpointName(5))
		os.RemoveAll(ckpt)
		if err := os.CopyFS(ckpt, os.DirFS(filepath.Join(other, checkpointName(5)))); err != nil {
			t.Fatal(err)
		}
		if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err == nil || !strings.Contains(err.Error(), "is another run's") {
			t.Fatalf("resume from another run's checkpoint: %v", err)
		}
		tr := newTrainer(t, dataDir, runDir, nil)
		tr.AcceptChangedInputs = true
		if _, err := tr.Run(context.Background(), true); err != nil {
			t.Fatalf("resume from another run's checkpoint with AcceptChangedInputs: %v", err)
		}
	})
	t.Run("another run's run.json", func(t *testing.T) {
		_, runDir := stoppedRun(t, 5)
		otherData, other := otherRun(t)
		b, err := os.ReadFile(filepath.Join(other, RunFile))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(runDir, RunFile), b, 0o644)
		// (on the data that run.json names, as train --resume takes it)
		if _, err := newTrainer(t, otherData, runDir, nil).Run(context.Background(), true); err == nil || !strings.Contains(err.Error(), "is another run's") {
			t.Fatalf("resume with another run's run.json: %v", err)
		}
	})
	t.Run("other eval set", func(t *testing.T) {
		dataDir, runDir := stoppedRun(t, 5)
		tr := newTrainer(t, dataDir, runDir, nil)
		tr.Evals[0].CaptionCLIP[0] += 1
		if _, err := tr.Run(context.Background(), true); err == nil || !strings.Contains(err.Error(), "evaluation set") {
			t.Fatalf("resume on another evaluation set: %v", err)
		}
	})
	t.Run("data copied elsewhere", func(t *testing.T) {
		dataDir, runDir := stoppedRun(t, 5)
		moved := t.TempDir()
		entries, _ := os.ReadDir(dataDir)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dataDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(moved, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := newTrainer(t, moved, runDir, nil).Run(context.Background(), true); err != nil {
			t.Fatalf("resume on a copy of the data: %v", err)
		}
	})
	// dropRecord removes the record of the inputs from run.json (keys),
	// and with hash their hash from the checkpoint's state.
	dropRecord := func(t *testing.T, runDir string, hash bool) {
		path := filepath.Join(runDir, RunFile)
		var info map[string]any
		b, _ := os.ReadFile(path)
		if err := json.Unmarshal(b, &info); err != nil {
			t.Fatal(err)
		}
		if info["inputs"] == nil || info["inputs_sha256"] == nil {
			t.Fatal("run.json records no inputs")
		}
		delete(info, "inputs")
		if hash {
			delete(info, "inputs_sha256")
			tamperState(t, runDir, func(st map[string]any) { delete(st, "inputs_sha256") })
		}
		b, _ = json.Marshal(info)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("a run from before the record", func(t *testing.T) {
		dataDir, runDir := stoppedRun(t, 5)
		dropRecord(t, runDir, true)
		rewrite(t, dataDir) // unseen without a record
		var log strings.Builder
		tr := newTrainer(t, dataDir, runDir, nil)
		tr.Log = slog.New(slog.NewTextHandler(&log, nil))
		if _, err := tr.Run(context.Background(), true); err != nil {
			t.Fatalf("resume of a run without a record of its inputs: %v", err)
		}
		if !strings.Contains(log.String(), "records no identity") {
			t.Fatalf("no warning in the log:\n%s", log.String())
		}
	})
	t.Run("run.json's record removed", func(t *testing.T) {
		// The checkpoint's hash of the inputs still holds them: the same
		// ones resume, other ones are refused.
		dataDir, runDir := stoppedRun(t, 5)
		dropRecord(t, runDir, false)
		rewrite(t, dataDir)
		_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
		if err == nil || !strings.Contains(err.Error(), "run.json was edited") {
			t.Fatalf("resume on other data with run.json's record removed: %v, want a refusal", err)
		}
		dataDir, runDir = stoppedRun(t, 5)
		dropRecord(t, runDir, false)
		if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
			t.Fatalf("resume on the run's data with run.json's record removed: %v", err)
		}
	})
}

// fileID samples a large file: a change in a sampled block or in the size
// is seen, one between the samples is not (the documented limit), and the
// first and last bytes are always sampled.
func TestFileIDSamples(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	b := make([]byte, 3*sampleBlocks*sampleBlockSize+12345)
	for i := range b {
		b[i] = byte(i * 7)
	}
	id := func() FileID {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := fileID(path)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	base := id()
	for _, at := range []int{0, len(b) - 1} {
		b[at]++
		if id() == base {
			t.Errorf("a change at byte %d of %d is not seen", at, len(b))
		}
		b[at]--
	}
	// Just past the first block: between samples.
	b[sampleBlockSize]++
	if id() != base {
		t.Errorf("a change between the samples changed the identity: the sampling is not what FileID documents")
	}
	b[sampleBlockSize]--
	b = append(b, 0)
	if id().Size == base.Size {
		t.Errorf("the size is not recorded")
	}
}

// tamperMoments rewrites the moments in the last checkpoint's
// optimizer.safetensors through edit, keeping its trainer state.
func tamperMoments(t *testing.T, runDir string, edit func(m, v []float32)) {
	t.Helper()
	dir := filepath.Join(runDir, checkpoint.LastLink)
	ck, err := checkpoint.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	edit(ck.M, ck.V)
	n := len(ck.M)
	if err := safetensors.Write(filepath.Join(dir, checkpoint.OptimizerFile), []safetensors.Tensor{
		safetensors.NewFloat32("exp_avg", []int{n}, ck.M),
		safetensors.NewFloat32("exp_avg_sq", []int{n}, ck.V),
	}, map[string]string{"format": checkpoint.OptimizerFormat, "state": string(ck.State)}); err != nil {
		t.Fatal(err)
	}
}

// Moments and a logit scale that no run can reach are refused on resume
// with an error naming them, not trained on: a negative exp_avg_sq made
// every update NaN, a huge exp_avg or logit scale of ±1e300 was accepted.
// The bounds hold with room for the moments of real runs (mse, and
// InfoNCE whose logit scale trains too), which resume.
func TestResumeRefusesUnreachableMoments(t *testing.T) {
	infoNCE := func(t *testing.T, n int) (dataDir, runDir string) {
		dataDir, runDir = t.TempDir(), t.TempDir()
		tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: n, cancel: cancel} })
		tr.Options.Loss = nn.LossInfoNCE
		if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
			t.Fatalf("run stopped after %d steps: %v", n, err)
		}
		return dataDir, runDir
	}
	scale := func(field string, v float64) func(map[string]any) {
		return func(st map[string]any) { st["logit_scale"].(map[string]any)[field] = v }
	}
	cases := []struct {
		name   string
		run    func(*testing.T, int) (string, string)
		moment func(m, v []float32)
		state  func(map[string]any)
		wants  string
	}{
		{name: "negative exp_avg_sq", run: stoppedRun, moment: func(m, v []float32) { v[7] = -1e-9 }, wants: "exp_avg_sq[7]"},
		{name: "huge exp_avg", run: stoppedRun, moment: func(m, v []float32) { m[3] = 1e30 }, wants: "exp_avg[3]"},
		{name: "exp_avg beside a zero exp_avg_sq", run: stoppedRun, moment: func(m, v []float32) { m[5], v[5] = 1e-3, 0 }, wants: "exp_avg[5]"},
		{name: "logit scale 1e300", run: infoNCE, state: scale("value", 1e300), wants: "logit scale 1e+300"},
		{name: "logit scale -1e300", run: infoNCE, state: scale("value", -1e300), wants: "logit scale -1e+300"},
		{name: "logit scale far", run: infoNCE, state: scale("value", 1e4), wants: "logit scale 10000"},
		{name: "logit scale m", run: infoNCE, state: scale("m", 1e6), wants: "moments"},
		{name: "logit scale v", run: infoNCE, state: scale("v", 1e9), wants: "moments"},
		{name: "logit scale v negative", run: infoNCE, state: scale("v", -1), wants: "negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dataDir, runDir := c.run(t, 5)
			if c.moment != nil {
				tamperMoments(t, runDir, c.moment)
			}
			if c.state != nil {
				tamperState(t, runDir, c.state)
			}
			_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
			if err == nil || !strings.Contains(err.Error(), c.wants) {
				t.Fatalf("resume with %s: error %v, want one containing %q", c.name, err, c.wants)
			}
		})
	}
	for _, run := range []func(*testing.T, int) (string, string){stoppedRun, infoNCE} {
		dataDir, runDir := run(t, 17)
		tamperMoments(t, runDir, func(m, v []float32) {})
		if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
			t.Fatalf("resume of an untouched run: %v", err)
		}
	}
}

// momentBound is what its derivation says for PyTorch's defaults, and
// real moments stay within it: after a run, the largest |m|/sqrt(v) is
// below it.
func TestMomentBound(t *testing.T) {
	s := NewOneCycle(1e-3, 1, 100)
	k := momentBound(s, 0.999)
	if want := 0.15 / (math.Sqrt(0.001) * (1 - 0.95/math.Sqrt(0.999))); !(math.Abs(k-want) <= 1e-12*want) || !(math.Abs(k-95.8) <= 0.1) {
		t.Fatalf("momentBound = %v, want %v (about 95.8)", k, want)
	}
	if momentBound(s, 0.9) != 0 {
		t.Errorf("a bound for β2 0.9, where β1 0.95 > sqrt(β2) leaves none")
	}
	// Adversarial gradients: a run of equal gradients after a long quiet
	// spell (small v, then m catching up) stays within the bound.
	m, v := []float32{0}, []float32{0}
	p := []float32{0}
	worst := 0.0
	for step := 1; step <= 3000; step++ {
		g := float32(1e-6)
		if step > 2900 {
			g = 1
		}
		lr, b1 := s.At(step % 100)
		nn.AdamW(p, []float32{g}, m, v, nn.AdamWStep{LR: lr, Beta1: b1, Beta2: 0.999, Eps: 1e-8, Step: step})
		worst = max(worst, math.Abs(float64(m[0]))/math.Sqrt(float64(v[0])))
	}
	if worst > k {
		t.Fatalf("|m|/sqrt(v) reached %v, above the bound %v", worst, k)
	}
}

// A NaN met in the training data mid-run stops it at that step with the
// file, row and column, and with the way on that the record of the inputs
// leaves: the corrected file is other inputs, so the resume needs
// AcceptChangedInputs (--accept-changed-inputs), and then finishes.
func TestNaNInDataAdvice(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	path := filepath.Join(dataDir, "shard-a"+FeatureSuffix)
	x, shape, err := npy.ReadFloat32(path)
	if err != nil {
		t.Fatal(err)
	}
	good := slices.Clone(x)
	for r := 12; r < shape[0]; r++ { // not the rows tinyEval takes
		x[r*shape[1]+1] = float32(math.NaN())
	}
	if err := npy.WriteFloat32(path, shape, x); err != nil {
		t.Fatal(err)
	}
	tr := newTrainer(t, dataDir, runDir, nil)
	tr.AcceptChangedInputs = true
	_, err = tr.Run(context.Background(), true)
	var bad *npy.NonFiniteError
	if !errors.As(err, &bad) || bad.Column != 1 || !strings.HasPrefix(err.Error(), "step ") ||
		!strings.Contains(err.Error(), "shard-a"+FeatureSuffix+": row ") || !strings.Contains(err.Error(), "--resume --out "+runDir+" --accept-changed-inputs") {
		t.Fatalf("a NaN in the data: %v", err)
	}
	if err := npy.WriteFloat32(path, shape, good); err != nil {
		t.Fatal(err)
	}
	tr = newTrainer(t, dataDir, runDir, nil)
	tr.AcceptChangedInputs = true
	if _, err := tr.Run(context.Background(), true); err != nil {
		t.Fatalf("resume on the corrected file: %v", err)
	}
}

// A float32 gradient beyond about 5.8e20 overflows the second moment to
// +Inf while the first stays finite; the run goes on (that parameter's
// updates are 0), so its moments must resume. A float64 run's own moments
// are what a resume checks.
func TestCheckMomentsOverflowedSecondMoment(t *testing.T) {
	s := NewOneCycle(1e-3, 1, 100)
	p, m, v := []float32{0.5}, []float32{0}, []float32{0}
	for step := 1; step <= 3; step++ {
		lr, b1 := s.At(step)
		nn.AdamW(p, []float32{1e21}, m, v, nn.AdamWStep{LR: lr, Beta1: b1, Beta2: 0.999, Eps: 1e-8, Step: step})
	}
	if !math.IsInf(float64(v[0]), 1) || math.IsInf(float64(m[0]), 0) || math.IsNaN(float64(p[0])) {
		t.Fatalf("after three steps of gradient 1e21: p %v, m %v, v %v; want v = +Inf, the others finite", p[0], m[0], v[0])
	}
	if err := checkMoments(s, 0.999, m, v); err != nil {
		t.Errorf("moments a run reached refused: %v", err)
	}
	if err := checkMoments(s, 0.999, []float64{0}, []float64{-1}); err == nil || !strings.Contains(err.Error(), "exp_avg_sq[0]") {
		t.Errorf("a negative float64 second moment: error %v", err)
	}
	if err := checkMoments(s, 0.999, []float64{3e39}, []float64{3e39}); err == nil {
		t.Errorf("a float64 first moment beyond the bound: no error")
	}
	if err := checkMoments(s, 0.999, []float64{1e18}, []float64{3e39}); err != nil {
		t.Errorf("float64 moments beyond float32's range but within the bound: %v", err)
	}
}

// A run killed between relinking last and relinking best (or with a
// checkpoint written after the one last names) resumes as if never
// stopped: the resume points best at the state's best, so that pruning
// keeps it, and writes the later checkpoints again rather than keep the
// ones it finds.
func TestResumeAlignsCheckpoints(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	refDir := t.TempDir()
	ref := newTrainer(t, dataDir, refDir, nil)
	refRes, err := ref.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}

	// Stopped at step 14: the epoch end at step 12 is the state's best.
	runDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 14, cancel: cancel} })
	if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	st := checkpointState(t, runDir)
	if st.Step != 14 || st.Best == nil || st.Best.Checkpoint != checkpointName(12) {
		t.Fatalf("stopped run: step %d, best %+v; want step 14 and the best at step 12", st.Step, st.Best)
	}
	// What the kill leaves: no best link yet, and the final step's
	// checkpoint directory already there, holding other weights.
	if err := os.Remove(filepath.Join(runDir, checkpoint.BestLink)); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(runDir, checkpointName(refRes.State.Step))
	if err := os.CopyFS(final, os.DirFS(filepath.Join(runDir, checkpointName(14)))); err != nil {
		t.Fatal(err)
	}

	// One step of the resume: the best of step 12 is linked and kept.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	tr = newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 1, cancel: cancel} })
	if _, err := tr.Run(ctx, true); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if best, err := os.Readlink(filepath.Join(runDir, checkpoint.BestLink)); err != nil || best != checkpointName(12) {
		t.Fatalf("after a resume, best links %q (%v), want %s", best, err, checkpointName(12))
	}
	if _, err := os.Stat(filepath.Join(runDir, checkpointName(12), checkpoint.ModelFile)); err != nil {
		t.Fatalf("the best checkpoint was pruned: %v", err)
	}

	// The rest: the same final checkpoint and best as the run never stopped.
	tr = newTrainer(t, dataDir, runDir, nil)
	res, err := tr.Run(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	sameParams(t, "final parameters", params(t, tr.Engine), params(t, ref.Engine))
	for _, link := range []string{checkpoint.LastLink, checkpoint.BestLink} {
		got, err := os.ReadFile(filepath.Join(runDir, link, checkpoint.ModelFile))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(refDir, link, checkpoint.ModelFile))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s/%s differs from the uninterrupted run's", link, checkpoint.ModelFile)
		}
	}
	if *res.State.Best != *refRes.State.Best {
		t.Errorf("best %+v, the uninterrupted run's %+v", *res.State.Best, *refRes.State.Best)
	}
}

// A resume removes the temporary files a killed run left beside run.json
// once no writer holds them: those of run.json and metrics.jsonl however
// new (only the run's lock holder writes them), others once older than
// atomicfile.StaleAge; a recent one of another name, which may be another
// process's at work, is kept. The log says which.
func TestResumeSweepsDeadTemporaries(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	dead, recentOwn := filepath.Join(runDir, ".notes.txt.tmp-1"), filepath.Join(runDir, ".run.json.tmp-2")
	recentMetrics, recent := filepath.Join(runDir, "."+MetricsFile+".tmp-3"), filepath.Join(runDir, ".notes.txt.tmp-4")
	for _, p := range []string{dead, recentOwn, recentMetrics, recent} {
		if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * atomicfile.StaleAge)
	if err := os.Chtimes(dead, old, old); err != nil {
		t.Fatal(err)
	}
	// Among the checkpoints: a killed save's and a killed removal's
	// directories go; a directory of another name, or one of those names
	// holding a file no checkpoint has, stays.
	ckDir := filepath.Join(runDir, CheckpointsDir)
	saving, deleting := filepath.Join(ckDir, ".step-00000099.tmp-42"), filepath.Join(ckDir, ".step-00000001"+deletingSuffix)
	mine, holding := filepath.Join(ckDir, ".notes"), filepath.Join(ckDir, ".step-00000098.tmp-43")
	notTrash := filepath.Join(ckDir, ".mine"+deletingSuffix) // (no checkpoint's name: someone else's)
	for _, d := range []string{saving, deleting, mine, holding, notTrash} {
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, checkpoint.ModelFile), []byte("half"), 0o644)
	}
	os.WriteFile(filepath.Join(holding, "mine.txt"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(deleting, "notes.txt"), []byte("let go with its checkpoint"), 0o644)
	tr := newTrainer(t, dataDir, runDir, nil)
	var log bytes.Buffer
	tr.Log = slog.New(slog.NewTextHandler(&log, nil))
	if _, err := tr.Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	for _, said := range []string{"removed a temporary file left by a dinoclip killed while writing\" path=" + recentOwn,
		"another process may be writing now (remove it once none is)\" path=" + recent} {
		if !strings.Contains(log.String(), said) {
			t.Errorf("the log does not say %q:\n%s", said, log.String())
		}
	}
	for _, gone := range []string{dead, recentOwn, recentMetrics, saving, deleting} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the dead run's temporary %s is left: %v", gone, err)
		}
	}
	for _, kept := range []string{recent, filepath.Join(mine, checkpoint.ModelFile), filepath.Join(holding, "mine.txt"), filepath.Join(notTrash, checkpoint.ModelFile)} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
}

// Without its last link, a run whose newest checkpoint lacks a file a
// resume reads (here the moving average of a run that keeps one) is told
// to link the newest whole one, with the newer named as incomplete; with
// no whole checkpoint left, it is told plainly, and given no link to make.
// Both from a resume and from a new run, and the checkpoints stay.
func TestOrphanedCheckpointsAdviseAWholeOne(t *testing.T) {
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 5, cancel: cancel} })
	tr.Options.EMA = 0.9
	if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(runDir, checkpoint.LastLink)); err != nil {
		t.Fatal(err)
	}
	older, newer := checkpointName(3), checkpointName(5)
	if err := os.Remove(filepath.Join(runDir, newer, checkpoint.EMAFile)); err != nil {
		t.Fatal(err)
	}
	check := func(what string, wants []string, unwanted string) {
		t.Helper()
		for _, resume := range []bool{true, false} {
			_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), resume)
			if err == nil || strings.Contains(err.Error(), unwanted) {
				t.Errorf("%s, resume %v: %v; want no %q", what, resume, err, unwanted)
				continue
			}
			for _, want := range wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s, resume %v: %v; want %q", what, resume, err, want)
				}
			}
		}
		for _, name := range []string{older, newer} {
			if _, err := os.Stat(filepath.Join(runDir, name, checkpoint.ModelFile)); err != nil {
				t.Fatalf("%s: %s is gone: %v", what, name, err)
			}
		}
	}
	check("the newest incomplete", []string{"ln -s " + older + " ", "the newer " + newer + " lacks files"}, "ln -s "+newer)
	if err := os.Remove(filepath.Join(runDir, older, checkpoint.OptimizerFile)); err != nil {
		t.Fatal(err)
	}
	check("all incomplete", []string{"every one of them lacks files a resume reads", "remove " + runDir}, "ln -s")
}

// A new run in a directory where a run was killed while saving its first
// checkpoint (or ended at once by a second signal before it could remove
// it) removes that checkpoint's temporary, a model's size or more.
func TestNewRunSweepsDeadTemporaries(t *testing.T) {
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	saving := filepath.Join(runDir, CheckpointsDir, ".step-00000012.tmp-42")
	if err := os.MkdirAll(saving, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(saving, checkpoint.ModelFile), []byte("half"), 0o644)
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(saving); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed save's temporary %s is left: %v", saving, err)
	}
}

// A last link edited to lead into another run's checkpoints (relative,
// through "..", or absolute) is refused: the resume would continue that
// run under this one's name. One into the run's own checkpoints, also
// when its checkpoints directory is a link to a store elsewhere, is taken.
func TestResumeRefusesAnotherRunsCheckpoint(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	_, otherDir := stoppedRun(t, 5)
	last := filepath.Join(runDir, checkpoint.LastLink)
	own, _ := os.Readlink(last)
	for _, target := range []string{
		filepath.Join(otherDir, checkpointName(5)),
		filepath.Join(CheckpointsDir, "..", "..", filepath.Base(otherDir), checkpointName(5)),
	} {
		os.Remove(last)
		if err := os.Symlink(target, last); err != nil {
			t.Fatal(err)
		}
		_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
		if err == nil || !strings.Contains(err.Error(), "which is not a checkpoint in") {
			t.Errorf("last -> %s: %v, want a refusal", target, err)
		}
	}
	// last through best (last -> best -> checkpoints/step-N): refused,
	// saying the last is linked directly (the resume reads the
	// checkpoint's name from the link).
	os.Remove(last)
	os.Symlink(own, filepath.Join(runDir, checkpoint.BestLink))
	os.Symlink(checkpoint.BestLink, last)
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err == nil || !strings.Contains(err.Error(), "another link: the trainer links the last checkpoint directly") {
		t.Errorf("last linked to best: %v, want a refusal saying to link it directly", err)
	}
	os.Remove(filepath.Join(runDir, checkpoint.BestLink))
	// Each checkpoint moved to a store and linked back: the own link holds.
	os.Remove(last)
	os.Symlink(own, last)
	ckDir := filepath.Join(runDir, CheckpointsDir)
	entries, _ := os.ReadDir(ckDir)
	each := t.TempDir()
	for _, e := range entries {
		if err := os.Rename(filepath.Join(ckDir, e.Name()), filepath.Join(each, e.Name())); err != nil {
			t.Fatal(err)
		}
		os.Symlink(filepath.Join(each, e.Name()), filepath.Join(ckDir, e.Name()))
	}
	if err := checkResumable(runDir); err != nil {
		t.Errorf("a run whose checkpoints are each links into a store: %v", err)
	}
	// The checkpoints moved to a store and linked: the own link holds.
	store := filepath.Join(t.TempDir(), "store")
	if err := os.Rename(filepath.Join(runDir, CheckpointsDir), store); err != nil {
		t.Fatal(err)
	}
	os.Symlink(store, filepath.Join(runDir, CheckpointsDir))
	os.Remove(last)
	os.Symlink(own, last)
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
		t.Errorf("resume with its own last, through a linked checkpoints directory: %v", err)
	}
}

// A learning rate edited alike in run.json and in the checkpoint's state
// (options and schedule) is still refused when no run could have it: a
// negative one trained the model away from its targets.
func TestResumeRefusesImpossibleLearningRate(t *testing.T) {
	for _, lr := range []float64{-1, 0} {
		dataDir, runDir := stoppedRun(t, 5)
		tamperState(t, runDir, func(st map[string]any) {
			st["options"].(map[string]any)["max_lr"] = lr
			st["schedule"].(map[string]any)["max_lr"] = lr
		})
		path := filepath.Join(runDir, RunFile)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var run map[string]any
		if err := json.Unmarshal(b, &run); err != nil {
			t.Fatal(err)
		}
		run["options"].(map[string]any)["max_lr"] = lr
		b, _ = json.Marshal(run)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
		if err == nil || !strings.Contains(err.Error(), "must be positive and finite") {
			t.Errorf("resume with max_lr %v in run.json and the state: %v, want a refusal", lr, err)
		}
	}
}

// A checkpoint the run lets go of is kept, with a warning, when it holds
// a file no checkpoint has (a user's notes): pruning removed it whole.
func TestPruneKeepsForeignFiles(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	stop := filepath.Join(runDir, checkpointName(5))
	notes := filepath.Join(stop, "notes.txt")
	if err := os.WriteFile(notes, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := newTrainer(t, dataDir, runDir, nil)
	var log bytes.Buffer
	tr.Log = slog.New(slog.NewTextHandler(&log, nil))
	if _, err := tr.Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(notes); err != nil || string(b) != "mine" {
		t.Errorf("the user's file in a pruned checkpoint: %q, %v", b, err)
	}
	if n := strings.Count(log.String(), "keeping a checkpoint the run no longer needs"); n != 1 || !strings.Contains(log.String(), "file=notes.txt") {
		t.Errorf("the log says %d times (want once) that the checkpoint was kept:\n%s", n, log.String())
	}
}

// A checkpoint whose files are links into a store (a run kept in
// git-annex or DVC) is pruned as any other: its links removed, the store
// left alone.
func TestPruneCheckpointOfLinks(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	stop := filepath.Join(runDir, checkpointName(5))
	store := t.TempDir()
	entries, _ := os.ReadDir(stop)
	for _, e := range entries {
		if err := os.Rename(filepath.Join(stop, e.Name()), filepath.Join(store, e.Name())); err != nil {
			t.Fatal(err)
		}
		os.Symlink(filepath.Join(store, e.Name()), filepath.Join(stop, e.Name()))
	}
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stop); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stop's checkpoint of links is left: %v", err)
	}
	if left, _ := os.ReadDir(store); len(left) != len(entries) {
		t.Errorf("the store holds %d files, want the %d it had", len(left), len(entries))
	}
}

// A checkpoint after the one resumed from, which the resume makes again,
// is not removed when it holds a file no checkpoint has: the resume is
// refused, saying which file to move.
func TestResumeRefusesToRemoveForeignFiles(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	// Another later checkpoint, of a checkpoint's files only: the
	// refusal leaves it too (all are looked at before any is removed).
	plain := filepath.Join(runDir, checkpointName(6))
	os.Mkdir(plain, 0o755)
	os.WriteFile(filepath.Join(plain, checkpoint.ModelFile), []byte("x"), 0o644)
	later := filepath.Join(runDir, checkpointName(7))
	os.Mkdir(later, 0o755)
	notes := filepath.Join(later, "notes.txt")
	os.WriteFile(notes, []byte("mine"), 0o644)
	_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "move notes.txt out of it to resume") {
		t.Errorf("resume over a later checkpoint holding a user's file: %v, want a refusal", err)
	}
	if _, err := os.Stat(notes); err != nil {
		t.Errorf("the user's file: %v", err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Errorf("a refused resume removed another checkpoint: %v", err)
	}
}

// A checkpoint the run no longer keeps but cannot remove (here one whose
// directory is a file; elsewhere files of another owner) is left with a
// warning, once, and the run goes on: it needs no checkpoint it prunes.
// One gone already (removed by hand) is no failure.
func TestPruneFailureWarns(t *testing.T) {
	var log bytes.Buffer
	tr := &Trainer{RunDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&log, nil))}
	if err := tr.pruneCheckpoint(checkpointName(6)); err != nil || log.Len() != 0 {
		t.Fatalf("pruning a checkpoint gone already: %v\n%s", err, log.String())
	}
	os.MkdirAll(filepath.Join(tr.RunDir, CheckpointsDir), 0o755)
	os.WriteFile(filepath.Join(tr.RunDir, checkpointName(7)), []byte("not a directory"), 0o644)
	for range 2 {
		if err := tr.pruneCheckpoint(checkpointName(7)); err != nil {
			t.Fatalf("a checkpoint that could not be pruned stopped the run: %v", err)
		}
	}
	if n := strings.Count(log.String(), "could not remove a checkpoint the run no longer needs"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, log.String())
	}
}

// A run killed between putting its first checkpoint in place and linking
// it as the last leaves no last link, and the link's new form (save made
// it beforehand) leading to the whole checkpoint: the resume links it, and
// goes on as if the link had been made, to the uninterrupted run's end; a
// new run into the directory is told to resume, and leaves it as it was.
// A new form
// leading to no whole checkpoint (the kill came before the checkpoint was
// in place) is no run, and a start in the directory begins it anew.
func TestStartFinishesKilledFirstLink(t *testing.T) {
	dataDir, runDir := stoppedRun(t, 5)
	ref := newTrainer(t, dataDir, t.TempDir(), nil)
	if _, err := ref.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	last, pending := filepath.Join(runDir, checkpoint.LastLink), filepath.Join(runDir, checkpoint.NewLinkName(checkpoint.LastLink))
	os.Remove(filepath.Join(runDir, checkpoint.BestLink)) // (step 5 is no epoch end: no best yet)
	if err := os.Rename(last, pending); err != nil {
		t.Fatal(err)
	}
	if err := CheckResumable(runDir); err != nil {
		t.Fatalf("CheckResumable of a run killed before linking its first checkpoint: %v", err)
	}
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "already holds a run") {
		t.Fatalf("a new run into it: %v, want a refusal naming --resume", err)
	}
	if _, err := os.Lstat(last); err == nil || PendingLastLink(runDir) != checkpointName(5) {
		t.Fatalf("the refused new run changed the links: last %v, pending %q; want none and %s", err, PendingLastLink(runDir), checkpointName(5))
	}
	tr := newTrainer(t, dataDir, runDir, nil)
	if _, err := tr.Run(context.Background(), true); err != nil {
		t.Fatalf("resume: %v", err)
	}
	sameParams(t, "final parameters", params(t, tr.Engine), params(t, ref.Engine))

	// Killed before the checkpoint was in place: the new form leads
	// nowhere, and a new run starts.
	dataDir, runDir = stoppedRun(t, 5)
	for _, name := range []string{checkpoint.LastLink, checkpoint.BestLink, CheckpointsDir} {
		os.RemoveAll(filepath.Join(runDir, name))
	}
	if err := os.Symlink(checkpointName(5), filepath.Join(runDir, checkpoint.NewLinkName(checkpoint.LastLink))); err != nil {
		t.Fatal(err)
	}
	if err := CheckResumable(runDir); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("CheckResumable with a new form leading nowhere: %v, want ErrNoCheckpoint", err)
	}
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), false); err != nil {
		t.Fatalf("a new run where the kill came before the checkpoint: %v", err)
	}
}

// A checkpoint whose save fails (here: its name taken by a directory of
// someone else's) leaves no new form of the last link, which would lead
// nowhere (and had eval advise a resume that found no checkpoint), and
// its error says what is left of the run.
func TestFailedSaveLeavesNoLink(t *testing.T) {
	dataDir, runDir := t.TempDir(), t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	foreign := filepath.Join(runDir, checkpointName(5))
	takeName := func() {
		if err := os.MkdirAll(foreign, 0o755); err != nil {
			t.Error(err)
		}
		os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o644)
		cancel()
	}
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: 5, cancel: takeName} })
	_, err := tr.Run(ctx, false)
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("a run whose checkpoint's name was taken: %v, want the save's error", err)
	}
	if advice := "its last checkpoint is " + filepath.Join(runDir, checkpoint.LastLink) + " (" + checkpointName(3) + "); once the problem is fixed, continue it with"; !strings.Contains(err.Error(), advice) {
		t.Errorf("the failed save's error %q lacks %q", err, advice)
	}
	if to, err := os.Readlink(filepath.Join(runDir, checkpoint.NewLinkName(checkpoint.LastLink))); err == nil {
		t.Fatalf("the failed save left the last link's new form, leading to %q", to)
	}
}

// A new run refuses a directory that another process may be writing a
// file into now (a recent temporary of a name no run writes: an average
// or a projection checked its place before the run began), and one its
// caller's CheckPlace refuses under the lock.
func TestNewRunRefusesWritersAndPlace(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	runDir := t.TempDir()
	writing := filepath.Join(runDir, ".model.safetensors.tmp-7")
	if err := os.WriteFile(writing, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "another process may be writing "+writing) {
		t.Fatalf("a new run beside a file being written: %v", err)
	}
	os.Remove(writing)
	tr := newTrainer(t, dataDir, runDir, nil)
	tr.CheckPlace = func() error { return errors.New("a run was made around it meanwhile") }
	if _, err := tr.Run(context.Background(), false); err == nil || err.Error() != "a run was made around it meanwhile" {
		t.Fatalf("a new run its CheckPlace refuses: %v", err)
	}
	if _, err := os.Stat(filepath.Join(runDir, checkpoint.LastLink)); err == nil {
		t.Error("the refused run checkpointed")
	}
	if entries, _ := os.ReadDir(runDir); len(entries) != 0 {
		t.Errorf("the refused run left %d files in its directory (%s ...), want none", len(entries), entries[0].Name())
	}
	// Into directories it made: none is left.
	base := t.TempDir()
	tr = newTrainer(t, dataDir, filepath.Join(base, "a", "run"), nil)
	tr.CheckPlace = func() error { return errors.New("a run was made around it meanwhile") }
	if _, err := tr.Run(context.Background(), false); err == nil {
		t.Fatal("a new run its CheckPlace refuses, in a directory it makes: no error")
	}
	if _, err := os.Lstat(filepath.Join(base, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused run left the directories it made: %v", err)
	}
	// A lock file that was there before stays.
	if err := os.WriteFile(filepath.Join(runDir, LockFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tr = newTrainer(t, dataDir, runDir, nil)
	tr.CheckPlace = func() error { return errors.New("a run was made around it meanwhile") }
	if _, err := tr.Run(context.Background(), false); err == nil {
		t.Fatal("a new run its CheckPlace refuses, beside an old lock file: no error")
	}
	if _, err := os.Lstat(filepath.Join(runDir, LockFile)); err != nil {
		t.Errorf("the refused run removed a lock file it did not make: %v", err)
	}
}

// A run.json with a key given twice, or bytes that are not UTF-8, is
// refused by ReadRunInfo as checkpoint.Resolve refuses it: encoding/json
// takes the last of two keys and reads such bytes as U+FFFD, so the run
// resumed would be another document than the one Resolve read.
func TestReadRunInfoRefusesAmbiguousText(t *testing.T) {
	_, runDir := stoppedRun(t, 5)
	path := filepath.Join(runDir, RunFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRunInfo(runDir); err != nil {
		t.Fatalf("the run's own run.json: %v", err)
	}
	for _, c := range []struct {
		name, want string
		edited     []byte
	}{
		{"a key twice", `"data_dir" appears twice`, append([]byte(`{"data_dir": "/elsewhere", `), b[1:]...)},
		{"not UTF-8 text", "not UTF-8", append(append([]byte(`{"note": "`), 0xff, '"', ','), b[1:]...)},
	} {
		if err := os.WriteFile(path, c.edited, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadRunInfo(runDir)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: ReadRunInfo = %v, want an error naming %s and saying %q", c.name, err, path, c.want)
		}
	}
}

// A run's file that cannot be opened for a reason that says nothing of it
// (no permission, no file descriptors left) is not called lacking: the
// advice for a checkpoint without its files is another checkpoint, or
// removing the run. Missing or damaged files are lacking.
func TestUnreadableIsNotLacking(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&fs.PathError{Op: "open", Path: "f", Err: syscall.EMFILE}, true},
		{fmt.Errorf("safetensors: %w", &fs.PathError{Op: "open", Path: "f", Err: syscall.EACCES}), true},
		{&fs.PathError{Op: "open", Path: "f", Err: syscall.ENOENT}, false},
		{fmt.Errorf("safetensors: f: %w", safetensors.ErrCutShort), false},
	} {
		if got := unreadable(c.err); got != c.want {
			t.Errorf("unreadable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if os.Geteuid() == 0 || runtime.GOOS == "windows" {
		return // (no file is unreadable to root; Windows has no mode bits to take)
	}
	dataDir, runDir := stoppedRun(t, 5)
	opt := filepath.Join(runDir, checkpointName(5), checkpoint.OptimizerFile)
	if err := os.Chmod(opt, 0); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(opt, 0o644)
	_, err := newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
	if err == nil || !errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "lacks") || strings.Contains(err.Error(), "ln -sfn") {
		t.Errorf("resume of a run whose last optimizer file cannot be read: %v; want the permission error alone", err)
	}
}
