package bench

import (
	"fmt"
	"math/rand/v2"

	"github.com/dinoclip/dinoclip/internal/enginehooks"
	"github.com/dinoclip/dinoclip/retrieval"
)

// MSCOCO-like retrieval shapes (SPEC §1.7: the Karpathy test split has
// 5,000 images with five or more captions each; CLIP ViT-B/16 embeddings
// are 512 wide) and the largest k CLIP_benchmark asks for.
const (
	COCOImages   = 5000
	COCOCaptions = 25000
	COCODim      = 512
	COCOK        = 10
)

// TopKOptions are the parameters of MeasureTopK.
type TopKOptions struct {
	Images, Captions, Dim, K int
	Timing                   Timing
	Seed                     uint64
	// Engine, when not nil, ranks on its device instead of retrieval.TopK.
	Engine enginehooks.TopKer
}

// MeasureTopK times top-k retrieval in both directions on random unit
// vectors: text->image (every caption a query over the images) and
// image->text (every image a query over the captions), as
// retrieval.Evaluate runs them.
func MeasureTopK(o TopKOptions) (TopKReport, error) {
	if o.Images < 1 || o.Captions < 1 || o.Dim < 1 || o.K < 1 {
		return TopKReport{}, fmt.Errorf("top-k benchmark: %d images, %d captions, dim %d, k %d", o.Images, o.Captions, o.Dim, o.K)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x70b))
	unit := func(n int) ([]float32, error) {
		v := make([]float32, n*o.Dim)
		fillNormal(rng, v)
		return retrieval.NormalizeRows(v, n, o.Dim)
	}
	images, err := unit(o.Images)
	if err != nil {
		return TopKReport{}, err
	}
	captions, err := unit(o.Captions)
	if err != nil {
		return TopKReport{}, err
	}
	topk, impl := retrieval.TopK, "retrieval.TopK (CPU)"
	if o.Engine != nil {
		topk, impl = o.Engine.TopK, fmt.Sprintf("%T.TopK", o.Engine)
	}
	var sync func() error
	if s, ok := o.Engine.(enginehooks.Synchronizer); ok {
		sync = s.Synchronize
	}
	rep := TopKReport{Status: Measured}
	for _, d := range []struct {
		name   string
		q, k   []float32
		nq, nk int
	}{
		{"text->image", captions, images, o.Captions, o.Images},
		{"image->text", images, captions, o.Images, o.Captions},
	} {
		stats, err := repeat(o.Timing, sync, func(int) error {
			_, _, err := topk(d.q, d.k, d.nq, d.nk, o.Dim, o.K)
			return err
		})
		if err != nil {
			return rep, fmt.Errorf("top-k benchmark %s: %w", d.name, err)
		}
		flops := 2 * float64(d.nq) * float64(d.nk) * float64(o.Dim)
		rep.Results = append(rep.Results, TopKResult{
			Direction: d.name, Impl: impl, Queries: d.nq, Keys: d.nk, Dim: o.Dim, K: o.K,
			Seconds: stats, QueriesPerSecond: float64(d.nq) / stats.Median, TFLOPs: flops / stats.Median / 1e12,
		})
	}
	return rep, nil
}
