//go:build cuda

package main

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/dinoclip/dinoclip/train"
)

// TestBF16TrainingQuality: a bf16 run on the GPU engine (the emulator here)
// ends where the fp32 run ends: its final training loss within 1% of the
// fp32 run's and its mean R@5 within 0.5 points, under the MSE and under
// InfoNCE (whose batch logits the bf16 engine computes on tensor cores).
// Both train the same small model on the same synthetic data (dinoclip
// synth) with the same seed, batch order and schedule, as the CLI does; the
// fp32 run is the CPU engine's, which the fp32 GPU engine matches to 2e-5
// (the engine suite). The data stays on the host in both (--resident off:
// resident data would train on float16-rounded features). Measured on the
// emulator (2026-12-04, commit fc457b0, shared 2-vCPU Xeon, 26 s and 42 s):
// MSE final losses fp32 0.0371869, bf16 0.0371826 (0.011% apart), mean R@5
// 4.10 and 4.05; InfoNCE 3.18336 and 3.18416 (0.025% apart), mean R@5 7.20
// both.
// The run is short (32 steps; the model reaches 10% of CLIP's R@5), so
// this checks that bf16 follows fp32's trajectory, not the quality of a
// converged model. The 1% (final loss) and 0.5-point (mean R@5) bounds
// are what a user who switches to bf16 may lose at most (docs/TRAINING.md
// states them). The loss is held to a tighter one too: bf16's unit
// round-off, 2^-9 (0.195%), the error of rounding the loss itself to bf16
// once; fp32 master weights, accumulation and loss math keep the
// trajectories closer (8 times, measured above), and a bf16 engine with a
// wrong gradient or a stale weight copy leaves the trajectory by far more
// (the engine suite's training comparison: 14% on the parameters after 20
// steps with a stale copy).
func TestBF16TrainingQuality(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model in the emulator: minutes")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mustRun(t, "synth", "--out", data, "--rows", "2048", "--eval-images", "200", "--input-dim", "32", "--output-dim", "16", "--seed", "3")
	for _, loss := range []string{"mse", "infonce"} {
		t.Run(loss, func(t *testing.T) {
			type result struct{ loss, r5 float64 }
			runs := map[string]result{}
			for _, p := range []struct{ precision, device string }{{"fp32", "cpu"}, {"bf16", "cuda"}} {
				run := filepath.Join(dir, loss+"-"+p.precision)
				mustRun(t, "train", "--data", filepath.Join(data, "train"), "--eval", filepath.Join(data, "eval"), "--out", run,
					"--device", p.device, "--precision", p.precision, "--resident", "off", "--hidden-dim", "32", "--blocks", "1",
					"--batch", "64", "--epochs", "1", "--lr", "5e-3", "--log-every", "1", "--loss", loss)
				info, err := train.ReadRunInfo(run)
				if err != nil {
					t.Fatal(err)
				}
				if info.Options.Precision != p.precision || info.Best == nil || info.Best.Metric != "r5" {
					t.Fatalf("%s run: run.json precision %q, best %+v", p.precision, info.Options.Precision, info.Best)
				}
				losses := trainLosses(t, run)
				if len(losses) == 0 {
					t.Fatalf("%s run: no training loss in its metrics.jsonl", p.precision)
				}
				runs[p.precision] = result{loss: losses[len(losses)-1], r5: info.Best.Value}
			}
			f, b := runs["fp32"], runs["bf16"]
			t.Logf("final loss fp32 %.6g, bf16 %.6g (%.3g%% apart); mean R@5 fp32 %.2f, bf16 %.2f", f.loss, b.loss, 100*math.Abs(b.loss-f.loss)/f.loss, f.r5, b.r5)
			if d := math.Abs(b.loss-f.loss) / f.loss; !(d <= 0.01) {
				t.Errorf("bf16 final loss %v is %.3g%% from fp32's %v, more than 1%%", b.loss, 100*d, f.loss)
			} else if !(d <= 0x1p-9) {
				t.Errorf("bf16 final loss %v is %.3g%% from fp32's %v, more than bf16's unit round-off (0.195%%)", b.loss, 100*d, f.loss)
			}
			if d := math.Abs(b.r5 - f.r5); !(d <= 0.5) {
				t.Errorf("bf16 mean R@5 %.2f is %.2f points from fp32's %.2f, more than 0.5", b.r5, d, f.r5)
			}
		})
	}
}
