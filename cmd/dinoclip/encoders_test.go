package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
)

// Model names as the Python extractor records them.
const (
	dinoBase = "facebook/dinov2-base"
	clipB32  = "openai/clip-vit-base-patch32"
	clipB16  = "openai/clip-vit-base-patch16"
)

// mismatchWarning is what every warning of vectors from two models says.
const mismatchWarning = "vectors of two models do not compare"

// stderrOf runs the app, fails the test on an error, and returns stderr.
func stderrOf(t *testing.T, args ...string) string {
	t.Helper()
	_, stderr, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("dinoclip %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr)
	}
	return stderr
}

// wantWarning checks that stderr warns of a mismatch naming wants, or,
// with no wants, that it warns of none.
func wantWarning(t *testing.T, what, stderr string, wants ...string) {
	t.Helper()
	if len(wants) == 0 {
		if strings.Contains(stderr, mismatchWarning) {
			t.Errorf("%s: a mismatch warned of where there is none:\n%s", what, stderr)
		}
		return
	}
	if !strings.Contains(stderr, mismatchWarning) {
		t.Errorf("%s: no mismatch warned of:\n%s", what, stderr)
	}
	for _, w := range wants {
		if !strings.Contains(stderr, w) {
			t.Errorf("%s: the warning does not say %q:\n%s", what, w, stderr)
		}
	}
}

// modelEncoders reads the encoders a model file records.
func modelEncoders(t *testing.T, path string) dataset.Encoders {
	t.Helper()
	m, err := checkpoint.ReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	return dataset.EncodersOf(m.Meta)
}

