//go:build cuda && cudaemu

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dinoclip/dinoclip/cuda/emu"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// TestStepScheduleIndependent: a training step's bits do not depend on the
// order in which the emulator runs the threads. No kernel uses atomics, so
// a correct one computes the same bits under every schedule; a race that
// stays within every other test's tolerance still changes a bit under some
// schedule. Each engine runs the same pipelined steps (graph-captured,
// batch sizes that change) under a lockstep schedule (seed 0) and three
// random ones and must end with the same losses, parameters and moments.
func TestStepScheduleIndependent(t *testing.T) {
	// The wide model's GEMMs, on a device of 2 multiprocessors, have several
	// tiles a block (the ping-pong consumers alternate) and several K
	// chunks a tile (the ring wraps).
	wide := nn.Config{InputDim: 136, HiddenDim: 400, OutputDim: 264, Blocks: 1}
	for _, m := range []struct {
		name      string
		newEngine func(nn.Config) (*Engine, error)
		cfg       nn.Config
		batch     int
		sms       int // the multiprocessors the GEMMs plan for; 0: the device's
	}{
		{"fp32", NewEngine, enginetest.Config, 19, 0},
		{"bf16", NewBF16Engine, enginetest.Config, 19, 0},
		{"bf16-wide", NewBF16Engine, wide, 150, 2},
	} {
		t.Run(m.name, func(t *testing.T) {
			rows, batch := 4*m.batch, m.batch
			data := newResidentData(m.cfg, rows, 5)
			type result struct {
				losses  []float64
				p, m, v []float32
			}
			run := func(seed uint64) result {
				old := emu.SetScheduleSeed(seed)
				defer emu.SetScheduleSeed(old)
				e := stepEngines(t, m.newEngine, data, rows, batch, 1)[0]
				defer e.Close()
				if m.sms > 0 {
					on(t, e.dev, func() error { e.dev.tc.sms = m.sms; return nil })
				}
				rng := rand.New(rand.NewPCG(6, 1))
				var r result
				for s, n := range []int{batch, batch, batch, batch - 8} {
					idx := make([]int32, n)
					for i := range idx {
						idx[i] = int32(rng.IntN(rows))
					}
					l, done, err := e.StepRows(idx, stepHP(s+1))
					if err != nil {
						t.Fatal(err)
					}
					if done {
						r.losses = append(r.losses, l)
					}
				}
				l, _, err := e.FlushLoss()
				if err != nil {
					t.Fatal(err)
				}
				r.losses = append(r.losses, l)
				r.p, r.m, r.v = state(t, e)
				return r
			}
			want := run(0)
			if len(want.losses) != 4 {
				t.Fatalf("%d losses from 4 steps", len(want.losses))
			}
			for _, seed := range []uint64{1, 2, 3} {
				got := run(seed)
				for s := range want.losses {
					if math.Float64bits(got.losses[s]) != math.Float64bits(want.losses[s]) {
						t.Errorf("seed %d: step %d: loss %v, lockstep %v", seed, s+1, got.losses[s], want.losses[s])
					}
				}
				sameBits(t, fmt.Sprintf("seed %d: parameter", seed), got.p, want.p)
				sameBits(t, fmt.Sprintf("seed %d: first moment", seed), got.m, want.m)
				sameBits(t, fmt.Sprintf("seed %d: second moment", seed), got.v, want.v)
			}
		})
	}
}
