package synth

import (
	"errors"
	"fmt"
	"io"
	"math"
)

// Options define a synthetic world and how data sets are written.
// DefaultOptions gives the real model's shapes and the tuned noise levels.
type Options struct {
	// Seed selects the world (all of its hidden matrices) and every random
	// stream drawn in it.
	Seed uint64

	// InputDim is the width of the DINOv2 features (768 for dinov2-base).
	InputDim int
	// OutputDim is the width of the CLIP embeddings (512 for ViT-B/16).
	OutputDim int
	// LatentDim is the number of latent factors each image is made of.
	LatentDim int
	// TeacherHidden is the hidden width of the teacher MLP that maps an
	// image's latent vector to its CLIP image embedding.
	TeacherHidden int

	// FeatureNoise is the standard deviation of the noise added to each
	// feature channel, relative to the channel's signal (about 1).
	FeatureNoise float64
	// TargetNoise is the standard deviation of the noise added to each CLIP
	// image embedding channel, relative to the spread of the teacher's
	// output across images. It bounds how well any projector can do.
	TargetNoise float64
	// CaptionLatentNoise, between 0 and 1, is how far what a caption
	// describes is from what its image shows: the caption's latent vector is
	// √(1-η²)·z + η·δ for its image's z, a fresh standard normal δ and η =
	// CaptionLatentNoise (so 0 is the image itself and 1 is unrelated). It
	// moves a caption towards images of similar content, and mostly sets how
	// hard retrieval is.
	CaptionLatentNoise float64
	// CaptionNoise is the norm of the isotropic noise added to an image's
	// CLIP embedding to make a caption's direction, relative to the
	// embedding's norm. It makes captions less similar to their images
	// (CLIP's image-text cosines are low) without being content.
	CaptionNoise float64

	// LatentShift moves the images' latent vectors: they are drawn from
	// N(LatentShift·u, I) for a unit direction u that the seed fixes (from
	// a stream of its own, so the world's maps do not depend on it). Data
	// of one seed and another shift come from the same world, the same
	// feature map and teacher, in another region of it: a shifted domain,
	// on which a projector trained at shift 0 extrapolates. Captions
	// drift around their image within the shifted distribution. 0 (the
	// default) leaves every value as it was without the option.
	LatentShift float64

	// Overwrite lets the writers replace an existing data set in the output
	// directory. It does not affect the data.
	Overwrite bool

	// Log, when not nil, is told, a line each, what the writers remove
	// that interrupted runs left (their staging directories), and what
	// they leave because a run may still be at work there: a user who
	// killed a run learns what became of its files. It does not affect
	// the data.
	Log io.Writer

	// Progress, when not nil, is called after each training shard is
	// written with the number of rows written so far. It does not affect
	// the data.
	Progress func(rows int)

	// Publishing, when not nil, is called once a set's files are all
	// written, just before the set is put in place: until then a process
	// ended at once (atomicfile.RemoveUnfinished) leaves nothing of the
	// set, and the caller's own record of the writing may go with it
	// (atomicfile.WriteBytesRemovedOnExit's forget). It does not affect
	// the data.
	Publishing func()
}

// Defaults of the world's shape and noise. The caption noise levels are
// tuned so that CLIP's own recall on a 1000-image evaluation set with 5
// captions per image is close to CLIP ViT-B/16's on Flickr30k (text to image
// R@1 about 60%; 62.2% published), and the target noise so that a perfect
// projector keeps about 96% of CLIP's R@5 (the original projector reached
// 89-92% on Flickr).
const (
	DefaultInputDim           = 768
	DefaultOutputDim          = 512
	DefaultLatentDim          = 32
	DefaultTeacherHidden      = 128
	DefaultFeatureNoise       = 0.1
	DefaultTargetNoise        = 0.12
	DefaultCaptionLatentNoise = 0.75
	DefaultCaptionNoise       = 1.0
)

// MaxDim bounds every width, so that a mistyped size fails with a clear
// error instead of an allocation the machine cannot make.
const MaxDim = 1 << 16

// MaxLatentShift bounds LatentShift, either way: at 100 standard
// deviations the teacher is far outside anything a data set can cover.
const MaxLatentShift = 100

// maxWorldValues bounds the size of a world's matrices (1 GiB of float64).
const maxWorldValues = 1 << 27

// DefaultOptions returns the options of the default world with seed 0.
func DefaultOptions() Options {
	return Options{
		InputDim:           DefaultInputDim,
		OutputDim:          DefaultOutputDim,
		LatentDim:          DefaultLatentDim,
		TeacherHidden:      DefaultTeacherHidden,
		FeatureNoise:       DefaultFeatureNoise,
		TargetNoise:        DefaultTargetNoise,
		CaptionLatentNoise: DefaultCaptionLatentNoise,
		CaptionNoise:       DefaultCaptionNoise,
	}
}

// Validate reports every option that is out of range, joined into one error.
func (o Options) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    int
	}{
		{"input dim", o.InputDim},
		{"output dim", o.OutputDim},
		{"latent dim", o.LatentDim},
		{"teacher hidden width", o.TeacherHidden},
	} {
		if d.v < 1 || d.v > MaxDim {
			errs = append(errs, fmt.Errorf("synth: %s is %d; it must be between 1 and %d", d.name, d.v, MaxDim))
		}
	}
	for _, n := range []struct {
		name string
		v    float64
	}{
		{"feature noise", o.FeatureNoise},
		{"target noise", o.TargetNoise},
		{"caption latent noise", o.CaptionLatentNoise},
		{"caption noise", o.CaptionNoise},
	} {
		if !(n.v >= 0) || math.IsInf(n.v, 0) {
			errs = append(errs, fmt.Errorf("synth: %s is %v; it must be a finite number >= 0", n.name, n.v))
		}
	}
	if len(errs) == 0 {
		// Each width is at most 2^16, so these products cannot overflow.
		values := 2*o.LatentDim*o.InputDim + o.LatentDim*o.TeacherHidden + o.TeacherHidden*o.OutputDim
		if values > maxWorldValues {
			errs = append(errs, fmt.Errorf("synth: the hidden maps of %d -> %d with %d latent factors and a teacher %d wide would hold %d values, more than %d; make the dimensions smaller",
				o.InputDim, o.OutputDim, o.LatentDim, o.TeacherHidden, values, maxWorldValues))
		}
	}
	if !(math.Abs(o.LatentShift) <= MaxLatentShift) {
		errs = append(errs, fmt.Errorf("synth: latent shift is %v; it must be a number between -%d and %d", o.LatentShift, MaxLatentShift, MaxLatentShift))
	}
	if o.CaptionLatentNoise > 1 {
		errs = append(errs, fmt.Errorf("synth: caption latent noise is %v; it must be between 0 and 1", o.CaptionLatentNoise))
	}
	return errors.Join(errs...)
}