// The models that made the training data (its extract.json) go with the
// model trained on it: every checkpoint records them, info shows them, and
// eval, index, project, search and average warn where they bring together
// vectors of other models; a fine-tuning run on data without a record
// keeps its initial model's, through a resume.
func TestEncodersTravelWithTheModel(t *testing.T) {
	data := makeData(t)
	writeFile(t, filepath.Join(data, dataset.ExtractRecordFile),
		`{"target": "image", "dinov2": "`+dinoBase+`", "clip": "`+clipB32+`", "rows": 64}`)
	eval := makeEvalSet(t, "tiny-eval")
	other := makeEvalSet(t, "other-clip")
	writeFile(t, filepath.Join(other, "eval.json"), `{"name": "other-clip", "dinov2": "`+dinoBase+`", "clip": "`+clipB16+`"}`)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	stderr := stderrOf(t, append([]string{"train", "--data", data, "--eval", eval, "--eval", other, "--out", run,
		"--epochs", "1", "--batch", "16"}, tinyModel...)...)
	wantWarning(t, "train", stderr, `training data `+data+` was made with CLIP "`+clipB32+`", evaluation set other-clip with CLIP "`+clipB16+`"`)
	if strings.Count(stderr, mismatchWarning) != 1 {
		t.Errorf("train: the set of the same models (or none) was warned of too:\n%s", stderr)
	}
	want := dataset.Encoders{DINOv2: dinoBase, CLIP: clipB32}
	for _, link := range []string{checkpoint.LastLink, checkpoint.BestLink} {
		if got := modelEncoders(t, filepath.Join(run, link, checkpoint.ModelFile)); got != want {
			t.Errorf("%s checkpoint records %+v, want %+v", link, got, want)
		}
	}
	shown := `trained on: features of DINOv2 "` + dinoBase + `" and embeddings of CLIP "` + clipB32 + `"`
	for _, target := range []string{run, filepath.Join(run, checkpoint.LastLink, checkpoint.ModelFile)} {
		if out := mustRun(t, "info", target); !strings.Contains(out, shown) {
			t.Errorf("info %s does not say %q:\n%s", target, shown, out)
		}
	}

	for dir, want := range map[string]string{data: `extracted: features of DINOv2 "` + dinoBase + `" and embeddings of CLIP "` + clipB32 + `"`,
		other: `extracted: features of DINOv2 "` + dinoBase + `" and embeddings of CLIP "` + clipB16 + `"`} {
		if out := mustRun(t, "info", dir); !strings.Contains(out, want) {
			t.Errorf("info %s does not say %q:\n%s", dir, want, out)
		}
	}

	wantWarning(t, "eval, a set of another CLIP", stderrOf(t, "eval", "--model", run, "--eval", other),
		`the model `+filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile)+` was made with CLIP "`+clipB32+`", evaluation set other-clip with CLIP "`+clipB16+`"`)
	wantWarning(t, "eval, a set without a record", stderrOf(t, "eval", "--model", run, "--eval", eval))
	// A name that is none: the set loads, its models unknown.
	writeFile(t, filepath.Join(other, "eval.json"), `{"name": "other-clip", "clip": 5}`)
	if stderr := stderrOf(t, "eval", "--model", run, "--eval", other); !strings.Contains(stderr, "which DINOv2 and CLIP models made the set is not known") {
		t.Errorf("eval of a set whose eval.json names a number as its CLIP model:\n%s", stderr)
	}
	writeFile(t, filepath.Join(other, "eval.json"), `{"name": "other-clip", "dinov2": "`+dinoBase+`", "clip": "`+clipB16+`"}`)

	// Features of another DINOv2 model, as their extract.json says.
	small := filepath.Join(dir, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	x, _, err := npy.ReadFloat32(filepath.Join(data, "shard-00000.dino.npy"))
	if err != nil {
		t.Fatal(err)
	}
	x[1] += 3 // (a copy of an indexed file would be skipped)
	writeF32(t, filepath.Join(small, "shard-00000.dino.npy"), []int{40, tIn}, x)
	writeFile(t, filepath.Join(small, dataset.ExtractRecordFile), `{"target": "none", "dinov2": "facebook/dinov2-small", "clip": null}`)
	index := filepath.Join(dir, "index")
	wantWarning(t, "index, features of the training data's models", stderrOf(t, "index", "--model", run, "--features", data, "--out", index))
	wantWarning(t, "index, features of another DINOv2", stderrOf(t, "index", "--model", run, "--features", small, "--out", index),
		`the index `+index+` was made with DINOv2 "`+dinoBase+`", the features in `+small+` with DINOv2 "facebook/dinov2-small"`)
	wantWarning(t, "project, features of another DINOv2", stderrOf(t, "project", "--model", run,
		"--in", filepath.Join(small, "shard-00000.dino.npy"), "--out", filepath.Join(dir, "p.npy")), `"facebook/dinov2-small"`)
	ix, err := retrieval.OpenIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.Manifest.Model.Encoders; got != want {
		t.Errorf("the index records %+v, want %+v", got, want)
	}
	ix.Close()
	if out := mustRun(t, "info", index); !strings.Contains(out, shown) {
		t.Errorf("info of the index does not say %q:\n%s", shown, out)
	}
	// An index from before the names were recorded takes them with its next shard.
	manifest := filepath.Join(index, retrieval.IndexManifestFile)
	_, doc := readJSONDoc(t, manifest)
	delete(doc["model"].(map[string]any), "dinov2")
	delete(doc["model"].(map[string]any), "clip")
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, manifest, string(b))
	if out := mustRun(t, "info", index); !strings.Contains(out, "trained on: models not recorded") {
		t.Fatalf("info of an index without names does not say so:\n%s", out)
	}
	x[0] += 1 // (other contents: a copy would be skipped as indexed)
	writeF32(t, filepath.Join(dir, "more.dino.npy"), []int{40, tIn}, x)
	mustRun(t, "index", "--model", run, "--features", filepath.Join(dir, "more.dino.npy"), "--out", index)
	if out := mustRun(t, "info", index); !strings.Contains(out, shown) {
		t.Errorf("info of an index appended to does not say %q:\n%s", shown, out)
	}
	// A copy of the weights that names no models appends under the
	// index's names: features of another DINOv2 are warned of still.
	best, err := checkpoint.ReadModel(filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(dir, "copy.safetensors")
	if err := checkpoint.WriteModel(copied, best.Config, best.Params, nil); err != nil {
		t.Fatal(err)
	}
	// One that names others than the index's is warned of (the index
	// keeps its own).
	if err := checkpoint.WriteModel(copied, best.Config, best.Params, map[string]string{"clip": clipB16}); err != nil {
		t.Fatal(err)
	}
	wantWarning(t, "index with a copy of the model naming others", stderrOf(t, "index", "--model", copied, "--features", data, "--out", index),
		`the index `+index+` was made with CLIP "`+clipB32+`", the model `+copied+` with CLIP "`+clipB16+`"`)
	if err := checkpoint.WriteModel(copied, best.Config, best.Params, nil); err != nil {
		t.Fatal(err)
	}
	x[2] += 5
	writeF32(t, filepath.Join(small, "shard-00001.dino.npy"), []int{40, tIn}, x)
	wantWarning(t, "index with an unnamed copy of the model", stderrOf(t, "index", "--model", copied, "--features", filepath.Join(small, "shard-00001.dino.npy"), "--out", index),
		`the index `+index+` was made with DINOv2 "`+dinoBase+`", the features in `+small+` with DINOv2 "facebook/dinov2-small"`)

	// Queries with the record texts writes beside them.
	queries := filepath.Join(dir, "q.clip.npy")
	_, y := newWorld(3).sample(5)
	writeF32(t, queries, []int{5, tOut}, y)
	b, err = os.ReadFile(queries)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	record := func(clip, sha string) {
		writeFile(t, filepath.Join(dir, "q.clip.json"), `{"format": "`+dataset.QueriesRecordFormat+`", "clip": "`+clip+`", "rows": 5, "sha256": "`+sha+`"}`)
	}
	search := []string{"search", "--index", index, "--queries", queries, "--k", "3", "--out", filepath.Join(dir, "hits")}
	record(clipB16, hex.EncodeToString(sum[:]))
	wantWarning(t, "search, queries of another CLIP", stderrOf(t, search...),
		`the index `+index+` was made with CLIP "`+clipB32+`", the queries `+queries+` with CLIP "`+clipB16+`"`)
	record(clipB32, hex.EncodeToString(sum[:]))
	wantWarning(t, "search, queries of the index's CLIP", stderrOf(t, search...))
	record(clipB16, strings.Repeat("0", 64))
	if stderr := stderrOf(t, search...); !strings.Contains(stderr, "describes another q.clip.npy") {
		t.Errorf("search with a record of another file does not say so:\n%s", stderr)
	} else {
		wantWarning(t, "search, a stale record", stderr)
	}
	writeFile(t, filepath.Join(dir, "q.clip.json"), `{"clip": "`+clipB16+`"}`) // (a user's own JSON)
	if stderr := stderrOf(t, search...); strings.Contains(stderr, "warning") {
		t.Errorf("search took a file that is no queries record for one:\n%s", stderr)
	}

	// An average of models trained towards two CLIP models is neither's.
	mm, err := checkpoint.ReadModel(filepath.Join(run, checkpoint.LastLink, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	mm.Params[0] += 1
	b16 := filepath.Join(dir, "b16.safetensors")
	if err := checkpoint.WriteModel(b16, mm.Config, mm.Params, map[string]string{"dinov2": dinoBase, "clip": clipB16}); err != nil {
		t.Fatal(err)
	}
	soup := filepath.Join(dir, "soup.safetensors")
	wantWarning(t, "average", stderrOf(t, "average", "--out", soup, run, b16), `model `+b16+` with CLIP "`+clipB16+`"`)
	if got := modelEncoders(t, soup); got != (dataset.Encoders{DINOv2: dinoBase}) {
		t.Errorf("the average records %+v, want the DINOv2 model alone", got)
	}
	// Three, the third of the first's CLIP: the second's still parts them;
	// and one that names none makes the average name none.
	mm.Params[0] += 1
	b32 := filepath.Join(dir, "b32.safetensors")
	if err := checkpoint.WriteModel(b32, mm.Config, mm.Params, map[string]string{"dinov2": dinoBase, "clip": clipB32}); err != nil {
		t.Fatal(err)
	}
	stderr = stderrOf(t, "average", "--out", soup, run, b16, b32)
	wantWarning(t, "average of three", stderr, `model `+b16+` with CLIP "`+clipB16+`"`)
	if strings.Count(stderr, mismatchWarning) != 2 { // (b16 against the run, b32 against b16)
		t.Errorf("average of three: want two warnings:\n%s", stderr)
	}
	if got := modelEncoders(t, soup); got != (dataset.Encoders{DINOv2: dinoBase}) {
		t.Errorf("the average of three records %+v, want the DINOv2 model alone", got)
	}
	mm.Params[0] += 1
	unnamed := filepath.Join(dir, "unnamed.safetensors")
	if err := checkpoint.WriteModel(unnamed, mm.Config, mm.Params, nil); err != nil {
		t.Fatal(err)
	}
	wantWarning(t, "average with a model of no names", stderrOf(t, "average", "--out", soup, unnamed, run, b32))
	if got := modelEncoders(t, soup); got.Known() {
		t.Errorf("the average with a model of no names records %+v, want none", got)
	}

	// Fine-tuning on data without a record: the initial model's, kept
	// through a resume (which does not read --init again).
	plain := makeData(t)
	tuned := filepath.Join(dir, "tuned")
	args := []string{"train", "--data", plain, "--init", run, "--out", tuned, "--epochs", "1", "--batch", "16"}
	if _, stderr, err := runCLIStopped(t, args...); err == nil {
		t.Fatalf("the stopped run did not stop:\n%s", stderr)
	}
	if got := modelEncoders(t, filepath.Join(tuned, checkpoint.LastLink, checkpoint.ModelFile)); got != want {
		t.Errorf("the fine-tuning run's first checkpoint records %+v, want the initial model's %+v", got, want)
	}
	// A record the data gained meanwhile, of other models, is warned of,
	// and the run keeps its own.
	writeFile(t, filepath.Join(plain, dataset.ExtractRecordFile), `{"target": "image", "dinov2": "facebook/dinov2-small", "clip": "`+clipB16+`"}`)
	wantWarning(t, "a resume on data of other models", stderrOf(t, "train", "--resume", "--out", tuned),
		`the run `+tuned+` was made with DINOv2 "`+dinoBase+`" and CLIP "`+clipB32+`", training data `+plain+` with DINOv2 "facebook/dinov2-small" and CLIP "`+clipB16+`"`)
	if got := modelEncoders(t, filepath.Join(tuned, checkpoint.LastLink, checkpoint.ModelFile)); got != want {
		t.Errorf("the resumed fine-tuning run records %+v, want the initial model's %+v", got, want)
	}
	// Fine-tuning on data of other models than the --init model's is
	// warned of; the run takes the data's.
	tuned2 := filepath.Join(dir, "tuned2")
	wantWarning(t, "fine-tuning on data of other models", stderrOf(t, "train", "--data", plain, "--init", run, "--out", tuned2, "--epochs", "1", "--batch", "16"),
		`the --init model `+filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile)+` was made with DINOv2 "`+dinoBase+`" and CLIP "`+clipB32+`", training data `+plain+` with DINOv2 "facebook/dinov2-small"`)
	if got := modelEncoders(t, filepath.Join(tuned2, checkpoint.LastLink, checkpoint.ModelFile)); got != (dataset.Encoders{DINOv2: "facebook/dinov2-small", CLIP: clipB16}) {
		t.Errorf("the fine-tuning run on data of other models records %+v, want the data's", got)
	}
}
