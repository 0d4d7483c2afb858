package main

import (
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/sysmem"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/train"
)

// A CPU run that fits holds the Go heap under the available memory, so the
// collector's default headroom (the heap may grow to twice what is live)
// cannot take it past what the machine has.
func TestCheckCPUMemoryLimitsHeap(t *testing.T) {
	avail, ok := sysmem.Available()
	if !ok || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("no reading of the available memory here, or GOMEMLIMIT set")
	}
	old := debug.SetMemoryLimit(math.MaxInt64)
	defer debug.SetMemoryLimit(old)
	c := nn.Config{InputDim: 8, HiddenDim: 8, OutputDim: 4, Blocks: 1}
	if err := checkCPUMemory(c, 16, 4, nn.Objective{}, 0, "", ""); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got == math.MaxInt64 || float64(got) > processMemory()+float64(avail) {
		t.Errorf("memory limit %d after the check, want at most what the process holds plus the %d bytes available", got, avail)
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
