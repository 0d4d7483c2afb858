package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/safetensors"
	"github.com/dinoclip/dinoclip/train"
)

func TestInfo(t *testing.T) {
	run, data, eval := trainRun(t)
	best := filepath.Join(run, checkpoint.BestLink)
	cases := []struct {
		path  string
		wants []string
	}{
		{run, []string{"training run", "checkpoints: 2", "last -> checkpoints/step-00000008", "best -> checkpoints/step-",
			"8 -> 8 x 1 residual blocks -> 4 -> 4, 328 parameters", "finished, 2 epochs, 8 optimizer steps", "best so far: r5 = ", "training data: 64 rows, 8 -> 4"}},
		{best, []string{"training checkpoint", "input_dim 8, hidden_dim 8, output_dim 4, num_residual_blocks 1", "328 (F32", "best so far"}},
		{filepath.Join(best, checkpoint.ModelFile), []string{"model", "dinoclip-model/1", "parameters: 328", "trained: epoch ", ", in fp32",
			// the evaluation reports stored in the model, as eval's table
			"metrics at this checkpoint:\n", "    set        direction", "    tiny-eval  text->image", "% of CLIP = projection R@5"}},
		{filepath.Join(best, checkpoint.OptimizerFile), []string{"a checkpoint's optimizer state", "progress: ", "options: batch 16", "seed 0, checkpoints at epoch ends, keep", "training data: 64 rows"}},
		{data, []string{"training data", "shards: 2", "rows: 64", "8 -> 4", "shard-00001: 24 rows, features float16, targets float32"}},
		{eval, []string{`evaluation set "tiny-eval"`, "images: 16", "captions: 32 (2 to 2 per image)", "features 8, embeddings 4", "captions.image.npy: [32] int64"}},
		{filepath.Join(data, "shard-00001.dino.npy"), []string{".npy array", "shape: [24, 8]", "float16"}},
	}
	for _, c := range cases {
		out := mustRun(t, "info", c.path)
		for _, w := range c.wants {
			if !strings.Contains(out, w) {
				t.Errorf("info %s lacks %q:\n%s", c.path, w, out)
			}
		}
		if strings.Contains(out, `{"`) {
			t.Errorf("info %s prints raw JSON:\n%s", c.path, out)
		}
	}
	// A directory whose name a glob would read as a pattern is training
	// data all the same, as train takes it.
	odd := filepath.Join(t.TempDir(), "d[1]*?")
	if err := os.Rename(data, odd); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, "info", odd); !strings.Contains(out, "training data\n  shards: 2") {
		t.Errorf("info %s:\n%s", odd, out)
	}
	// Data sets holding another tool's manifest.json or a search.json are
	// data sets all the same.
	for _, dir := range []string{odd, eval} {
		for _, name := range []string{retrieval.IndexManifestFile, searchInfoFile} {
			stray := filepath.Join(dir, name)
			os.WriteFile(stray, []byte(`{"files": []}`), 0o644)
			if out := mustRun(t, "info", dir); !strings.Contains(out, "training data\n") && !strings.Contains(out, "evaluation set") {
				t.Errorf("info %s beside a stray %s:\n%s", dir, name, out)
			}
			os.Remove(stray)
		}
	}
}

