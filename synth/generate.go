package synth

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/dinoclip/dinoclip/internal/plural"
)

// maxElements bounds one generated array (2^30 float32 values, 4 GiB), so
// that a mistyped size fails with an error rather than an allocation the
// machine cannot make.
const maxElements = 1 << 30

// TrainingRows generates rows [first, first+n) of the world's training
// data: DINOv2 features, row-major [n, InputDim], and their CLIP image
// embeddings, [n, OutputDim]. Row i is the same whatever first and n are.
func (w *World) TrainingRows(first, n int) (features, targets []float32, err error) {
	if first < 0 || n < 1 || first > math.MaxInt-n {
		return nil, nil, fmt.Errorf("synth: training rows from %d, %d of them: need first >= 0 and at least one row", first, n)
	}
	if err := checkSize("training rows", n, max(w.opts.InputDim, w.opts.OutputDim), "fewer rows a shard"); err != nil {
		return nil, nil, err
	}
	din, dout := w.opts.InputDim, w.opts.OutputDim
	features = make([]float32, n*din)
	targets = make([]float32, n*dout)
	key := streamKey(w.opts.Seed, purposeTrain)
	w.parallel(n, func(sc *scratch, i int) {
		sc.s.reset(key, uint64(first+i))
		w.image(sc, features[i*din:(i+1)*din], targets[i*dout:(i+1)*dout])
	})
	return features, targets, nil
}

// EvalSet is an evaluation set held in memory, laid out as the files of
// docs/FORMAT.md: caption c describes image CaptionImage[c].
type EvalSet struct {
	Name              string
	Images            int
	Captions          int
	ImageFeatures     []float32 // [Images, InputDim]
	ImageEmbeddings   []float32 // [Images, OutputDim]
	CaptionEmbeddings []float32 // [Captions, OutputDim]
	CaptionImage      []int     // [Captions]
}

// EvalSet generates the evaluation set called name with the given number of
// images and captions per image; captions are grouped by image (the captions
// of image i are rows i·captionsPerImage, ...). The images are drawn from
// streams of their own, named after the set, so they are not training rows
// and sets of different names differ; a set is a prefix of a larger set of
// the same name.
func (w *World) EvalSet(name string, images, captionsPerImage int) (*EvalSet, error) {
	if err := CheckEvalSet(w.opts, name, images, captionsPerImage); err != nil {
		return nil, err
	}
	captions := images * captionsPerImage
	din, dout := w.opts.InputDim, w.opts.OutputDim
	set := &EvalSet{
		Name:              name,
		Images:            images,
		Captions:          captions,
		ImageFeatures:     make([]float32, images*din),
		ImageEmbeddings:   make([]float32, images*dout),
		CaptionEmbeddings: make([]float32, captions*dout),
		CaptionImage:      make([]int, captions),
	}
	// Captions start from their image's latent vector and noiseless teacher
	// output, kept from the image pass.
	lat := w.opts.LatentDim
	latents := make([]float64, images*lat)
	clean := make([]float64, images*dout)
	imageKey := streamKey(w.opts.Seed, purposeEval+name)
	w.parallel(images, func(sc *scratch, i int) {
		sc.s.reset(imageKey, uint64(i))
		w.image(sc, set.ImageFeatures[i*din:(i+1)*din], set.ImageEmbeddings[i*dout:(i+1)*dout])
		copy(latents[i*lat:(i+1)*lat], sc.z)
		copy(clean[i*dout:(i+1)*dout], sc.out)
	})
	captionKey := streamKey(w.opts.Seed, purposeEval+name+purposeCaptions)
	w.parallel(captions, func(sc *scratch, c int) {
		img := c / captionsPerImage
		set.CaptionImage[c] = img
		sc.s.reset(captionKey, uint64(c))
		w.caption(sc, latents[img*lat:(img+1)*lat], clean[img*dout:(img+1)*dout],
			set.ImageEmbeddings[img*dout:(img+1)*dout], set.CaptionEmbeddings[c*dout:(c+1)*dout])
	})
	return set, nil
}

