package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/train"
)

// TestMain runs the CLI itself when a test re-executes the test binary as
// a dinoclip process (DINOCLIP_CLI_ARGS, a JSON list of arguments).
func TestMain(m *testing.M) {
	if a := os.Getenv("DINOCLIP_CLI_ARGS"); a != "" {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			panic(err)
		}
		os.Exit(run(append([]string{"dinoclip"}, args...)))
	}
	os.Exit(m.Run())
}

// startCLI starts dinoclip with args in a child process (this test
// binary, see TestMain), its output collected.
func startCLI(t *testing.T, args []string) (cmd *exec.Cmd, stdout, stderr *syncBuffer) {
	t.Helper()
	cmd = cliCommand(args)
	stdout, stderr = new(syncBuffer), new(syncBuffer)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := startWithStopSignals(cmd); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout, stderr
}

// startWithStopSignals starts cmd with Ctrl-C and hangups at their
// defaults, whatever this test process inherited (under nohup, or as a
// job a script started in the background, as CI may run the tests): a
// hangup ignored would not reach the child at all, and a Ctrl-C ignored
// would be lost in the child's first milliseconds, before it catches it.
// (Caught here while the child starts, they are the default there: a
// child inherits only an ignored disposition.)
func startWithStopSignals(cmd *exec.Cmd) error {
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, os.Interrupt, syscall.SIGHUP)
	defer signal.Stop(caught)
	return cmd.Start()
}

// cliCommand is dinoclip with args as a child process (this test binary,
// see TestMain), not started.
func cliCommand(args []string) *exec.Cmd {
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "DINOCLIP_CLI_ARGS="+string(b))
	return cmd
}

// syncBuffer is a child's output, which the test may read while the child
// writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A training process stopped by SIGINT exits 130 and by SIGTERM 143, after
// saving a checkpoint and printing the command that resumes it, also when
// a second signal follows at once (a wrapper that forwards Ctrl-C and then
// terminates its child); while it trains, a second process on its run
// directory is refused by the lock.
func TestTrainSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	data := makeData(t)
	for _, c := range []struct {
		sig, then syscall.Signal
		code      int
	}{{syscall.SIGINT, 0, 130}, {syscall.SIGTERM, 0, 143}, {syscall.SIGHUP, 0, 129}, {syscall.SIGINT, syscall.SIGTERM, 130}} {
		name := c.sig.String()
		if c.then != 0 {
			name += " then " + c.then.String()
		}
		t.Run(name, func(t *testing.T) {
			run := filepath.Join(t.TempDir(), "run")
			model := tinyModel
			if c.then != 0 {
				// A model whose checkpoint takes a while to save: the second
				// signal comes while it is saved.
				model = []string{"--hidden-dim", "1024", "--blocks", "6"}
			}
			args := append([]string{"train", "--data", data, "--out", run, "--epochs", "100000", "--batch", "16"}, model...)
			cmd, _, stderr := startCLI(t, args)
			defer cmd.Process.Kill()
			waitForCheckpoint(t, run, stderr)
			locked := "run " + run + " is locked by another process (pid " + strconv.Itoa(cmd.Process.Pid) + ")"
			wantError(t, []string{"train", "--resume", "--out", run}, locked)
			wantError(t, args, locked)

			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			if c.then != 0 {
				// Once the first is seen, while the checkpoint is saved.
				for deadline := time.Now().Add(time.Minute); !strings.Contains(stderr.String(), "stopping cleanly"); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("no word of a clean stop a minute after %v:\n%s", c.sig, stderr.String())
					}
				}
				cmd.Process.Signal(c.then)
			}
			err := waitExit(t, cmd)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != c.code {
				t.Fatalf("after %v: %v, want exit status %d\n%s", c.sig, err, c.code, stderr.String())
			}
			if hint := "continue it with: dinoclip train --resume --out " + run + "\n"; !strings.Contains(stderr.String(), hint) {
				t.Errorf("after %v, stderr lacks %q:\n%s", c.sig, hint, stderr.String())
			}
			again := map[syscall.Signal]string{syscall.SIGINT: "Ctrl-C", syscall.SIGTERM: "SIGTERM", syscall.SIGHUP: "SIGHUP"}[c.sig]
			if word := "stopping cleanly (" + again + " again,"; !strings.Contains(stderr.String(), word) {
				t.Errorf("after %v, stderr lacks %q:\n%s", c.sig, word, stderr.String())
			}
			if ignored := "still stopping cleanly"; c.then != 0 && !strings.Contains(stderr.String(), ignored) {
				t.Errorf("after %v then %v, stderr lacks %q: the second signal was not seen during the save\n%s", c.sig, c.then, ignored, stderr.String())
			}
		})
	}
}

