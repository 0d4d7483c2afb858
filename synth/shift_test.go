package synth

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/dataset"
)

// A shifted world draws its images' latent vectors around LatentShift·u for
// a unit u, its captions' around the same point; its maps are the unshifted
// world's.
func TestLatentShift(t *testing.T) {
	const shift, images = 3.0, 4000
	opts := smallOptions(12)
	opts.LatentShift = shift
	w, err := NewWorld(opts)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewWorld(smallOptions(12))
	if err != nil {
		t.Fatal(err)
	}
	if plain.shift != nil {
		t.Fatalf("shift 0: shift vector %v", plain.shift)
	}
	if w.targetScale != plain.targetScale || w.featLinearT[0] != plain.featLinearT[0] || w.teacherW2T[5] != plain.teacherW2T[5] {
		t.Fatal("the shifted world's maps are not the unshifted world's")
	}
	var sq float64
	for _, m := range w.shift {
		sq += m * m
	}
	if d := math.Abs(math.Sqrt(sq) - shift); !(d <= 1e-12) {
		t.Fatalf("|shift vector| = %v, want %v", math.Sqrt(sq), shift)
	}
	lat := opts.LatentDim
	imageMean, captionMean := make([]float64, lat), make([]float64, lat)
	sc := w.newScratch()
	feat, clip, text := make([]float32, opts.InputDim), make([]float32, opts.OutputDim), make([]float32, opts.OutputDim)
	z, clean := make([]float64, lat), make([]float64, opts.OutputDim)
	for i := range images {
		sc.s.reset(streamKey(opts.Seed, purposeTrain), uint64(i))
		w.image(sc, feat, clip)
		copy(z, sc.z)
		copy(clean, sc.out)
		w.caption(sc, z, clean, clip, text)
		for j := range lat {
			imageMean[j] += z[j] / images
			captionMean[j] += sc.z[j] / images
		}
	}
	// Each mean has standard error 1/√4000 ≈ 0.016 per factor.
	for j := range lat {
		if !(math.Abs(imageMean[j]-w.shift[j]) <= 0.08) || !(math.Abs(captionMean[j]-w.shift[j]) <= 0.08) {
			t.Fatalf("factor %d: image latents average %.3f, caption latents %.3f, want %.3f", j, imageMean[j], captionMean[j], w.shift[j])
		}
	}
}

func TestLatentShiftRefused(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), -101} {
		opts := smallOptions(1)
		opts.LatentShift = v
		if err := opts.Validate(); err == nil || !strings.Contains(err.Error(), "latent shift") {
			t.Errorf("latent shift %v: %v", v, err)
		}
	}
}

// eval.json says an evaluation set is of a shifted world.
func TestLatentShiftInEvalInfo(t *testing.T) {
	opts := smallOptions(2)
	opts.LatentShift = 1.5
	dir := t.TempDir()
	if _, err := WriteEvalSet(dir, opts, 4, 2, "s"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, dataset.EvalInfoFile))
	if err != nil || !strings.Contains(string(b), "latent_shift=1.5") {
		t.Fatalf("eval.json %s (%v) does not record the shift", b, err)
	}
}
