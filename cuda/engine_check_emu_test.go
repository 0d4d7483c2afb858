//go:build cuda && cudaemu

package cuda

import (
	"maps"
	"slices"
	"testing"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
)

// launchRecorder counts the launches of each kernel.
type launchRecorder struct {
	fullDriver
	seen map[string]int
}

func (l launchRecorder) Launch(k, gx, gy, block int, args []uint64) error {
	l.seen[launch.Kernel(k).String()]++
	return l.fullDriver.Launch(k, gx, gy, block, args)
}

func (l launchRecorder) LaunchEx(k int, cfg driver.LaunchConfig, params [][]byte) error {
	l.seen[launch.Kernel(k).String()]++
	return l.fullDriver.LaunchEx(k, cfg, params)
}

// launchSkipper launches every kernel but the one named skip, which it
// reports launched: its outputs keep what they held.
type launchSkipper struct {
	fullDriver
	skip string
}

func (l launchSkipper) Launch(k, gx, gy, block int, args []uint64) error {
	if launch.Kernel(k).String() == l.skip {
		return nil
	}
	return l.fullDriver.Launch(k, gx, gy, block, args)
}

func (l launchSkipper) LaunchEx(k int, cfg driver.LaunchConfig, params [][]byte) error {
	if launch.Kernel(k).String() == l.skip {
		return nil
	}
	return l.fullDriver.LaunchEx(k, cfg, params)
}

// The check sees every kernel an engine runs: with any one of them not
// run, it finds a disagreement (or the engine an error), in each
// precision. It proves what the check covers, the same on a GPU: in the
// emulator only, where a Device costs nothing to open (on a GPU, a
// context for each of the 49 kernels would spend gpu-check's time), and
// out of -short (a check per kernel, about 80 s: the AddressSanitizer
// pass's first engines run the check as every process does).
func TestEngineCheckCatchesEachKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("a check for each of the engines' kernels runs in the emulator pass without -short")
	}
	for _, bf16 := range []bool{false, true} {
		d, _ := openDevice(t)
		if bf16 {
			on(t, d, d.checkBF16GEMMs) // (its own launches are not the engine's)
		}
		rec := launchRecorder{seen: map[string]int{}}
		on(t, d, func() error { rec.fullDriver = d.drv.(fullDriver); d.drv = rec; return nil })
		if r, _, err := runEngineCheck(d, bf16); err != nil || r.Wrong != "" {
			t.Fatalf("%s: %+v, %v", precisionName(bf16), r, err)
		}
		names := slices.Sorted(maps.Keys(rec.seen))
		t.Logf("%s: %d kernels: %v", precisionName(bf16), len(names), rec.seen)
		for _, name := range names {
			d, _ := openDevice(t)
			if bf16 {
				on(t, d, d.checkBF16GEMMs)
			}
			on(t, d, func() error { d.drv = launchSkipper{fullDriver: d.drv.(fullDriver), skip: name}; return nil })
			r, _, err := runEngineCheck(d, bf16)
			if err == nil && r.Wrong == "" {
				t.Errorf("%s without %s: the check passed (%.2g of a bound at %s)", precisionName(bf16), name, r.Worst, r.WorstAt)
			}
			d.Close()
		}
	}
}