// SIGQUIT (Ctrl-\\) ends a training process at once, as a second Ctrl-C
// does: exit status 131 and "interrupted", no goroutine dump, and none of
// the temporary files of the checkpoints it keeps saving left behind; the
// run can be resumed.
func TestTrainSIGQUIT(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	data := makeData(t)
	run := filepath.Join(t.TempDir(), "run")
	cmd, _, stderr := startCLI(t, append([]string{"train", "--data", data, "--out", run, "--epochs", "100000", "--batch", "16",
		"--checkpoint-every", "1", "--keep", "2"}, tinyModel...))
	defer cmd.Process.Kill()
	waitForCheckpoint(t, run, stderr)
	if err := cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	err := waitExit(t, cmd)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 131 || !strings.Contains(stderr.String(), "dinoclip: interrupted") ||
		strings.Contains(stderr.String(), "goroutine ") {
		t.Fatalf("after SIGQUIT: %v, want exit status 131 and \"interrupted\", no goroutine dump\n%s", err, stderr.String())
	}
	for _, dir := range []string{run, filepath.Join(run, train.CheckpointsDir)} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if _, err := os.Stat(p); e.Type()&os.ModeSymlink != 0 && err == nil {
				continue // the last link's new form, to a checkpoint in place: the resume links it
			}
			if strings.Contains(e.Name(), ".tmp") {
				t.Errorf("left after SIGQUIT: %s", p)
			}
		}
	}
	if err := train.CheckResumable(run); err != nil {
		t.Errorf("after SIGQUIT, the run cannot be resumed: %v", err)
	}
}

// SIGQUIT ends a synth at once, alone or after a Ctrl-C: and leaves --out
// as a Ctrl-C does, without the training data's staging directory, the
// unfinished-run marker, or the train directory it made (the marker
// flagged sets the run had not touched, and the staging directory held
// the disk until a minute had passed).
func TestSynthSIGQUIT(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, first := range []syscall.Signal{0, syscall.SIGINT} {
		name := "SIGQUIT"
		if first != 0 {
			name = first.String() + " then SIGQUIT"
		}
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "s")
			cmd, _, stderr := startCLI(t, []string{"synth", "--out", out, "--rows", "30000", "--shard-rows", "1000"})
			defer cmd.Process.Kill()
			// Once a shard is staged.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
				if staged, _ := filepath.Glob(filepath.Join(out, ".train.synth.tmp-*", "shard-*.npy")); len(staged) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no shard staged in a minute:\n%s", stderr.String())
				}
			}
			if first != 0 {
				cmd.Process.Signal(first)
				for deadline := time.Now().Add(time.Minute); !strings.Contains(stderr.String(), "stopping cleanly"); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("no word of a clean stop a minute after %v:\n%s", first, stderr.String())
					}
				}
			}
			cmd.Process.Signal(syscall.SIGQUIT)
			err := waitExit(t, cmd)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 131 && !(first != 0 && ee.ExitCode() == 128+int(first)) ||
				!strings.Contains(stderr.String(), "dinoclip: interrupted") {
				t.Fatalf("after SIGQUIT: %v, want exit status 131 and \"interrupted\"\n%s", err, stderr.String())
			}
			entries, err := os.ReadDir(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				t.Errorf("left after SIGQUIT: %s", filepath.Join(out, e.Name()))
			}
		})
	}
}

