//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
)

// smallInts returns n integers in [-3, 3] as float32: every dot product of
// such rows is exact in float32 in any order (|partial sums| <= 9*dim), so
// the GPU's scores and ties must equal the CPU's exactly.
func smallInts(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.IntN(7) - 3)
	}
	return v
}

func TestTopKExact(t *testing.T) {
	d := testDevice(t)
	for _, c := range []struct{ nq, nk, dim, k int }{
		{70, 150, 45, 10}, // several query blocks, key tiles and dim chunks
		{70, 150, 45, 1},
		{33, 200, 8, 32},
		{5, 5, 3, 10}, // k > keys
		{1, 1, 1, 1},
	} {
		t.Run(fmt.Sprintf("%dq_%dk_%dd_top%d", c.nq, c.nk, c.dim, c.k), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(c.nq), uint64(c.nk)))
			q, keys := smallInts(rng, c.nq*c.dim), smallInts(rng, c.nk*c.dim)
			// Duplicate keys: equal scores that only the index orders.
			for j := 7; j < c.nk; j += 9 {
				copy(keys[j*c.dim:(j+1)*c.dim], keys[(j-7)*c.dim:(j-6)*c.dim])
			}
			gi, gs, err := d.TopK(q, keys, c.nq, c.nk, c.dim, c.k)
			if err != nil {
				t.Fatal(err)
			}
			ci, cs, err := retrieval.TopK(q, keys, c.nq, c.nk, c.dim, c.k)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(gi, ci) {
				t.Errorf("indices differ:\nGPU %v\nCPU %v", gi, ci)
			}
			if !slices.Equal(gs, cs) {
				t.Errorf("scores differ:\nGPU %v\nCPU %v", gs, cs)
			}
		})
	}
}

func TestTopKErrors(t *testing.T) {
	d := testDevice(t)
	q := []float32{1, 2, 3, 4}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"k too large", func() error { _, _, err := d.TopK(q, q, 2, 2, 2, MaxSearchK+1); return err }},
		{"k zero", func() error { _, _, err := d.TopK(q, q, 2, 2, 2, 0); return err }},
		{"shape", func() error { _, _, err := d.TopK(q, q, 3, 2, 2, 1); return err }},
		{"NaN", func() error {
			_, _, err := d.TopK([]float32{1, float32(math.NaN())}, q, 1, 2, 2, 1)
			return err
		}},
		{"infinity", func() error { _, _, err := d.TopK(q, []float32{1, float32(math.Inf(1))}, 2, 1, 2, 1); return err }},
	} {
		if err := c.call(); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// TestEngineTopKForEvaluation: retrieval finds the engine's top-k
// (retrieval.TopKOf, as dinoclip eval and the trainer do) and ranks a set
// with it as the CPU does, on data without near ties.
func TestEngineTopKForEvaluation(t *testing.T) {
	const images, per, dim = 40, 3, 16
	e, err := NewEngine(nn.Config{InputDim: dim, HiddenDim: 8, OutputDim: dim, Blocks: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	topK := retrieval.TopKOf(e)
	if topK == nil {
		t.Fatal("retrieval.TopKOf does not find the engine's TopK")
	}
	rng := rand.New(rand.NewPCG(40, 3))
	img := randn(rng, images*dim, 1)
	caps := make([]float32, images*per*dim)
	capImage := make([]int, images*per)
	for c := range capImage {
		capImage[c] = c / per
		for j := range dim {
			caps[c*dim+j] = img[(c/per)*dim+j] + float32(0.8*rng.NormFloat64())
		}
	}
	s := &retrieval.Set{Name: "gpu", Images: images, Captions: images * per, FeatureDim: dim, EmbeddingDim: dim,
		ImageFeatures: img, ImageCLIP: img, CaptionCLIP: caps, CaptionImage: capImage}
	identity := func(dst, x []float32, n int) error { copy(dst, x); return nil }
	want, err := s.Evaluate(identity)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.EvaluateWith(identity, topK)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ranked on the GPU: %+v\non the CPU: %+v", got.Projected, want.Projected)
	}
	if r, _ := want.Projected.At(1); r.TextToImagePercent == 100 || r.TextToImagePercent == 0 {
		t.Fatalf("R@1 %v: the test set is too easy or too hard to tell rankings apart", r.TextToImagePercent)
	}
}
