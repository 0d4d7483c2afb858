package train

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
)

// resumeAt is the state of a run resumed at step (evalPending: with the
// evaluation of its epoch's end to do).
func resumeAt(step int, evalPending bool) State {
	st := State{Step: step}
	if evalPending {
		st.PendingEval = &PendingEval{}
	}
	return st
}

// A metrics.jsonl line longer than a resume reads is an error, not the
// end of the file: the lines after it used to be dropped from the
// rewritten log without a word.
func TestOpenMetricsRefusesOverlongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), MetricsFile)
	record := []byte(`{"type":"train","step":1}` + "\n")
	var b bytes.Buffer
	b.Write(record)
	b.WriteString(`{"type":"train","step":2,"note":"`)
	b.Write(bytes.Repeat([]byte("x"), MaxMetricsLine))
	b.WriteString("\"}\n")
	b.Write(record)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := openMetrics(context.Background(), path, resumeAt(10, false), slog.New(slog.DiscardHandler))
	if err == nil {
		m.Close()
		t.Fatal("openMetrics accepted a line longer than it reads")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "too long") {
		t.Errorf("error %q does not name the file and the overlong line", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, b.Bytes()) {
		t.Errorf("the refused metrics file was rewritten (%d bytes, was %d)", len(after), b.Len())
	}
}

// Lines of the metrics log that are no record are dropped with a warning
// (the records they held are lost), but for the torn last line a kill
// leaves, which is expected, unless it is of a step the resume does not
// train again (cut by hand), and blank lines, which held none; records
// past the step resumed from go without one. The file left holds the records kept, each on its line.
func TestOpenMetricsWarnsOfDamage(t *testing.T) {
	const one, two = `{"type":"train","step":1}` + "\n", `{"type":"train","step":2}` + "\n"
	for _, c := range []struct {
		name, text, kept    string
		warned, evalPending bool
	}{
		{"torn last line", one + `{"type":"tr`, one, false, false},
		{"torn last line of a later step", one + `{"loss":0.5,"step":11,"ty`, one, false, false},
		{"torn last line of a step resumed past", one + `{"loss":0.5,"step":2,"ty`, one, true, false},
		{"torn last line of the step resumed from", one + `{"loss":0.5,"step":10,"ty`, one, true, false},
		{"torn evaluation of the step resumed from, pending", one + `{"sets":[],"step":10,"ti`, one, false, true},
		{"records past the step", one + `{"type":"train","step":12}` + "\n", one, false, false},
		{"a damaged line", one + "\x00\x00\x00\n" + two, one + two, true, false},
		{"a damaged last line, whole", one + `garbage` + "\n", one, true, false},
		{"no newline at the end", one + strings.TrimSuffix(two, "\n"), one + two, false, false},
		// (Sizes that match the lines kept, though a line went: rewritten.)
		{"an empty line, no newline at the end", one + "\n" + strings.TrimSuffix(two, "\n"), one + two, false, false},
		{"a line of blanks", one + " \t\r\n" + two, one + two, false, false},
		{"CRLF, no newline at the end", strings.TrimSuffix(one, "\n") + "\r\n" + strings.TrimSuffix(two, "\n"), one + two, false, false},
		{"CRLF", strings.TrimSuffix(one, "\n") + "\r\n" + two, one + two, false, false},
		{"all kept", one + two, one + two, false, false},
	} {
		path := filepath.Join(t.TempDir(), MetricsFile)
		os.WriteFile(path, []byte(c.text), 0o644)
		var log bytes.Buffer
		m, err := openMetrics(context.Background(), path, resumeAt(10, c.evalPending), slog.New(slog.NewTextHandler(&log, nil)))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		m.Close()
		if warned := strings.Contains(log.String(), "the records they held are lost") || strings.Contains(log.String(), "the record is lost"); warned != c.warned {
			t.Errorf("%s: warned %v, want %v:\n%s", c.name, warned, c.warned, log.String())
		}
		if b, _ := os.ReadFile(path); string(b) != c.kept {
			t.Errorf("%s: the file holds %q, want %q", c.name, b, c.kept)
		}
	}
}

// keepMetrics counts a line it drops against the records missing only
// where the line still shows a record of a step, and a type, that the
// resume keeps: a note written in (even one quoting a step), a blank line,
// a line of zeros and a record past the checkpoint hold none it keeps, and
// counted, they would hide a record really lost.
func TestKeepMetricsCountsTheRecordsItDrops(t *testing.T) {
	const one = `{"loss":1,"step":1,"type":"train"}` + "\n"
	for _, c := range []struct {
		name, text  string
		evalPending bool
		records     int
		dropped     int
	}{
		{"a train record damaged past its step", one + `{"loss":1,"step":2,"ty\x00\x00}` + "\n", false, 1, 1},
		{"a train record cut off last", one + `{"loss":1,"step":2,"type":"tr`, false, 1, 1},
		{"a train record of the step, an evaluation pending", one + `{"loss":1,"step":10,"type":"train"` + "\x00\n", true, 1, 1},
		{"the pending evaluation's record", one + `{"sets":[],"step":10,"type":"eval"` + "\x00\n", true, 1, 0},
		{"a record of the step, its type lost, an evaluation pending", one + `{"loss":1,"step":10,` + "\x00\n", true, 1, 0},
		{"a record past the checkpoint", one + `{"loss":1,"step":11,"ty` + "\x00\n", false, 1, 0},
		{"a note quoting a step", `# lowered the lr after "step":3, by hand` + "\n" + one, false, 1, 0},
		{"a line of zeros", "\x00\x00\x00\n" + one, false, 1, 0},
		{"a blank line", "\n" + one, false, 1, 0},
	} {
		path := filepath.Join(t.TempDir(), MetricsFile)
		if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		records, dropped, _, err := keepMetrics(context.Background(), f, path, 10, c.evalPending, slog.New(slog.DiscardHandler))
		f.Close()
		if err != nil || records != c.records || dropped != c.dropped {
			t.Errorf("%s: %d records kept, %d dropped counted (%v); want %d and %d", c.name, records, dropped, err, c.records, c.dropped)
		}
	}
}