// waitExit waits for the child cmd to exit, two minutes at most: one that
// missed its signal would train on (for 100000 epochs), and the test
// binary's own timeout would say only where it waited.
func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("the dinoclip child has not exited in 2 minutes")
		return nil
	}
}

// waitForCheckpoint waits until the training child whose stderr is
// stderr has saved a checkpoint in run (a minute at most).
func waitForCheckpoint(t *testing.T, run string, stderr *syncBuffer) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(run, checkpoint.LastLink, checkpoint.ModelFile)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child wrote no checkpoint in a minute:\n%s", stderr.String())
		}
	}
}

// A process started with hangups ignored (nohup) goes on after SIGHUP:
// catching it to stop cleanly would undo nohup. One started with Ctrl-C
// ignored (a job a script started with &) still stops cleanly on SIGINT,
// which such a script forwards to it (stopSignals).
func TestTrainIgnoredSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	data := makeData(t)
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			run := filepath.Join(t.TempDir(), "run")
			cmd := cliCommand(append([]string{"train", "--data", data, "--out", run, "--epochs", "100000", "--batch", "16"}, tinyModel...))
			stderr := new(syncBuffer)
			cmd.Stderr = stderr
			signal.Ignore(sig) // inherited by the child, as nohup or cmd & leaves it
			err := cmd.Start()
			signal.Reset(sig)
			if err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			waitForCheckpoint(t, run, stderr)
			cmd.Process.Signal(sig)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			if sig == syscall.SIGHUP {
				select {
				case err := <-exited:
					t.Fatalf("under nohup, SIGHUP ended training: %v\n%s", err, stderr.String())
				case <-time.After(time.Second):
				}
				if strings.Contains(stderr.String(), "stopping cleanly") {
					t.Fatalf("under nohup, SIGHUP began a clean stop:\n%s", stderr.String())
				}
				cmd.Process.Signal(syscall.SIGTERM)
			}
			code := map[syscall.Signal]int{syscall.SIGHUP: 143, syscall.SIGINT: 130}[sig]
			var ee *exec.ExitError
			if err := <-exited; !errors.As(err, &ee) || ee.ExitCode() != code || !strings.Contains(stderr.String(), "continue it with: dinoclip train --resume") {
				t.Fatalf("started with %v ignored: %v, want exit status %d after a clean stop\n%s", sig, err, code, stderr.String())
			}
		})
	}
}