// CheckEvalSet refuses the sizes of an evaluation set that EvalSet would
// refuse, without generating anything: for a caller that writes other
// data first.
func CheckEvalSet(opts Options, name string, images, captionsPerImage int) error {
	if name == "" {
		return errors.New("synth: the evaluation set needs a name")
	}
	if images < 1 || captionsPerImage < 1 {
		return fmt.Errorf("synth: evaluation set %q: %d images with %d captions each; need at least 1 of each", name, images, captionsPerImage)
	}
	if captionsPerImage > maxElements/images {
		return fmt.Errorf("synth: evaluation set %q: %d images × %s each is more than the %d captions a set may have: fewer images or captions of each", name, images, plural.Count(captionsPerImage, "caption", "captions"), maxElements)
	}
	// The images' features and embeddings, then the captions' embeddings.
	if err := checkSize("evaluation images", images, max(opts.InputDim, opts.OutputDim), "fewer images"); err != nil {
		return err
	}
	return checkSize("evaluation captions", images*captionsPerImage, opts.OutputDim, "fewer images or captions of each")
}

// MemoryBytes is about the most memory writing opts's data holds at once:
// for the training data, three shards of rowsPerShard rows (the one being
// written, the next one generated meanwhile, and the one written before,
// which the collector may not have freed yet); for the evaluation set of images × captionsPerImage, its arrays
// and the latents and clean embeddings its captions are made from. Counted
// in float64, so that absurd sizes give a large number, not an overflow.
func MemoryBytes(opts Options, rowsPerShard, images, captionsPerImage int) float64 {
	din, dout, lat := float64(opts.InputDim), float64(opts.OutputDim), float64(opts.LatentDim)
	training := 3 * float64(rowsPerShard) * (din + dout) * 4
	n, c := float64(images), float64(images)*float64(captionsPerImage)
	eval := n*(din+dout)*4 + c*(dout*4+8) + n*(lat+dout)*8
	return max(training, eval)
}

// TrainingDiskBytes is about what writing rows training rows (float16 or
// float32) puts on disk.
func TrainingDiskBytes(opts Options, rows int, float16 bool) float64 {
	elem := 4.0
	if float16 {
		elem = 2
	}
	return float64(rows) * float64(opts.InputDim+opts.OutputDim) * elem
}

// EvalDiskBytes is about what writing an evaluation set of images ×
// captionsPerImage puts on disk.
func EvalDiskBytes(opts Options, images, captionsPerImage int) float64 {
	n, c := float64(images), float64(images)*float64(captionsPerImage)
	return n*float64(opts.InputDim+opts.OutputDim)*4 + c*(float64(opts.OutputDim)*4+8)
}

// checkSize rejects n rows of width dim when they would exceed
// maxElements, generated at once; fewer says what to ask for instead.
func checkSize(what string, n, dim int, fewer string) error {
	if n > maxElements/dim {
		return fmt.Errorf("synth: %d %s of width %d exceed the %d values generated at once; ask for %s", n, what, dim, maxElements, fewer)
	}
	return nil
}

// blockRows is how many consecutive rows a goroutine takes at a time: enough
// to make the hand-out cheap, few enough to balance the load.
const blockRows = 64

// parallel calls row(sc, i) for i in [0, n) on up to GOMAXPROCS goroutines,
// each with its own scratch. Each row must depend only on i (its random
// stream is reset from i), so the result does not depend on scheduling.
func (w *World) parallel(n int, row func(sc *scratch, i int)) {
	blocks := (n + blockRows - 1) / blockRows
	workers := min(runtime.GOMAXPROCS(0), blocks)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			sc := w.newScratch()
			for {
				b := int(next.Add(1)) - 1
				if b >= blocks {
					return
				}
				for i := b * blockRows; i < min((b+1)*blockRows, n); i++ {
					row(sc, i)
				}
			}
		})
	}
	wg.Wait()
}
