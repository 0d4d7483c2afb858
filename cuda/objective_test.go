//go:build cuda

package cuda

import (
	"math"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// TestInfoNCEShapes runs the InfoNCE objectives on batches and widths the
// suite does not reach: more rows and columns than a block's 256 threads
// (each thread's strided loops take several turns), a batch that grows
// and shrinks the InfoNCE workspace, and a logit scale above the clamp,
// against the float64 CPU engine at the suite's tolerances.
func TestInfoNCEShapes(t *testing.T) {
	for _, tc := range []struct {
		c    nn.Config
		rows []int
		obj  nn.Objective
	}{
		{nn.Config{InputDim: 20, HiddenDim: 30, OutputDim: 260, Blocks: 0}, []int{270, 40},
			nn.Objective{Loss: nn.LossInfoNCE, LogitScale: nn.InitLogitScale}},
		{nn.Config{InputDim: 7, HiddenDim: 16, OutputDim: 5, Blocks: 1}, []int{3, 270},
			nn.Objective{Loss: nn.LossMSEInfoNCE, InfoNCEWeight: 0.3, LogitScale: 1.1}},
		{nn.Config{InputDim: 9, HiddenDim: 12, OutputDim: 8, Blocks: 1}, []int{33},
			nn.Objective{Loss: nn.LossInfoNCE, LogitScale: math.Log(nn.MaxLogitScale) + 0.5}},
	} {
		t.Run(tc.c.String(), func(t *testing.T) {
			e, ref := newPair(t, tc.c, 13)
			for _, eng := range []nn.Engine{e, ref} {
				if err := eng.SetObjective(tc.obj); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range tc.rows {
				xs, ts := enginetest.Batches(tc.c, 1, n, uint64(n))
				loss, err := e.ForwardBackward(xs[0], ts[0], n)
				if err != nil {
					t.Fatal(err)
				}
				refLoss, err := ref.ForwardBackward(xs[0], ts[0], n)
				if err != nil {
					t.Fatal(err)
				}
				if d := math.Abs(loss-refLoss) / refLoss; !(d <= nn.FP32Tolerances.Forward) { // (NaN fails)
					t.Errorf("batch %d: loss %v, oracle %v: relative difference %.3g", n, loss, refLoss, d)
				}
				grads := make([]float32, tc.c.NumParams())
				if err := e.Gradients(grads); err != nil {
					t.Fatal(err)
				}
				for _, tn := range tc.c.Layout().Tensors {
					if d := nn.RelDiff(nn.View(grads, tn), nn.View(ref.Model.Grads, tn)); !(d <= nn.FP32Tolerances.Gradient) {
						t.Errorf("batch %d: gradient of %s: relative difference %.3g", n, tn.Name, d)
					}
				}
				g, want := e.LogitScaleGrad(), ref.LogitScaleGrad()
				if want == 0 {
					if g != 0 {
						t.Errorf("batch %d: logit scale gradient %v above the clamp, want 0", n, g)
					}
					continue
				}
				if d := math.Abs(g-want) / math.Abs(want); !(d <= nn.FP32Tolerances.Gradient) {
					t.Errorf("batch %d: logit scale gradient %v, oracle %v: relative difference %.3g", n, g, want, d)
				}
			}
		})
	}
}

// TestInfoNCEBatchLimit: a batch whose cosine matrix the GEMMs cannot
// index is refused with an error, before any allocation, in both engines.
func TestInfoNCEBatchLimit(t *testing.T) {
	c := nn.Config{InputDim: 8, HiddenDim: 16, OutputDim: 8, Blocks: 0}
	for _, bf16 := range []bool{false, true} {
		newEngine := NewEngine
		if bf16 {
			newEngine = NewBF16Engine
		}
		e, err := newEngine(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		limit := maxInfoNCEBatch(bf16)
		if bf16 && (limit*infoNCEK(limit) > math.MaxInt32 || (limit+1)*infoNCEK(limit+1) <= math.MaxInt32) {
			t.Errorf("bf16 limit %d is not the largest n with n infoNCEK(n) < 2^31", limit)
		}
		err = e.dev.do(func() error {
			_, _, err := e.infoNCE(limit+1, buf[float32]{}, 0, 1, false)
			return err
		})
		if err == nil || e.objective.mem != 0 {
			t.Fatalf("bf16 %v: a batch of %d rows: error %v, workspace %#x", bf16, limit+1, err, e.objective.mem)
		}
	}
}