// eval, whose top-k does not look for interruption, ends at once on SIGINT
// (exit 130) rather than ranking the whole set and printing its table.
func TestEvalSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	run, _, _ := trainRun(t)
	eval := makeEvalSetOf(t, "big-eval", 40000) // minutes of ranking
	code, stdout, stderr := interruptChild(t, "eval", "--model", run, "--eval", eval)
	if code != 130 || !strings.Contains(stderr, "interrupted") || stdout != "" {
		t.Fatalf("eval after SIGINT: exit status %d (want 130, \"interrupted\" and no table)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// train, interrupted while it ranks CLIP's own recall on its evaluation set
// (before its first step), stops at once (exit 130), writes no checkpoint
// and does not advise a resume.
func TestTrainSignalBeforeFirstStep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	data := makeData(t)
	// CLIP's recall on 200,000 images and 400,000 captions: about 20 s on
	// 2 cores, a few on 16; the signal comes half a second in.
	eval := makeEvalSetOf(t, "big-eval", 200000)
	run := filepath.Join(t.TempDir(), "run")
	code, _, stderr := interruptChild(t, append([]string{"train", "--data", data, "--eval", eval, "--out", run, "--batch", "16"}, tinyModel...)...)
	if code != 130 || !strings.Contains(stderr, "stopped before its first checkpoint") || strings.Contains(stderr, "--resume") {
		t.Fatalf("train after SIGINT: exit status %d (want 130, no resume advice)\nstderr:\n%s", code, stderr)
	}
	if _, err := os.Lstat(filepath.Join(run, checkpoint.LastLink)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("train stopped before its first step left %s: %v", checkpoint.LastLink, err)
	}
}

// interruptChild runs dinoclip args in a child process, sends it SIGINT
// after a moment (longer each time the signal came before the child had
// installed its handler and killed it outright), and returns its exit
// status and output. A child still running a minute after the signal
// fails the test: the command did not stop.
func interruptChild(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for wait := 500 * time.Millisecond; ; wait *= 4 {
		cmd, out, errs := startCLI(t, args)
		time.Sleep(wait)
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			cmd.Process.Kill()
			t.Fatal(err)
		}
		stop := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
		err := waitExit(t, cmd)
		if !stop.Stop() {
			t.Fatalf("%s: still running a minute after SIGINT\nstderr:\n%s", args[0], errs.String())
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == -1 && wait < 8*time.Second {
			continue // killed by the signal itself: too early
		}
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errs.String()
	}
}

// train, interrupted by SIGINT during the evaluation that ends its last
// epoch, stops that evaluation (exit 130) rather than finish it and the
// run: the epoch end's checkpoint is saved with the evaluation pending,
// and no record of it is written. The resume only evaluates, and ends
// with the records and checkpoint of a run never stopped.
func TestTrainSignalDuringEvaluation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	data := makeData(t)
	var eval, straight, run string
	var stderr *syncBuffer
	// 20,000 images: about a second of ranking on two cores, for CLIP's
	// recall and at the epoch end; twice as many on a machine that ranks
	// them before the signal lands.
	for images := 20000; ; images *= 2 {
		eval = makeEvalSetOf(t, "big-eval", images)
		trainArgs := func(run string) []string {
			return append([]string{"train", "--data", data, "--eval", eval, "--out", run, "--epochs", "1", "--batch", "16", "--log-every", "1"}, tinyModel...)
		}
		straight = filepath.Join(t.TempDir(), "straight")
		mustRun(t, trainArgs(straight)...)

		run = filepath.Join(t.TempDir(), "run")
		var cmd *exec.Cmd
		cmd, _, stderr = startCLI(t, trainArgs(run))
		defer cmd.Process.Kill()
		// The record of the epoch's last step (4 of 16 rows) is written just
		// before its evaluation starts.
		lastStep := fmt.Sprintf(`"step":%d,`, tRows/16)
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			if b, _ := os.ReadFile(filepath.Join(run, train.MetricsFile)); bytes.Contains(b, []byte(lastStep)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the child took no %d steps in a minute:\n%s", tRows/16, stderr.String())
			}
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		stop := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
		err := waitExit(t, cmd)
		stop.Stop()
		if err == nil && images < 160000 {
			t.Logf("the run ended before the signal came, with %d images: again with more", images)
			continue
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("SIGINT during the evaluation: %v, want exit status 130\n%s", err, stderr.String())
		}
		break
	}
	if hint := "continue it with: dinoclip train --resume --out " + run + "\n"; !strings.Contains(stderr.String(), hint) {
		t.Errorf("stderr lacks %q:\n%s", hint, stderr.String())
	}
	pending := filepath.Join(train.CheckpointsDir, fmt.Sprintf("step-%08d.pending-eval", tRows/16))
	if target, err := os.Readlink(filepath.Join(run, checkpoint.LastLink)); err != nil || target != pending {
		t.Fatalf("after SIGINT during the evaluation, last links %q (%v), want %s\n%s", target, err, pending, stderr.String())
	}
	if records := metricsRecords(t, run); strings.Contains(strings.Join(records, "\n"), `"type":"eval"`) {
		t.Errorf("the interrupted evaluation has a record:\n%s", strings.Join(records, "\n"))
	}

	if out := mustRun(t, "info", run); !strings.Contains(out, "evaluation of epoch 1 pending") {
		t.Errorf("info on the run stopped during its evaluation does not say it is pending:\n%s", out)
	}

	out := mustRun(t, "train", "--resume", "--out", run)
	if !strings.Contains(out, "evaluation after epoch 1") {
		t.Errorf("the resumed run prints no evaluation:\n%s", out)
	}
	if a, b := metricsRecords(t, run), metricsRecords(t, straight); !slices.Equal(a, b) {
		t.Errorf("resumed: metrics differ from the uninterrupted run:\n%s\nvs\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile} {
		a, errA := os.ReadFile(filepath.Join(run, checkpoint.LastLink, f))
		b, errB := os.ReadFile(filepath.Join(straight, checkpoint.LastLink, f))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("resumed: the last checkpoint's %s differs from the uninterrupted run's (%v, %v)", f, errA, errB)
		}
	}
}

