package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/train"
)

func TestEvalJSON(t *testing.T) {
	run, _, eval := trainRun(t)
	best := filepath.Join(run, checkpoint.BestLink)
	var docs []evalDocument
	// A run directory, a checkpoint directory and a model file are the
	// same model.
	for _, model := range []string{run, best, filepath.Join(best, checkpoint.ModelFile)} {
		out := mustRun(t, "eval", "--model", model, "--eval", eval, "--json")
		var doc evalDocument
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("eval --json output does not parse: %v\n%s", err, out)
		}
		docs = append(docs, doc)
	}
	doc := docs[0]
	// The file the best link led to, named where it is: the link moves on.
	real, err := filepath.EvalSymlinks(filepath.Join(best, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if doc.Model != real || !filepath.IsAbs(doc.Model) || doc.Config.InputDim != tIn || doc.Config.OutputDim != tOut {
		t.Errorf("eval --json: model %s (want %s), config %+v", doc.Model, real, doc.Config)
	}
	m, err := checkpoint.ReadModel(real)
	if err != nil {
		t.Fatal(err)
	}
	if want := train.ParamsSHA256(m.Params); doc.ParamsSHA256 != want {
		t.Errorf("eval --json: params_sha256 %q, want %q", doc.ParamsSHA256, want)
	}
	if doc.Step == nil || doc.Epoch == nil {
		t.Errorf("eval --json has no step and epoch of the checkpoint")
	}
	if doc.Device != "cpu" || doc.Precision != "fp32" {
		t.Errorf("eval --json: device %q, precision %q; want the CPU's default, cpu and fp32", doc.Device, doc.Precision)
	}
	if len(doc.Reports) != 1 {
		t.Fatalf("eval --json: %d reports, want 1", len(doc.Reports))
	}
	r := doc.Reports[0]
	if r.Name != "tiny-eval" || r.CLIP.Images != tImages || r.CLIP.Captions != tCaptions || len(r.Projected.Recall) != 3 || len(r.CLIP.Recall) != 3 {
		t.Fatalf("eval --json report: %+v", r)
	}
	for _, rk := range r.Projected.Recall {
		if rk.TextToImagePercent <= 0 || rk.TextToImagePercent > 100 || rk.ImageToTextPercent <= 0 || rk.ImageToTextPercent > 100 {
			t.Errorf("projected recall %+v out of (0, 100]", rk)
		}
	}
	if r5, _ := r.CLIP.At(5); r5.TextToImagePercent != 100 {
		t.Errorf("CLIP's own R@5 on a set of near-duplicate captions is %v, want 100", r5.TextToImagePercent)
	}
	for _, d := range docs[1:] {
		if d.Model != doc.Model || d.ParamsSHA256 != doc.ParamsSHA256 || d.Reports[0].Projected.Recall[1] != r.Projected.Recall[1] {
			t.Errorf("eval of %s differs from eval of the run", d.Model)
		}
	}
	// The same numbers as the training run's evaluation of that checkpoint.
	if logged := evalAt(run, *doc.Step, false); len(logged) != 1 || logged[0].Projected.Recall[1] != r.Projected.Recall[1] {
		t.Errorf("eval R@5 %+v, metrics.jsonl at step %d has %+v", r.Projected.Recall[1], *doc.Step, logged)
	}
}

func TestEvalTable(t *testing.T) {
	run, _, eval := trainRun(t)
	eval2 := makeEvalSet(t, "second")
	out := mustRun(t, "eval", "--model", run, "--eval", eval, "--eval", eval2)
	for _, s := range []string{"tiny-eval", "second", "text->image", "image->text", "R@10", "% of CLIP", "16 images, 32 captions"} {
		if !strings.Contains(out, s) {
			t.Errorf("eval output lacks %q:\n%s", s, out)
		}
	}
	// The table has a header of two lines, two rows per set and a footnote.
	sc := bufio.NewScanner(strings.NewReader(out[strings.Index(out, "--- CLIP"):]))
	n := 0
	for sc.Scan() {
		n++
	}
	if n != 2+2*2+1 {
		t.Errorf("table of %d lines, want 7:\n%s", n, out)
	}
}

func TestEvalErrors(t *testing.T) {
	run, _, eval := trainRun(t)
	missing := filepath.Join(t.TempDir(), "missing")
	// A set of the right shape for another model: 5-wide embeddings.
	other := filepath.Join(t.TempDir(), "other")
	os.Mkdir(other, 0o755)
	writeF32(t, filepath.Join(other, retrieval.ImageFeaturesFile), []int{2, tIn}, make([]float32, 2*tIn))
	writeF32(t, filepath.Join(other, retrieval.ImageCLIPFile), []int{2, 5}, []float32{1, 0, 0, 0, 0, 0, 1, 0, 0, 0})
	writeF32(t, filepath.Join(other, retrieval.CaptionCLIPFile), []int{2, 5}, []float32{1, 0, 0, 0, 0, 0, 1, 0, 0, 0})
	if err := npy.WriteInt64(filepath.Join(other, retrieval.CaptionImageFile), []int{2}, []int64{0, 1}); err != nil {
		t.Fatal(err)
	}
	notModel := filepath.Join(t.TempDir(), "x.safetensors")
	os.WriteFile(notModel, []byte("not a model"), 0o644)
	// A training checkpoint's run directory without any checkpoint yet.
	emptyRun := t.TempDir()
	os.WriteFile(filepath.Join(emptyRun, train.RunFile), []byte("{}"), 0o644)

	namesake := filepath.Join(t.TempDir(), "copy") // another set of the same name
	if err := os.CopyFS(namesake, os.DirFS(eval)); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"missing model", []string{"eval", "--eval", eval}, []string{"missing --model"}},
		{"missing eval", []string{"eval", "--model", run}, []string{"missing --eval"}},
		{"nonexistent model", []string{"eval", "--model", missing, "--eval", eval}, []string{missing}},
		{"not a model", []string{"eval", "--model", notModel, "--eval", eval}, []string{notModel}},
		{"run without checkpoints", []string{"eval", "--model", emptyRun, "--eval", eval}, []string{emptyRun, "no best or last"}},
		{"nonexistent eval set", []string{"eval", "--model", run, "--eval", missing}, []string{missing, "no such directory"}},
		{"eval set not fitting the model", []string{"eval", "--model", run, "--eval", other}, []string{other, "8 -> 5", "8 -> 4"}},
		{"one set twice", []string{"eval", "--model", run, "--eval", eval, "--eval", eval + "/."}, []string{"given twice", "give each set once"}},
		{"duplicate set names", []string{"eval", "--model", run, "--eval", eval, "--eval", namesake}, []string{"both named"}},
		{"cuda in the default build", []string{"eval", "--model", run, "--eval", eval, "--device", "cuda"}, []string{"built without CUDA"}},
		{"unknown device", []string{"eval", "--model", run, "--eval", eval, "--device", "gpu"}, []string{`"gpu"`}},
		{"bf16 on the CPU", []string{"eval", "--model", run, "--eval", eval, "--precision", "bf16"}, []string{"--precision bf16", "GPU"}},
		{"unknown precision", []string{"eval", "--model", run, "--eval", eval, "--precision", "fp16"}, []string{`--precision "fp16"`, "fp32 or bf16"}},
	}
	for _, c := range cases {
		if cudaBuild && c.name == "cuda in the default build" {
			continue // the GPU engine is there: nothing to refuse
		}
		t.Run(c.name, func(t *testing.T) { wantError(t, c.args, c.wants...) })
	}
}