// info counts a run's evaluation records up to its last checkpoint, and
// apart those after it, which a resume drops (a kill between an
// evaluation's record and its checkpoint leaves one).
func TestInfoCountsEvaluations(t *testing.T) {
	run, _, _ := trainRun(t)
	metrics := filepath.Join(run, train.MetricsFile)
	b, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(b), `"type":"eval"`)
	if n == 0 {
		t.Fatalf("no evaluation records in %s:\n%s", metrics, b)
	}
	if out := mustRun(t, "info", run); !strings.Contains(out, fmt.Sprintf("evaluations: %d in %s\n", n, train.MetricsFile)) {
		t.Errorf("info of a run with %d evaluations:\n%s", n, out)
	}
	f, _ := os.OpenFile(metrics, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"type":"eval","step":999999,"epoch":9}` + "\n")
	f.Close()
	if out := mustRun(t, "info", run); !strings.Contains(out, fmt.Sprintf("evaluations: %d in %s, and 1 after the last checkpoint", n, train.MetricsFile)) {
		t.Errorf("info of a run with an evaluation record after its last checkpoint:\n%s", out)
	}
	// A torn last line (a kill leaves one) is expected, not damage; a line
	// that is no record before the end is damage, which a resume drops
	// with a warning: info says so before the resume.
	appendLines := func(s string) {
		f, _ := os.OpenFile(metrics, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString(s)
		f.Close()
	}
	appendLines(`{"type":"train","st`)
	if out := mustRun(t, "info", run); strings.Contains(out, "DAMAGED") {
		t.Errorf("info of a run whose metrics log ends in a torn line calls it damaged:\n%s", out)
	}
	appendLines("\nnot a record\n")
	if out := mustRun(t, "info", run); !strings.Contains(out, train.MetricsFile+": DAMAGED: lines that are no record (edited, or damaged by the disk): 2;") {
		t.Errorf("info of a run whose metrics log holds 2 lines that are no record:\n%s", out)
	}
	// A line longer than any training writes stops the count: the file is
	// called damaged, as a resume calls it, not counted to that line.
	f, _ = os.OpenFile(metrics, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(strings.Repeat("x", train.MaxMetricsLine) + "\n" + `{"type":"eval","step":1,"epoch":1}` + "\n")
	f.Close()
	if out := mustRun(t, "info", run); !strings.Contains(out, "evaluations: DAMAGED: "+metrics+": bufio.Scanner: token too long (a line longer than 64 MiB)") {
		t.Errorf("info of a run whose metrics file holds a line longer than training writes:\n%s", out)
	}
}

// info on a run says when a process trains in it (holds its lock): its
// state is its last checkpoint's, and no checkpoint yet is no stop.
func TestInfoRunTrainingNow(t *testing.T) {
	run, _, _ := trainRun(t)
	fresh := t.TempDir()
	os.Mkdir(filepath.Join(fresh, train.CheckpointsDir), 0o755)
	os.WriteFile(filepath.Join(fresh, train.RunFile), []byte(`{"options":{"epochs":3,"batch":8}}`), 0o644)
	if out := mustRun(t, "info", fresh); !strings.Contains(out, "the run stopped before its first one") || strings.Contains(out, "training now") {
		t.Errorf("info on a run stopped before its first checkpoint:\n%s", out)
	}
	for _, dir := range []string{run, fresh} {
		lock, err := train.LockRunDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		out := mustRun(t, "info", dir)
		lock.Release()
		if want := "training now (pid " + strconv.Itoa(os.Getpid()) + ")"; !strings.Contains(out, want) || strings.Contains(out, "stopped") {
			t.Errorf("info on a run being trained lacks %q or says it stopped:\n%s", want, out)
		}
	}
}

// info on a damaged run says what a resume would say, and the way back:
// a last link removed, or leading to a checkpoint removed, was "no
// checkpoint yet (the run stopped before its first one)", and a run.json
// cut short went unmentioned.
func TestInfoDamagedRun(t *testing.T) {
	run, _, _ := trainRun(t)
	runFile := filepath.Join(run, train.RunFile)
	whole, err := os.ReadFile(runFile)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(runFile, whole[:len(whole)/2], 0o644)
	if out := mustRun(t, "info", run); !strings.Contains(out, train.RunFile+": NOT READABLE") {
		t.Errorf("info on a run whose run.json is cut short:\n%s", out)
	}
	os.WriteFile(runFile, whole, 0o644)
	// The last checkpoint's model from another checkpoint: by the steps
	// their headers record, not one checkpoint.
	model := filepath.Join(run, train.CheckpointsDir, "step-00000008", checkpoint.ModelFile)
	saved, _ := os.ReadFile(model)
	other, err := os.ReadFile(filepath.Join(run, train.CheckpointsDir, "step-00000004", checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(model, other, 0o644)
	if out := mustRun(t, "info", run); !strings.Contains(out, "NOT RESUMABLE") || !strings.Contains(out, "model.safetensors is of step 4, optimizer.safetensors of step 8") {
		t.Errorf("info on a run whose last checkpoint's model is step 4's:\n%s", out)
	}
	// So is the checkpoint, described alone.
	if out := mustRun(t, "info", filepath.Dir(model)); !strings.Contains(out, "NOT ONE CHECKPOINT") || !strings.Contains(out, "model.safetensors is of step 4, optimizer.safetensors of step 8") {
		t.Errorf("info on a checkpoint whose model is step 4's:\n%s", out)
	}
	os.WriteFile(model, saved, 0o644)
	if out := mustRun(t, "info", filepath.Dir(model)); strings.Contains(out, "NOT ONE CHECKPOINT") {
		t.Errorf("info on a whole checkpoint:\n%s", out)
	}
	last := filepath.Join(run, checkpoint.LastLink)
	// Stopped while linking its last checkpoint (the new link made, not
	// yet renamed into place): resumable, and said so.
	pending := filepath.Join(run, ".last.tmp")
	os.Rename(last, pending)
	if out := mustRun(t, "info", run); strings.Contains(out, "NOT RESUMABLE") || strings.Contains(out, "no checkpoint yet") ||
		!strings.Contains(out, "last checkpoint: checkpoints/step-00000008, not linked as last yet (the run was stopped while linking it): dinoclip train --resume links it") {
		t.Errorf("info on a run stopped while linking its last checkpoint:\n%s", out)
	}
	// With its run.json edited, it is not: and no resume is promised.
	runJSON := filepath.Join(run, train.RunFile)
	kept, edited := readJSONDoc(t, runJSON)
	edited["options"].(map[string]any)["epochs"] = 99
	b, _ := json.Marshal(edited)
	writeFile(t, runJSON, string(b))
	if out := mustRun(t, "info", run); !strings.Contains(out, "NOT RESUMABLE") || !strings.Contains(out, "epochs 2 in the checkpoint, 99 in run.json") || strings.Contains(out, "links it") {
		t.Errorf("info on a run stopped while linking its last checkpoint, its run.json edited:\n%s", out)
	}
	writeFile(t, runJSON, string(kept))
	os.Rename(pending, last)
	elsewhere := filepath.Join(t.TempDir(), "step-00000008")
	if err := os.CopyFS(elsewhere, os.DirFS(filepath.Join(run, train.CheckpointsDir, "step-00000008"))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		damage func()
		want   string
	}{
		{"its last checkpoint's optimizer state cut short", func() {
			os.Truncate(filepath.Join(run, train.CheckpointsDir, "step-00000008", checkpoint.OptimizerFile), 0)
		}, "last checkpoint lacks a whole optimizer.safetensors"},
		{"its last checkpoint's optimizer state removed", func() {
			os.Remove(filepath.Join(run, train.CheckpointsDir, "step-00000008", checkpoint.OptimizerFile))
		}, "last checkpoint lacks a whole optimizer.safetensors"},
		// (described as the run's own, with that checkpoint's model)
		{"last leading out of the run", func() { os.Remove(last); os.Symlink(elsewhere, last) }, "which is not a checkpoint in"},
		{"last a directory", func() { os.Remove(last); os.CopyFS(last, os.DirFS(elsewhere)) }, "is not a link to a checkpoint"},
		{"no last link", func() { os.RemoveAll(last) }, "but no last link"},
		{"last checkpoint removed", func() { os.Symlink("checkpoints/step-00000099", last) }, "last checkpoint is missing"},
	} {
		c.damage()
		out := mustRun(t, "info", run)
		if !strings.Contains(out, "NOT RESUMABLE") || !strings.Contains(out, c.want) || strings.Contains(out, "no checkpoint yet") || strings.Contains(out, "model:") {
			t.Errorf("info on a run with %s, want NOT RESUMABLE and %q:\n%s", c.name, c.want, out)
		}
	}
}

// TestInfoSynthOut describes the directory that synth --out writes.
func TestInfoSynthOut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "synth")
	mustRun(t, "synth", "--out", dir, "--rows", "30", "--shard-rows", "20", "--eval-images", "4", "--captions-per-image", "2", "--input-dim", "8", "--output-dim", "4")
	out := mustRun(t, "info", dir)
	for _, w := range []string{dir + ": data directory", filepath.Join(dir, "train") + ": training data", "shards: 2", "rows: 30",
		filepath.Join(dir, "eval") + `: evaluation set "synth"`, "images: 4", "captions: 8 (2 to 2 per image)"} {
		if !strings.Contains(out, w) {
			t.Errorf("info %s lacks %q:\n%s", dir, w, out)
		}
	}
}

func TestInfoErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.bin")
	os.WriteFile(garbage, []byte("not anything"), 0o644)
	badNPY := filepath.Join(dir, "bad.npy")
	os.WriteFile(badNPY, []byte("\x93NUMPY\x01\x00"), 0o644)
	// A directory whose model.safetensors is no model is not first called
	// a checkpoint.
	mix := filepath.Join(t.TempDir(), "mix")
	os.Mkdir(mix, 0o755)
	writeF32(t, filepath.Join(mix, "model.safetensors"), []int{1, 2}, []float32{1, 2})
	if out, _, err := runCLI(t, "info", mix); err == nil || out != "" {
		t.Errorf("info of a directory whose model.safetensors is a .npy: %v, stdout %q; want an error alone", err, out)
	}
	lonely := filepath.Join(t.TempDir(), "data")
	os.Mkdir(lonely, 0o755)
	writeF32(t, filepath.Join(lonely, "a.dino.npy"), []int{1, 2}, []float32{1, 2})
	// (Features alone are described, as an extraction with --target none
	// writes them; beside a whole shard, one is half of a shard.)
	if out := mustRun(t, "info", lonely); !strings.Contains(out, lonely+": features without targets") || !strings.Contains(out, "a.dino.npy: 1 row of 2, float32") {
		t.Errorf("info of features alone:\n%s", out)
	}
	writeF32(t, filepath.Join(lonely, "b.dino.npy"), []int{1, 2}, []float32{1, 2})
	writeF32(t, filepath.Join(lonely, "b.clip.npy"), []int{1, 2}, []float32{1, 2})
	// Where extract texts wrote its queries (NAME.clip.npy, a training
	// shard's second half): no training data, though.
	queries := t.TempDir()
	writeF32(t, filepath.Join(queries, "sentences.clip.npy"), []int{1, 2}, []float32{1, 2})
	stateless := filepath.Join(t.TempDir(), checkpoint.OptimizerFile) // (the format's tag, no trainer state)
	if err := safetensors.Write(stateless, []safetensors.Tensor{safetensors.NewFloat32("m", []int{1}, []float32{0})}, map[string]string{"format": checkpoint.OptimizerFormat}); err != nil {
		t.Fatal(err)
	}
	laterState := filepath.Join(t.TempDir(), checkpoint.OptimizerFile)
	if err := safetensors.Write(laterState, []safetensors.Tensor{safetensors.NewFloat32("m", []int{1}, []float32{0})}, map[string]string{"format": "dinoclip-optimizer/2"}); err != nil {
		t.Fatal(err)
	}
	// Directories dinoclip writes that info does not describe whole are
	// sent to what it does describe.
	demoOut, benchOut := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(demoOut, demoMarker), nil, 0o644)
	os.WriteFile(filepath.Join(benchOut, benchJSONFile), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(benchOut, benchTextFile), []byte("x"), 0o644)
	run, _, _ := trainRun(t)
	// A record of a directory info describes as a whole (an extraction's
	// extract.json, a run's metrics.jsonl) is sent to the directory, not
	// read as a model; another file there is read as what it is (a .pt
	// beside the model converted from it, as convert to-dinoclip leaves it).
	partOfData := filepath.Join(lonely, "extract.json")
	os.WriteFile(partOfData, []byte(`{"dinov2": "x"}`), 0o644)
	imagesList := filepath.Join(lonely, "b.images.txt")
	os.WriteFile(imagesList, []byte("x.jpg\n"), 0o644)
	converted := filepath.Join(t.TempDir(), "ckpt")
	os.Mkdir(converted, 0o755)
	copyFile(t, filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile), filepath.Join(converted, checkpoint.ModelFile))
	torchFile := filepath.Join(converted, "orig.pt")
	os.WriteFile(torchFile, append([]byte("PK\x03\x04\x00\x00\x08\x00"), make([]byte, 64)...), 0o644) // (a zip's first bytes)
	// What an index killed in its first append leaves: its lock file and a
	// shard, no manifest.
	unfinished := t.TempDir()
	os.WriteFile(filepath.Join(unfinished, retrieval.IndexLockFile), nil, 0o644)
	writeF32(t, filepath.Join(unfinished, "keys-00000.npy"), []int{1, 2}, []float32{1, 0})
	killedEarly := t.TempDir() // (before its first rename)
	os.WriteFile(filepath.Join(killedEarly, retrieval.IndexLockFile), nil, 0o644)
	os.WriteFile(filepath.Join(killedEarly, ".keys-00000.npy.tmp-12"), []byte("half"), 0o644)
	cases := []struct {
		args  []string
		wants []string
	}{
		{[]string{"info"}, []string{"want one PATH"}},
		{[]string{"info", "a", "b"}, []string{"want one PATH"}},
		{[]string{"info", "a", "--help"}, []string{`"--help" after PATH`}},
		{[]string{"info", filepath.Join(dir, "nope")}, []string{filepath.Join(dir, "nope"), "no such file"}},
		{[]string{"info", dir}, []string{dir, "not a run, checkpoint, training data, evaluation set, index or search output"}},
		{[]string{"info", garbage}, []string{garbage + " is no file dinoclip describes"}},
		{[]string{"info", filepath.Join(run, train.CheckpointsDir)}, []string{"it is the checkpoints directory of the run " + run + ", which info describes (dinoclip info " + printable.ShellArg(run) + ")"}},
		{[]string{"info", demoOut}, []string{"it is a dinoclip demo's output, whose run and data info describes (dinoclip info " + printable.ShellArg(filepath.Join(demoOut, "run"))}},
		{[]string{"info", benchOut}, []string{"it holds a dinoclip bench's report, to read in " + filepath.Join(benchOut, benchTextFile)}},
		{[]string{"info", stateless}, []string{stateless + ": an optimizer file without the trainer state"}},
		{[]string{"info", laterState}, []string{laterState + ` is a checkpoint's trainer state in the format "dinoclip-optimizer/2", which this dinoclip does not read`}},
		{[]string{"info", filepath.Join(run, train.MetricsFile)}, []string{"is a file of " + run + ", which info describes as a whole"}},
		{[]string{"info", torchFile}, []string{torchFile + ": a PyTorch file (torch.save's format)"}},
		{[]string{"info", imagesList}, []string{imagesList + " is a file of " + lonely}},
		{[]string{"info", partOfData}, []string{partOfData + " is a file of " + lonely + ", which info describes as a whole: dinoclip info " + printable.ShellArg(lonely)}},
		{[]string{"info", badNPY}, []string{badNPY}},
		{[]string{"info", lonely}, []string{"a.dino.npy has no a.clip.npy"}},
		{[]string{"info", queries}, []string{queries, "not a run, checkpoint, training data, evaluation set, index or search output",
			"it holds .npy files, which info describes one at a time (dinoclip info " + printable.ShellArg(filepath.Join(queries, "sentences.clip.npy")) + ")"}},
		{[]string{"info", unfinished}, []string{"an index whose first append is running or was interrupted", "which removes its files and indexes them again"}},
		{[]string{"info", killedEarly}, []string{"an index whose first append is running or was interrupted"}},
	}
	for _, c := range cases {
		wantError(t, c.args, c.wants...)
	}
	// A description that cannot be written (a full disk, a closed pipe)
	// fails the command.
	npyFile := filepath.Join(dir, "ok.npy")
	writeF32(t, npyFile, []int{1, 2}, []float32{1, 2})
	app := newApp()
	app.Writer, app.ErrWriter = failingWriter{}, io.Discard
	if err := app.Run([]string{"dinoclip", "info", npyFile}); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("info into a full disk: %v, want the write's error", err)
	}
}

