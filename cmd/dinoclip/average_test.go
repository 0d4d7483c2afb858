package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/safetensors"
)

// writeRandomModel writes a model of shape c with the weights of seed.
func writeRandomModel(t *testing.T, path string, c nn.Config, seed uint64) []float32 {
	t.Helper()
	p := nn.InitParameters[float32](c, seed)
	if err := checkpoint.WriteModel(path, c, p, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAverage(t *testing.T) {
	dir := t.TempDir()
	c := nn.Config{InputDim: tIn, HiddenDim: 8, OutputDim: tOut, Blocks: 1}
	a := writeRandomModel(t, filepath.Join(dir, "a.safetensors"), c, 1)
	b := writeRandomModel(t, filepath.Join(dir, "b.safetensors"), c, 2)
	for _, w := range []struct {
		flag   []string
		wa, wb float64
	}{{nil, 0.5, 0.5}, {[]string{"--weights", "1,3"}, 0.25, 0.75},
		{[]string{"--weights", "1.5e308,1.5e308"}, 0.5, 0.5}, // (their sum overflows float64; their ratio does not)
		{[]string{"--weights", "0,2"}, 0, 1}} {
		out := filepath.Join(dir, "soup.safetensors")
		args := append(append([]string{"average", "--out", out}, w.flag...), filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors"))
		mustRun(t, args...)
		m, err := checkpoint.ReadModel(out)
		if err != nil {
			t.Fatal(err)
		}
		if m.Config != c {
			t.Fatalf("%v: the average is %v, want %v", w.flag, m.Config, c)
		}
		// The mean of two float32 values in float64 is exact, so the one
		// rounding is the final one to float32: the result must equal it.
		bad := 0
		for j := range a {
			if want := float32(w.wa*float64(a[j]) + w.wb*float64(b[j])); m.Params[j] != want {
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%v: %d of %d weights are not the weighted mean", w.flag, bad, len(a))
		}
		var from []soupIngredient
		if err := json.Unmarshal([]byte(m.Meta["averaged_from"]), &from); err != nil || len(from) != 2 || from[1].Weight != w.wb {
			t.Errorf("%v: averaged_from %q (%v)", w.flag, m.Meta["averaged_from"], err)
		}
	}
	// A model named through a link (a run's best, say) is recorded where
	// it is: the link moves on.
	best := filepath.Join(t.TempDir(), "best")
	if err := os.Symlink(dir, best); err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(t.TempDir(), "linked.safetensors")
	// (Its word of what it wrote is on stderr, as project's: a stdout that
	// fails after the model is in place fails nothing.)
	if stdout, stderr, err := runCLI(t, "average", "--out", linked, filepath.Join(best, "a.safetensors"), filepath.Join(dir, "b.safetensors")); err != nil || stdout != "" || !strings.Contains(stderr, "averaged 2 models") {
		t.Fatalf("average: %v; stdout %q, stderr %q", err, stdout, stderr)
	}
	if m, err := checkpoint.ReadModel(linked); err != nil {
		t.Fatal(err)
	} else if real, _ := filepath.EvalSymlinks(filepath.Join(dir, "a.safetensors")); !strings.Contains(m.Meta["averaged_from"], `"path":"`+real+`"`) {
		t.Errorf("averaged_from %s, want the first model at %s", m.Meta["averaged_from"], real)
	}
	// info names what was averaged.
	if out := mustRun(t, "info", filepath.Join(dir, "soup.safetensors")); !strings.Contains(out, "averaged from 2 models") || !strings.Contains(out, "b.safetensors  weight 1") {
		t.Errorf("info of the average:\n%s", out)
	}
	// eval and train --init accept the average.
	data, eval := makeData(t), makeEvalSet(t, "tiny-eval")
	soup := filepath.Join(dir, "soup.safetensors")
	if out := mustRun(t, "eval", "--model", soup, "--eval", eval); !strings.Contains(out, "tiny-eval") {
		t.Errorf("eval of the average:\n%s", out)
	}
	mustRun(t, "train", "--init", soup, "--data", data, "--out", filepath.Join(t.TempDir(), "ft"), "--epochs", "1", "--batch", "32")

	// A model whose name starts with "-": after "--", as any command
	// takes one, whether "--" comes before the models or among them;
	// without it, taken for a flag given after the models.
	t.Chdir(dir)
	if err := os.Rename("a.safetensors", "-a.safetensors"); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "average", "--out", "dash1.safetensors", "--", "-a.safetensors", "b.safetensors")
	mustRun(t, "average", "--out", "dash2.safetensors", "b.safetensors", "--", "-a.safetensors")
	for _, name := range []string{"dash1.safetensors", "dash2.safetensors"} {
		if m, err := checkpoint.ReadModel(name); err != nil {
			t.Error(err)
		} else if !strings.Contains(m.Meta["averaged_from"], "-a.safetensors") {
			t.Errorf("%s: averaged from %s", name, m.Meta["averaged_from"])
		}
	}
	wantError(t, []string{"average", "--out", "dash3.safetensors", "b.safetensors", "-a.safetensors"}, `"-a.safetensors" after the models`, "after --")
}

func TestAverageErrors(t *testing.T) {
	dir := t.TempDir()
	c := nn.Config{InputDim: tIn, HiddenDim: 8, OutputDim: tOut, Blocks: 1}
	a, b := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors")
	writeRandomModel(t, a, c, 1)
	writeRandomModel(t, b, c, 2)
	wide := filepath.Join(dir, "wide.safetensors")
	writeRandomModel(t, wide, nn.Config{InputDim: tIn, HiddenDim: 16, OutputDim: tOut, Blocks: 1}, 3)
	deep := filepath.Join(dir, "deep.safetensors")
	writeRandomModel(t, deep, nn.Config{InputDim: tIn, HiddenDim: 8, OutputDim: tOut, Blocks: 2}, 3)
	nanModel := filepath.Join(dir, "nan.safetensors")
	p := nn.InitParameters[float32](c, 4)
	p[5] = float32(math.NaN())
	if err := checkpoint.WriteModel(nanModel, c, p, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "soup.safetensors")
	missing := filepath.Join(dir, "nope.safetensors")
	latin1 := filepath.Join(dir, "caf\xe9.safetensors") // (a Latin-1 name: no UTF-8 text)
	copyFile(t, b, latin1)
	ckpt := filepath.Join(t.TempDir(), "step-00000001") // a checkpoint directory: a model beside an optimizer file
	os.Mkdir(ckpt, 0o755)
	os.WriteFile(filepath.Join(ckpt, checkpoint.OptimizerFile), []byte("x"), 0o644)
	linkToCkpt := filepath.Join(t.TempDir(), "soup.safetensors")
	os.Symlink(filepath.Join(ckpt, "model.safetensors"), linkToCkpt)
	runDir := t.TempDir() // a run directory: its last link
	bLink := filepath.Join(dir, "b-link.safetensors")
	os.Symlink(b, bLink)
	bCopy := filepath.Join(dir, "b-copy.safetensors")
	if data, err := os.ReadFile(b); err != nil || os.WriteFile(bCopy, data, 0o644) != nil {
		t.Fatal("copying a model")
	}
	os.Symlink(filepath.Join("checkpoints", "step-00000001"), filepath.Join(runDir, checkpoint.LastLink))
	features := filepath.Join(t.TempDir(), "photos.dino.npy") // (--out given the features by a slip)
	writeF32(t, features, []int{1, 2}, []float32{1, 2})
	torchNamed := filepath.Join(t.TempDir(), "orig.safetensors") // (a torch.save zip, misnamed)
	os.WriteFile(torchNamed, append([]byte("PK\x03\x04\x00\x00\x08\x00"), make([]byte, 64)...), 0o644)
	state := filepath.Join(t.TempDir(), "state.safetensors") // (a checkpoint's optimizer state, copied out and renamed)
	if err := safetensors.Write(state, []safetensors.Tensor{safetensors.NewFloat32("m", []int{1}, []float32{0})}, map[string]string{"format": checkpoint.OptimizerFormat}); err != nil {
		t.Fatal(err)
	}
	laterState := filepath.Join(t.TempDir(), "state2.safetensors") // (a later dinoclip's float64 state)
	if err := safetensors.Write(laterState, []safetensors.Tensor{safetensors.NewFloat32("m", []int{1}, []float32{0})}, map[string]string{"format": "dinoclip-float64/2"}); err != nil {
		t.Fatal(err)
	}
	cutState := filepath.Join(t.TempDir(), "state3.safetensors")       // (an optimizer state cut short in its data: its header still says what it is)
	headerCutState := filepath.Join(t.TempDir(), "state4.safetensors") // (one cut in its header, after its metadata)
	if whole, err := os.ReadFile(state); err != nil || os.WriteFile(cutState, whole[:len(whole)-2], 0o644) != nil ||
		os.WriteFile(headerCutState, whole[:bytes.Index(whole, []byte(`"m":`))], 0o644) != nil {
		t.Fatal("cutting a state file short")
	}
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"other hidden width", []string{"average", "--out", out, a, wide}, []string{wide, "one architecture"}},
		{"one model twice", []string{"average", "--out", out, a, b, a}, []string{"one model file", "give each model once"}},
		{"one model twice, once through a link", []string{"average", "--out", out, b, bLink}, []string{"one model file"}},
		{"a copy of a model", []string{"average", "--out", out, a, b, bCopy}, []string{b + " and " + bCopy + " hold the same weights"}},
		{"other depth", []string{"average", "--out", out, a, b, deep}, []string{deep, "one architecture"}},
		{"a missing file", []string{"average", "--out", out, a, missing}, []string{missing}},
		{"a directory without a model", []string{"average", "--out", out, a, t.TempDir()}, []string{"no model.safetensors"}},
		{"NaN in a model", []string{"average", "--out", out, a, nanModel}, []string{nanModel, "NaN"}},
		{"NaN weight", []string{"average", "--out", out, "--weights", "1,NaN", a, b}, []string{"--weights", "NaN", ">= 0"}},
		{"infinite weight", []string{"average", "--out", out, "--weights", "1,Inf", a, b}, []string{"--weights", "finite"}},
		{"overflowing weight", []string{"average", "--out", out, "--weights", "1,1e400", a, b}, []string{"--weights", "finite"}},
		{"negative weight", []string{"average", "--out", out, "--weights", "1,-1", a, b}, []string{"--weights", ">= 0"}},
		{"a weight reading as 0", []string{"average", "--out", out, "--weights", "1,1e-400", a, b}, []string{`weight 2 ("1e-400")`, "reads as 0"}},
		{"zero sum", []string{"average", "--out", out, "--weights", "0,0", a, b}, []string{"all 0"}},
		{"too few weights", []string{"average", "--out", out, "--weights", "1", a, b}, []string{"1 weight for 2 models"}},
		{"a flag after the models", []string{"average", "--out", out, a, b, "--weights", "1,2"}, []string{`"--weights" after the models`}},
		{"--out after a model", []string{"average", a, "--out", out, b}, []string{`"--out" after the models`}},
		{"an octal-looking weight", []string{"average", "--out", out, "--weights", "010,2", a, b}, []string{`weight 1 ("010")`, "decimal digits"}},
		{"no models", []string{"average", "--out", out}, []string{"no models"}},
		{"a path that is not UTF-8", []string{"average", "--out", out, a, latin1}, []string{"not UTF-8", "averaged_from"}},
		{"no out", []string{"average", a, b}, []string{"--out"}},
		{"out a directory", []string{"average", "--out", dir, a, b}, []string{"is a directory"}},
		{"out one of the models", []string{"average", "--out", b, a, b}, []string{b, "one of the models averaged"}},
		{"out one of the models with a slash", []string{"average", "--out", b + "/", a, b}, []string{b, "is a directory's"}},
		{"out in a training checkpoint", []string{"average", "--out", filepath.Join(ckpt, "model.safetensors"), a, b}, []string{"in a training checkpoint"}},
		{"out a link into a training checkpoint", []string{"average", "--out", linkToCkpt, a, b}, []string{"in a training checkpoint"}},
		{"out a .npy", []string{"average", "--out", features, a, b}, []string{features, "exists and is a .npy array, which the average would replace"}},
		{"out an optimizer state", []string{"average", "--out", state, a, b}, []string{state, "exists and is a training checkpoint's optimizer or float64 state"}},
		{"out a later version's state", []string{"average", "--out", laterState, a, b}, []string{laterState, "exists and is a training checkpoint's optimizer or float64 state"}},
		{"out a state cut short", []string{"average", "--out", cutState, a, b}, []string{cutState, "exists and is a training checkpoint's optimizer or float64 state"}},
		{"out a state cut in its header", []string{"average", "--out", headerCutState, a, b}, []string{headerCutState, "exists and is a training checkpoint's optimizer or float64 state"}},
		{"out a PyTorch file named as a model", []string{"average", "--out", torchNamed, a, b}, []string{torchNamed, "exists and is a file that is neither"}},
		{"out in a run directory", []string{"average", "--out", filepath.Join(runDir, "model.safetensors"), a, b}, []string{"in the run directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, tc.args, tc.wants...) })
	}
	// average has no --config: its missing --out names none.
	if _, _, err := runCLI(t, "average", a, b); err == nil || strings.Contains(err.Error(), "config") {
		t.Errorf("average without --out: %v, want an error naming no --config file", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused average wrote %s", out)
	}
	if !hasNPYMagic(features) {
		t.Errorf("a refused average replaced the features %s", features)
	}
	// A model cut short (an earlier output: its header runs past its end,
	// or its tensors do, the usual copy cut short) is replaced.
	cut := filepath.Join(t.TempDir(), "cut.safetensors")
	whole, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, b0 := range [][]byte{[]byte("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\""), whole[:len(whole)-100]} {
		os.WriteFile(cut, b0, 0o644)
		mustRun(t, "average", "--out", cut, a, b)
		if _, err := checkpoint.ReadModel(cut); err != nil {
			t.Errorf("average over a model file cut short to %d bytes: %v", len(b0), err)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("a refused average left %s", e.Name())
		}
	}
	// A value from the environment is named by its variable.
	t.Setenv("DINOCLIP_WEIGHTS", "1,2")
	wantError(t, []string{"average", "--out", out, a}, `DINOCLIP_WEIGHTS="1,2": 2 weights for 1 model`)
	t.Setenv("DINOCLIP_AVERAGE_OUT", dir)
	wantError(t, []string{"average", a, b}, "DINOCLIP_AVERAGE_OUT="+dir+" is a directory")
}

// A checkpoint's state cut short anywhere its header shows its format's
// value, or the start of it, is refused as an output to replace; cut
// before that, nothing tells it from a model, which is replaced (an
// earlier output cut short). A model cut short is replaced but where its
// format's value so far is also the start of a state's.
func TestOutputCutShortInItsHeader(t *testing.T) {
	dir := t.TempDir()
	meta := func(format string) map[string]string {
		return map[string]string{"dinoclip.sha256": strings.Repeat("ab", 32), "format": format}
	}
	for _, c := range []struct{ name, format string }{{"state", checkpoint.OptimizerFormat}, {"float64", checkpoint.Float64Format}, {"model", checkpoint.ModelFormat}} {
		whole := filepath.Join(dir, c.name+".safetensors")
		if err := safetensors.Write(whole, []safetensors.Tensor{safetensors.NewFloat32("m", []int{1}, []float32{0})}, meta(c.format)); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(whole)
		valueStart := bytes.Index(b, []byte(`"format":"`)) + len(`"format":"`)
		headerEnd := 8 + int(binary.LittleEndian.Uint64(b))
		if valueStart < len(`"format":"`) || headerEnd > len(b) {
			t.Fatalf("%s: no format in its header", c.name)
		}
		cut := filepath.Join(dir, "cut.safetensors")
		for n := 9; n < headerEnd; n++ {
			os.WriteFile(cut, b[:n], 0o644)
			shown := string(b[valueStart:max(valueStart, min(n, valueStart+len(c.format)))])
			isStatePrefix := strings.HasPrefix(checkpoint.OptimizerFormat, shown) || strings.HasPrefix(checkpoint.Float64Format, shown) || checkpoint.IsStateFormat(shown)
			wantRefused := n >= valueStart && (c.name != "model" || isStatePrefix)
			if err := otherKindError("--out", cut, cut, "the average", false); (err != nil) != wantRefused {
				t.Errorf("%s cut to %d bytes (%q of its format shown): %v, want refused %v", c.name, n, shown, err, wantRefused)
			}
		}
	}
}