// eval --json of a model whose path is not UTF-8 text warns that the
// document records it as another; the table, which records nothing, does
// not.
func TestEvalJSONWarnsOfPathRecordedAsOther(t *testing.T) {
	run, _, eval := trainRun(t)
	// (The run itself so named: the document records the model file where
	// links lead.)
	odd := filepath.Join(t.TempDir(), "run\xff")
	const warning = "the path is not UTF-8 text, and the JSON document records it as text"
	for _, c := range []struct {
		model  string
		json   bool
		warned bool
	}{{run, true, false}, {odd, true, true}, {odd, false, false}} {
		if c.model == odd && run != odd {
			if err := os.Rename(run, odd); err != nil {
				t.Skipf("no directory named with bytes that are not UTF-8 here: %v", err)
			}
			run = odd
		}
		args := []string{"eval", "--model", c.model, "--eval", eval}
		if c.json {
			args = append(args, "--json")
		}
		_, stderr, err := runCLI(t, args...)
		if err != nil || strings.Contains(stderr, warning) != c.warned {
			t.Errorf("eval --model %q (--json %v): %v, want warned %v:\n%s", c.model, c.json, err, c.warned, stderr)
		}
	}
}

// A model whose projections are all zero (its output LayerNorm's weight
// and bias zeroed) is evaluated, its recall an ordering of ties, with a
// warning, and --json counts them; a sound model's evaluation has neither.
func TestEvalWarnsOfZeroProjections(t *testing.T) {
	run, _, eval := trainRun(t)
	m, err := checkpoint.ReadModel(filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"layer_norm.weight", "layer_norm.bias"} {
		tn, ok := m.Config.Layout().Lookup(name)
		if !ok {
			t.Fatalf("no %s in the layout", name)
		}
		clear(m.Params[tn.Offset : tn.Offset+tn.Size()])
	}
	zero := filepath.Join(t.TempDir(), "zero.safetensors")
	if err := checkpoint.WriteModel(zero, m.Config, m.Params, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		model string
		tiny  int
	}{{run, 0}, {zero, 16}} {
		out, stderr, err := runCLI(t, "eval", "--model", c.model, "--eval", eval, "--json")
		if err != nil {
			t.Fatal(err)
		}
		var doc evalDocument
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(stderr, "the model's projections of 16 of 16 images are zero or shorter than 1e-12")
		if got := doc.Reports[0].TinyProjections; got != c.tiny || warned != (c.tiny > 0) || strings.Contains(out, "tiny_projections") != (c.tiny > 0) {
			t.Errorf("eval of %s: %d tiny projections (want %d), warned %v; stderr:\n%s", c.model, got, c.tiny, warned, stderr)
		}
	}
}