// failingWriter fails every write, as a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// info describes what index and search write: an index (its rows, width,
// dtype, model and shards with their sources) and a search's output.
func TestInfoIndexAndSearch(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	index := filepath.Join(dir, "ix")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index)
	out := mustRun(t, "info", index)
	abs, _ := filepath.Abs(filepath.Join(data, "shard-00001.dino.npy"))
	for _, w := range []string{index + ": search index", "rows: 64 of 4 float16 values", "shards: 2", "model: " + run, "sha256 ",
		"keys-00001.npy: ids 40 to 63, from " + abs} {
		if !strings.Contains(out, w) {
			t.Errorf("info %s lacks %q:\n%s", index, w, out)
		}
	}
	q := filepath.Join(dir, "q.npy")
	writeF32(t, q, []int{3, tOut}, []float32{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0})
	hits := filepath.Join(dir, "hits")
	mustRun(t, "search", "--index", index, "--queries", q, "--k", "5", "--out", hits)
	out = mustRun(t, "info", hits)
	for _, w := range []string{hits + ": search output", "top-5 of 64 rows for 3 queries", "index: " + index, "queries: " + q} {
		if !strings.Contains(out, w) {
			t.Errorf("info %s lacks %q:\n%s", hits, w, out)
		}
	}
	// A damaged search output is no search output: scores missing, or a
	// record that is not a search's.
	scores := filepath.Join(hits, searchScoresFile)
	saved, _ := os.ReadFile(scores)
	os.Remove(scores)
	wantError(t, []string{"info", hits}, searchScoresFile)
	os.WriteFile(scores, saved, 0o644)
	// ... or ids of a shape of their own: k wrong names that file; rows
	// other than the scores' name both.
	ids := filepath.Join(hits, searchIDsFile)
	savedIDs, _ := os.ReadFile(ids)
	for _, c := range []struct {
		shape []int
		wants []string
	}{
		{[]int{3, 4}, []string{ids + ": [3 4] array of int64", "says k 5"}},
		{[]int{2, 5}, []string{searchIDsFile + " has 2 rows and " + searchScoresFile + " 3 rows"}},
	} {
		if err := npy.WriteInt64(ids, c.shape, make([]int64, c.shape[0]*c.shape[1])); err != nil {
			t.Fatal(err)
		}
		wantError(t, []string{"info", hits}, c.wants...)
	}
	os.WriteFile(ids, savedIDs, 0o644)
	// What the record says is shown quoted when it is not plain text: a
	// path with terminal escapes does not reach the terminal raw.
	record, _ := os.ReadFile(filepath.Join(hits, searchInfoFile))
	var fields map[string]any
	if err := json.Unmarshal(record, &fields); err != nil {
		t.Fatal(err)
	}
	fields["index"] = "x\x1b[2Jy"
	edited, _ := json.Marshal(fields)
	os.WriteFile(filepath.Join(hits, searchInfoFile), edited, 0o644)
	if out := mustRun(t, "info", hits); strings.Contains(out, "\x1b") || !strings.Contains(out, `index: "x\x1b[2Jy"`) {
		t.Errorf("info of a search whose record names an index with escapes:\n%q", out)
	}
	os.WriteFile(filepath.Join(hits, searchInfoFile), []byte(`{"bogus": 1}`), 0o644)
	wantError(t, []string{"info", hits}, searchInfoFile, "bogus")
	// A damaged index is described as damaged, not as something else.
	os.Remove(filepath.Join(index, "ids-00000.npy"))
	if _, _, err := runCLI(t, "info", index); err == nil || !strings.Contains(err.Error(), "ids-00000.npy") {
		t.Errorf("info of an index without ids-00000.npy: %v", err)
	}
}