// Reading a long metrics log stops when the run is interrupted (a log of
// gigabytes took a minute, deaf to Ctrl-C), and leaves the file as it was.
func TestOpenMetricsStopsWhenInterrupted(t *testing.T) {
	path := filepath.Join(t.TempDir(), MetricsFile)
	text := strings.Repeat(`{"type":"train","step":1}`+"\n", 10000) + `{"type":"train","step":12}` + "\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, err := openMetrics(ctx, path, resumeAt(10, false), slog.New(slog.DiscardHandler)); !errors.Is(err, context.Canceled) {
		if m != nil {
			m.Close()
		}
		t.Fatalf("openMetrics after an interrupt: %v, want context.Canceled", err)
	}
	if b, _ := os.ReadFile(path); string(b) != text {
		t.Errorf("an interrupted openMetrics changed the file (%d bytes, was %d)", len(b), len(text))
	}
}

// emaRun trains loopOptions with a moving average of the weights and
// stops after n steps, leaving a run to resume.
func emaRun(t *testing.T, dataDir string, n int) (runDir string) {
	t.Helper()
	runDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTrainer(t, dataDir, runDir, func(e nn.Engine) nn.Engine { return &cancelAfter{Engine: e, n: n, cancel: cancel} })
	tr.Options.EMA = 0.75
	if _, err := tr.Run(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("run stopped after %d steps: %v", n, err)
	}
	return runDir
}

// An ema.safetensors copied in from another checkpoint is refused on
// resume, as a model or optimizer file copied in is: the run would go on
// from the moving average of another step (and pick another best than
// the run never stopped).
func TestResumeRefusesEMAOfAnotherStep(t *testing.T) {
	dataDir := t.TempDir()
	tinyData(t, dataDir, 100, 40, loopModel.InputDim, loopModel.OutputDim, false)
	early, runDir := emaRun(t, dataDir, 5), emaRun(t, dataDir, 17)
	b, err := os.ReadFile(filepath.Join(early, checkpoint.LastLink, checkpoint.EMAFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runDir, checkpoint.LastLink, checkpoint.EMAFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = newTrainer(t, dataDir, runDir, nil).Run(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), checkpoint.EMAFile) || !strings.Contains(err.Error(), "step 5") || !strings.Contains(err.Error(), "step 17") {
		t.Errorf("resume with the %s of step 5 in the checkpoint of step 17: %v", checkpoint.EMAFile, err)
	}
}

// A new run whose run.json cannot be written leaves no checkpoints
// directory of its own making (the run refused leaves what it found).
func TestStartRunDirFailureLeavesNoCheckpointsDir(t *testing.T) {
	dir := t.TempDir()
	var info RunInfo
	info.Options.MaxLR = math.NaN() // (which JSON cannot write)
	if err := startRunDir(dir, info); err == nil {
		t.Fatal("a run.json that cannot be written: no error")
	}
	if _, err := os.Lstat(filepath.Join(dir, CheckpointsDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the failed start left %s: %v", CheckpointsDir, err)
	}
}

// A metrics record that cannot be written stops the run with what is left
// of it and how to go on, as a failed save does (a full disk is the usual
// cause).
func TestFailedMetricsWriteSaysHowToGoOn(t *testing.T) {
	runDir := t.TempDir()
	path := filepath.Join(runDir, MetricsFile)
	os.WriteFile(path, nil, 0o644)
	f, err := os.Open(path) // (read only: the write fails)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := &Trainer{RunDir: runDir, metrics: &metricsWriter{f: f, path: path}}
	err = tr.writeMetrics(State{Step: 3}, map[string]any{"type": "train", "step": 3})
	if want := "the run stopped before its first checkpoint; start it again once the problem is fixed"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a failed metrics write: %v, want the advice %q", err, want)
	}
}

// A record's clock fields come out of the digested text wherever they
// stand, with the comma beside them, and nothing else does.
func TestWithoutClock(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{`{"beta1":0.95,"epoch":1,"loss":0.5,"lr":0.001,"samples_per_s":1234.5,"step":3,"time":"2026-12-07T09:00:00Z","type":"train"}`,
			`{"beta1":0.95,"epoch":1,"loss":0.5,"lr":0.001,"step":3,"type":"train"}`},
		{`{"beta1":0.95,"step":3,"time":"2026-12-07T09:00:00Z"}`, `{"beta1":0.95,"step":3}`},
		{`{"time":"x","step":3}`, `{"step":3}`},
		{`{"samples_per_s":7}`, `{}`},
		{`{"epoch":1,"metric":"r5","sets":[{"name":"coco"}],"step":3,"time":"2026-12-07T09:00:00Z","train_loss":0.5,"type":"eval","value":50}`,
			`{"epoch":1,"metric":"r5","sets":[{"name":"coco"}],"step":3,"train_loss":0.5,"type":"eval","value":50}`},
		{`{"step":3,"note":"\"time\":1"}`, `{"step":3,"note":"\"time\":1"}`}, // (no member in a string)
		{`{"step":3,"time":"cut`, `{"step":3,"time":"cut`},
	} {
		line := []byte(c.line)
		if got := string(withoutClock(line)); got != c.want {
			t.Errorf("withoutClock(%s) = %s, want %s", c.line, got, c.want)
		}
		if string(line) != c.line {
			t.Errorf("withoutClock changed its argument to %s", line)
		}
	}
}
