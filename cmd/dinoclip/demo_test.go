package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The demo end to end at a tiny size: data, a trained run, the table and a
// PNG; a second demo into the same directory replaces the first; a
// directory the demo did not make is refused.
func TestDemo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	// 9 steps: fewer than the default log interval, which once left the
	// loss curve without a point.
	args := []string{"dinoclip", "demo", "--out", out, "--rows", "600", "--epochs", "1", "--hidden-dim", "16", "--blocks", "1", "--batch", "64"}
	for run := 0; run < 2; run++ {
		var stdout bytes.Buffer
		app := newApp()
		app.Writer = &stdout
		if err := app.Run(args); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for _, want := range []string{"% of CLIP", "text->image", "image->text", "best checkpoint", "demo.png"} {
			if !strings.Contains(stdout.String(), want) {
				t.Fatalf("run %d: output lacks %q:\n%s", run, want, stdout.String())
			}
		}
		png, err := os.ReadFile(filepath.Join(out, "demo.png"))
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("run %d: demo.png: %v", run, err)
		}
		if _, err := os.Stat(filepath.Join(out, "run", "best", "model.safetensors")); err != nil {
			t.Fatal(err)
		}
	}
	// Settings that cannot train are refused before anything is written.
	for _, c := range []struct{ args, want []string }{
		{[]string{"--lr", "NaN"}, []string{"--lr NaN"}},
		{[]string{"--lr", "-1"}, []string{"--lr -1"}},
		{[]string{"--rows", "100", "--batch", "256"}, []string{"--rows 100", "--batch of 256"}},
		{[]string{"--hidden-dim", "100000000"}, []string{"weights, more than"}},
	} {
		fresh := filepath.Join(t.TempDir(), "demo")
		wantError(t, append([]string{"demo", "--out", fresh}, c.args...), c.want...)
		if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("demo %v: refused, but wrote %s (%v)", c.args, fresh, err)
		}
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "precious.txt"), []byte("keep me"), 0o644)
	err := newApp().Run([]string{"dinoclip", "demo", "--out", other})
	if err == nil || !strings.Contains(err.Error(), "not made by dinoclip demo") {
		t.Fatalf("demo into a foreign directory: %v", err)
	}
}

// A demo into an --out that another demo is using is refused at once,
// before it removes the other's data and run.
func TestDemoLocksItsOutput(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("directories are not locked on Windows")
	}
	out := t.TempDir()
	for _, p := range []string{demoMarker, "data/train/shard-00000.dino.npy", "run/run.json"} {
		os.MkdirAll(filepath.Dir(filepath.Join(out, p)), 0o755)
		if err := os.WriteFile(filepath.Join(out, p), []byte("the other demo's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	holdDirLock(t, out)
	wantError(t, []string{"demo", "--out", out, "--rows", "600", "--epochs", "1", "--hidden-dim", "16", "--blocks", "1", "--batch", "64"},
		out, "another dinoclip synth or demo")
	for _, p := range []string{demoMarker, "data/train/shard-00000.dino.npy", "run/run.json"} {
		if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(b) != "the other demo's" {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
}