// metricsRecords reads a run's metrics.jsonl without the fields that
// depend on the clock.
func metricsRecords(t *testing.T, run string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, train.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var records []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("metrics.jsonl line %q: %v", line, err)
		}
		delete(rec, "time")
		delete(rec, "samples_per_s")
		r, _ := json.Marshal(rec)
		records = append(records, string(r))
	}
	return records
}

// average, which a signal ends at once, removes the temporary of the
// output it was writing (the size of a model) instead of leaving it for a
// later run's sweep.
func TestAverageSignalWhileWriting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	c := nn.Config{InputDim: 768, HiddenDim: 1024, OutputDim: 512, Blocks: 6} // 56 MB a model
	a, b := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors")
	writeRandomModel(t, a, c, 1)
	writeRandomModel(t, b, c, 2)
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	out := filepath.Join(outDir, "avg.safetensors")
	for try := 1; ; try++ {
		cmd, _, stderr := startCLI(t, []string{"average", "--out", out, a, b})
		// SIGINT once the output's temporary is there.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Microsecond) {
			if entries, _ := os.ReadDir(outDir); len(entries) > 0 {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("average wrote nothing in a minute:\n%s", stderr.String())
			}
		}
		cmd.Process.Signal(syscall.SIGINT)
		err := waitExit(t, cmd)
		var ee *exec.ExitError
		if err == nil && try < 5 {
			os.Remove(out) // it finished first: again
			continue
		}
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("average after SIGINT: %v, want exit status 130\n%s", err, stderr.String())
		}
		entries, _ := os.ReadDir(outDir)
		if _, rerr := checkpoint.ReadModel(out); len(entries) == 1 && rerr == nil && try < 5 {
			os.Remove(out) // the signal came after the output was in place, whole: again
			continue
		}
		if len(entries) != 0 {
			t.Errorf("average ended by SIGINT left %v in its output's directory\n%s", entries[0].Name(), stderr.String())
		}
		return
	}
}

// TestRepeatHint: a clean stop's word names the key or signal that sent
// it, except SIGTERM on Windows, which Go delivers for a console's close,
// a logoff or a shutdown, none of them a SIGTERM the user could send again.
func TestRepeatHint(t *testing.T) {
	for _, c := range []struct {
		sig  syscall.Signal
		goos string
		want string
	}{
		{syscall.SIGINT, "linux", "Ctrl-C again"},
		{syscall.SIGINT, "windows", "Ctrl-C again"},
		{syscall.SIGTERM, "linux", "SIGTERM again"},
		{syscall.SIGTERM, "darwin", "SIGTERM again"},
		{syscall.SIGTERM, "windows", "the signal again"},
		{syscall.SIGHUP, "linux", "SIGHUP again"},
		{syscall.SIGQUIT, "linux", "the signal again"},
	} {
		if got := repeatHint(c.sig, c.goos); got != c.want {
			t.Errorf("repeatHint(%v, %s) = %q, want %q", c.sig, c.goos, got, c.want)
		}
	}
}
