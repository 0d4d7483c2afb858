//go:build cuda

package cuda

import (
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
)

// TestLauncherChecks: the Device's Launcher refuses what the generated
// launch functions never produce (a wrong parameter count or size, an
// unknown kernel) and grids out of range, with errors that say so.
func TestLauncherChecks(t *testing.T) {
	d := testDevice(t)
	l := d.with(work{})
	b8, b4 := make([]byte, 8), make([]byte, 4)
	type launchCase struct {
		name string
		k    launch.Kernel
		cfg  driver.LaunchConfig
		ps   [][]byte
		want string
	}
	cases := []launchCase{
		{"parameter count", launch.KLossSum, grid(1, 1), [][]byte{b8, b8}, "kernel loss_sum: 2 parameters given, it has 3"},
		{"parameter size", launch.KLossSum, grid(1, 1), [][]byte{b8, b8, b8}, "kernel loss_sum: parameter 2 is 4 bytes, given 8"},
		{"unknown kernel", launch.NumKernels, grid(1, 1), nil, "launch of kernel"},
		{"empty grid", launch.KLossSum, grid(0, 1), [][]byte{b8, b8, b4}, "out of range"},
		{"grid y", launch.KLossSum, grid(1, maxGridY+1), [][]byte{b8, b8, b4}, "out of range"},
	}
	if _, ok := d.drv.(driver.Extended); !ok {
		cfg := grid(1, 1)
		cfg.SharedBytes = 1024
		cases = append(cases, launchCase{"extended launch on a basic driver", launch.KLossSum, cfg, [][]byte{b8, b8, b4}, "extended driver calls"})
	}
	for _, c := range cases {
		err := d.do(func() error { return l.Launch(c.k, c.cfg, c.ps) })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
