package main

import (
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/dinoclip/dinoclip/internal/sysmem"
	"github.com/dinoclip/dinoclip/nn"
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
	if err := checkCPUMemory(c, 16, 4, nn.Objective{}); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got == math.MaxInt64 || float64(got) > processMemory()+float64(avail) {
		t.Errorf("memory limit %d after the check, want at most what the process holds plus the %d bytes available", got, avail)
	}
}