// The evaluation reports in a model's metadata: none for a run trained
// without an evaluation set ("[]"), which is no damage; anything else
// that is not reports is unreadable.
func TestWriteMetricsOfNoEvaluation(t *testing.T) {
	for meta, want := range map[string]string{
		"[]":   "metrics: none (trained without an evaluation set)",
		"null": "metrics: unreadable",
		"{}":   "metrics: unreadable",
		"[":    "metrics: unreadable",
	} {
		var b strings.Builder
		writeMetrics(&b, meta, "")
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics %q: %q, want %q", meta, b.String(), want)
		}
	}
}

// The reports of train, index, search and info show a path holding an
// ESC, a newline or a bidirectional override (a directory the user named
// so) as escapes: raw, it recoloured or split the terminal's lines.
func TestReportsEscapePaths(t *testing.T) {
	odd := filepath.Join(t.TempDir(), "esc\x1b[31m nl\n rtl\u202e")
	if err := os.Mkdir(odd, 0o755); err != nil {
		t.Fatal(err)
	}
	data, eval := makeData(t), makeEvalSet(t, "tiny")
	run, index, hits, syn := filepath.Join(odd, "run"), filepath.Join(odd, "ix"), filepath.Join(odd, "hits"), filepath.Join(odd, "syn")
	q := filepath.Join(t.TempDir(), "q.npy")
	writeF32(t, q, []int{1, tOut}, []float32{1, 0, 0, 0})
	for _, args := range [][]string{
		{"train", "--data", data, "--eval", eval, "--out", run, "--hidden-dim", "8", "--blocks", "1", "--epochs", "1", "--batch", "16"},
		{"index", "--model", run, "--features", data, "--out", index},
		{"search", "--index", index, "--queries", q, "--k", "2", "--out", hits},
		{"info", run},
		{"info", index},
		{"info", hits},
		{"synth", "--out", syn, "--rows", "64", "--shard-rows", "32", "--eval-images", "8", "--input-dim", strconv.Itoa(tIn), "--output-dim", strconv.Itoa(tOut)},
		{"info", syn},
		{"eval", "--model", run, "--eval", filepath.Join(syn, "eval")},
	} {
		out, errOut, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("dinoclip %s: %v\n%s", args[0], err, errOut)
		}
		// (The log's lines quote values themselves; the reports are the
		// other lines.)
		both := out + errOut
		if strings.ContainsAny(both, "\x1b\u202e") || !strings.Contains(both, `esc\x1b[31m nl\x0a rtl\u202e`) {
			t.Errorf("dinoclip %s shows the path raw, or not at all:\n%q", args[0], both)
		}
	}
	// Files of such names: shards of training data, features alone.
	shards := filepath.Join(syn, "train")
	feats := filepath.Join(odd, "feats")
	os.Mkdir(feats, 0o755)
	for _, suffix := range []string{".dino.npy", ".clip.npy"} {
		if err := os.Rename(filepath.Join(shards, "shard-00001"+suffix), filepath.Join(shards, "sh\x1b[31m1"+suffix)); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, filepath.Join(shards, "shard-00000.dino.npy"), filepath.Join(feats, "f\x1b[32mG.dino.npy"))
	for _, dir := range []string{shards, feats} {
		out, errOut, err := runCLI(t, "info", dir)
		if err != nil || strings.Contains(out+errOut, "\x1b") || !strings.Contains(out, `\x1b[3`) {
			t.Errorf("info %q: %v, shows a file's name raw, or not at all:\n%q", dir, err, out+errOut)
		}
	}
}
