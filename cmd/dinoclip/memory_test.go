package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/sysmem"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/train"
)

// A CPU run, or a projection, that fits holds the Go heap under the
// available memory, so the collector's default headroom (the heap may grow
// to twice what is live) cannot take it past what the machine has.
func TestMemoryChecksLimitHeap(t *testing.T) {
	avail, ok := sysmem.Available()
	if !ok || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("no reading of the available memory here, or GOMEMLIMIT set")
	}
	c := nn.Config{InputDim: 8, HiddenDim: 8, OutputDim: 4, Blocks: 1}
	for what, check := range map[string]func() error{
		"train's":   func() error { return checkCPUMemory(c, 16, 4, nn.Objective{}, 0, "", "") },
		"project's": func() error { return checkProjectionMemory(c, "cpu", 16) },
	} {
		old := debug.SetMemoryLimit(math.MaxInt64)
		if err := check(); err != nil {
			t.Fatal(err)
		}
		if got := debug.SetMemoryLimit(old); got == math.MaxInt64 || float64(got) > processMemory()+float64(avail) {
			t.Errorf("memory limit %d after %s check, want at most what the process holds plus the %d bytes available", got, what, avail)
		}
	}
}

// What a command holds besides the engine counts: a checkpoint's copies
// took a run the check admitted past the machine's memory at its first
// save (train.Options.HostBytes).
func TestCheckCPUMemoryCountsHost(t *testing.T) {
	if _, ok := sysmem.Available(); !ok {
		t.Skip("no reading of the available memory here")
	}
	c := nn.Config{InputDim: 8, HiddenDim: 8, OutputDim: 4, Blocks: 1}
	err := checkCPUMemory(c, 16, 4, nn.Objective{}, 1e30, "a checkpoint's copies", "--batch")
	if err == nil || !strings.Contains(err.Error(), "a checkpoint's copies") {
		t.Errorf("a host need beyond any machine: %v, want a refusal naming it", err)
	}
	o := train.DefaultOptions()
	base := o.HostBytes(c, 1000)
	o.EMA = 0.99
	if got, want := o.HostBytes(c, 1000)-base, 4*float64(c.NumParams()); got != want {
		t.Errorf("--ema adds %v bytes, want %v (float32 weights)", got, want)
	}
	o.EMA, o.Precision = 0, train.PrecisionFP64
	if o.HostBytes(c, 1000) <= base {
		t.Errorf("an fp64 run's save needs %v bytes, no more than fp32's %v (its float64 state file is the largest)", o.HostBytes(c, 1000), base)
	}
}

// project and index refuse a --batch whose chunk of rows would not fit in
// memory before they write anything: it ended in a runtime trace (or the
// OOM killer). The input is a sparse file of 2^31 rows.
func TestProjectionMemoryChecked(t *testing.T) {
	if _, ok := sysmem.Available(); !ok {
		t.Skip("no reading of the available memory here")
	}
	run, _, _ := trainRun(t)
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.dino.npy")
	const rows = 1 << 31
	hdr, err := npy.EncodeHeader(npy.Float32, []int{rows, tIn})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(huge, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, int64(len(hdr))+4*rows*tIn); err != nil {
		t.Fatal(err)
	}
	batch := strconv.Itoa(math.MaxInt)
	out := filepath.Join(dir, "out.npy")
	wantError(t, []string{"project", "--model", run, "--in", huge, "--out", out, "--batch", batch}, "projecting 2147483648 rows at a time (--batch)", "use a smaller --batch")
	index := filepath.Join(dir, "index")
	wantError(t, []string{"index", "--model", run, "--features", huge, "--out", index, "--batch", batch}, "use a smaller --batch")
	for _, p := range []string{out, index} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused projection left %s (%v)", p, err)
		}
	}
	// On a GPU the host's share is checked: the chunk's features and
	// projections.
	c := nn.Config{InputDim: 768, HiddenDim: 8, OutputDim: 512, Blocks: 1}
	if err := checkProjectionMemory(c, "cuda", math.MaxInt32); err == nil || !strings.Contains(err.Error(), "projections on the host)") || strings.Contains(err.Error(), "activations") {
		t.Errorf("a GPU projection of 2^31 rows a chunk: %v, want a refusal of its host memory", err)
	}
}
