package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/npy"
)

// Tiny shapes: 64 training rows of 8 -> 4, a model of hidden width 8 with
// one block, and an evaluation set of 16 images with 2 captions each.
const (
	tRows     = 64
	tIn       = 8
	tOut      = 4
	tImages   = 16
	tCaptions = 2 * tImages
)

// runCLI runs the app in-process and returns stdout, stderr and the error.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &stdout, &stderr
	err := app.Run(append([]string{"dinoclip"}, args...))
	return stdout.String(), stderr.String(), err
}

// runCLIStopped runs the app in-process as runCLI does, with a
// context cancelled when the trainer logs that it starts training: the
// signal of a Ctrl-C pressed then, which stops the run before its first
// step with a checkpoint of step 0.
func runCLIStopped(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout bytes.Buffer
	stderr := &cancelOnWrite{cancel: cancel, marker: "msg=training "}
	app := newApp()
	app.Writer, app.ErrWriter = &stdout, stderr
	err := app.RunContext(ctx, append([]string{"dinoclip"}, args...))
	return stdout.String(), stderr.String(), err
}

// cancelOnWrite is a buffer that calls cancel once a write holds marker.
type cancelOnWrite struct {
	bytes.Buffer
	cancel context.CancelFunc
	marker string
}

func (w *cancelOnWrite) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(w.marker)) {
		w.cancel()
	}
	return w.Buffer.Write(p)
}

// mustRun runs the app and fails the test on an error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("dinoclip %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// wantError runs the app, expects an error, and checks that its text holds
// every one of wants.
func wantError(t *testing.T, args []string, wants ...string) error {
	t.Helper()
	_, _, err := runCLI(t, args...)
	if err == nil {
		t.Fatalf("dinoclip %s: no error, want one containing %q", strings.Join(args, " "), wants)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("dinoclip %s: error %q does not contain %q", strings.Join(args, " "), err, w)
		}
	}
	return err
}

// world is a random linear map from features to CLIP space, so that the
// data are learnable and the evaluation set agrees with them.
type world struct {
	rng *rand.Rand
	w   []float32 // [tIn, tOut]
}

func newWorld(seed uint64) *world {
	rng := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, tIn*tOut)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	return &world{rng: rng, w: w}
}

// sample returns n features and their targets.
func (wd *world) sample(n int) (x, y []float32) {
	x = make([]float32, n*tIn)
	for i := range x {
		x[i] = float32(wd.rng.NormFloat64())
	}
	y = make([]float32, n*tOut)
	for r := 0; r < n; r++ {
		for j := 0; j < tOut; j++ {
			var s float32
			for i := 0; i < tIn; i++ {
				s += x[r*tIn+i] * wd.w[i*tOut+j]
			}
			y[r*tOut+j] = s
		}
	}
	return x, y
}

func writeF32(t *testing.T, path string, shape []int, data []float32) {
	t.Helper()
	if err := npy.WriteFloat32(path, shape, data); err != nil {
		t.Fatal(err)
	}
}

// makeData writes a training data directory of two shards (one float16)
// with tRows rows in all.
func makeData(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	wd := newWorld(1)
	x, y := wd.sample(40)
	writeF32(t, filepath.Join(dir, "shard-00000.dino.npy"), []int{40, tIn}, x)
	writeF32(t, filepath.Join(dir, "shard-00000.clip.npy"), []int{40, tOut}, y)
	x, y = wd.sample(tRows - 40)
	if err := npy.WriteFloat16(filepath.Join(dir, "shard-00001.dino.npy"), []int{tRows - 40, tIn}, x); err != nil {
		t.Fatal(err)
	}
	writeF32(t, filepath.Join(dir, "shard-00001.clip.npy"), []int{tRows - 40, tOut}, y)
	return dir
}

// makeEvalSet writes an evaluation set named name: the images' CLIP
// embeddings come from the same map as the training data, and each image
// has two captions near its embedding.
func makeEvalSet(t *testing.T, name string) string {
	t.Helper()
	return makeEvalSetOf(t, name, tImages)
}

// makeEvalSetOf is makeEvalSet with nImages images (and twice as many
// captions).
func makeEvalSetOf(t *testing.T, name string, nImages int) string {
	t.Helper()
	tImages, tCaptions := nImages, 2*nImages
	dir := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	wd := newWorld(1)
	wd.rng = rand.New(rand.NewPCG(99, 2))
	x, y := wd.sample(tImages)
	caps := make([]float32, tCaptions*tOut)
	idx := make([]int64, tCaptions)
	for c := range tCaptions {
		img := c / 2
		idx[c] = int64(img)
		for j := range tOut {
			caps[c*tOut+j] = y[img*tOut+j] + 0.05*float32(wd.rng.NormFloat64())
		}
	}
	writeF32(t, filepath.Join(dir, "images.dino.npy"), []int{tImages, tIn}, x)
	writeF32(t, filepath.Join(dir, "images.clip.npy"), []int{tImages, tOut}, y)
	writeF32(t, filepath.Join(dir, "captions.clip.npy"), []int{tCaptions, tOut}, caps)
	if err := npy.WriteInt64(filepath.Join(dir, "captions.image.npy"), []int{tCaptions}, idx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "eval.json"), []byte(`{"name": "`+name+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tinyModel are the model flags of the tests.
var tinyModel = []string{"--hidden-dim", "8", "--blocks", "1"}

// trainRun trains a tiny run and returns its directory and the eval set.
func trainRun(t *testing.T, extra ...string) (run, data, eval string) {
	t.Helper()
	data = makeData(t)
	eval = makeEvalSet(t, "tiny-eval")
	run = filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "--data", data, "--eval", eval, "--out", run,
		"--epochs", "2", "--batch", "16", "--log-every", "1"}, tinyModel...)
	mustRun(t, append(args, extra...)...)
	return run, data, eval
}

// readJSONDoc reads the JSON file at path, as its bytes and as a document
// to edit.
func readJSONDoc(t *testing.T, path string) ([]byte, map[string]any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return b, doc
}
