package synth

import (
	"math"
)

// Scales that make the synthetic embeddings look like the real ones.
const (
	// imageNorm is the typical norm of a CLIP ViT-B/16 image embedding.
	imageNorm = 10.0
	// textNorm is the typical norm of a CLIP text embedding: a bit
	// smaller than an image embedding's. textNormSpread is its relative
	// spread across captions.
	textNorm       = 8.0
	textNormSpread = 0.05

	// The feature is featureLinear·(A z) + featureNonlinear·soft(B z + c)
	// before its channel offset and scale: mostly linear in z, with a
	// saturating part so that features are not a plain linear code of z.
	featureLinear    = 0.8
	featureNonlinear = 0.6
	featureGain      = 2.0 // the spread of B z: enough to saturate soft often
	featureMeanStd   = 0.5 // the spread of channel offsets
	featureScaleLow  = 0.5 // channel scales are uniform in [0.5, 1.5)

	// The teacher's first layer has pre-activations of spread teacherGain
	// around biases of spread teacherBiasStd: its smooth ReLU is then
	// strongly nonlinear over the range of z.
	teacherGain    = 2.5
	teacherBiasStd = 0.5

	// calibrationImages is how many latent vectors NewWorld draws to
	// measure the teacher's output scale.
	calibrationImages = 1024
)

// World is one synthetic world: the fixed random maps from an image's latent
// vector to its DINOv2 feature and to its CLIP image embedding. It is
// immutable once made and safe for concurrent use.
type World struct {
	opts Options

	// DINOv2 feature map: A and B of the package documentation, stored
	// transposed ([LatentDim, InputDim], one column per latent factor) so
	// that the map is a few long loops along the feature rather than many
	// short dot products; c; and the per-channel offsets and scales.
	featLinearT, featNonlinearT []float64
	featBias                    []float64
	featMean, featScale         []float64

	// Teacher: its weight matrices transposed like A and B,
	// [LatentDim, TeacherHidden] and [TeacherHidden, OutputDim].
	teacherW1T, teacherB1, teacherW2T []float64

	// shift is LatentShift·u, the mean of the images' latent vectors
	// (Options.LatentShift), or nil at shift 0.
	shift []float64

	// targetNoiseStd is the per-channel noise added to the teacher's output
	// and targetScale the factor that then gives CLIP-like norms.
	targetNoiseStd, targetScale float64
}

// NewWorld builds the world of opts. Its matrices depend on the seed and the
// dimensions only.
func NewWorld(opts Options) (*World, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	din, dout, lat, hid := opts.InputDim, opts.OutputDim, opts.LatentDim, opts.TeacherHidden
	w := &World{opts: opts}
	var s sampler
	s.reset(streamKey(opts.Seed, purposeWorld), 0)
	gaussian := func(n int, std float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(std * s.normal())
		}
		return v
	}
	invSqrtLat := 1 / math.Sqrt(float64(lat))
	w.featLinearT = gaussian(lat*din, invSqrtLat)
	w.featNonlinearT = gaussian(lat*din, featureGain*invSqrtLat)
	w.featBias = gaussian(din, 1)
	w.featMean = gaussian(din, featureMeanStd)
	w.featScale = make([]float64, din)
	for i := range w.featScale {
		w.featScale[i] = featureScaleLow + s.uniform()
	}
	w.teacherW1T = gaussian(lat*hid, teacherGain*invSqrtLat)
	w.teacherB1 = gaussian(hid, teacherBiasStd)
	w.teacherW2T = gaussian(hid*dout, 1/math.Sqrt(float64(hid)))

	// Measure the teacher's output on sample images: its mean square norm
	// and its spread across images per channel. Noise is relative to the
	// spread (the part that tells images apart), and the scale makes the
	// noisy embedding's norm about imageNorm whatever the dimensions.
	sc := w.newScratch()
	mean := make([]float64, dout)
	var sumSq float64
	for range calibrationImages {
		for i := range sc.z {
			sc.z[i] = s.normal()
		}
		w.teacher(sc, sc.z)
		for i, v := range sc.out {
			mean[i] += v
			sumSq += float64(v * v)
		}
	}
	meanSq := sumSq / calibrationImages
	var meanNormSq float64
	for i := range mean {
		mean[i] /= calibrationImages
		meanNormSq += float64(mean[i] * mean[i])
	}
	spread := math.Sqrt(max(meanSq-meanNormSq, 0) / float64(dout))
	w.targetNoiseStd = float64(opts.TargetNoise * spread)
	noiseSq := float64(float64(w.targetNoiseStd*w.targetNoiseStd) * float64(dout))
	w.targetScale = imageNorm / math.Sqrt(meanSq+noiseSq)
	if opts.LatentShift != 0 {
		w.shift = shiftVector(opts.Seed, lat, opts.LatentShift)
	}
	return w, nil
}

// shiftVector is shift·u for the seed's unit direction u in the latent
// space of lat factors.
func shiftVector(seed uint64, lat int, shift float64) []float64 {
	var s sampler
	s.reset(streamKey(seed, purposeShift), 0)
	u := make([]float64, lat)
	var sq float64
	for i := range u {
		u[i] = s.normal()
		sq += float64(u[i] * u[i])
	}
	scale := shift / math.Sqrt(sq)
	for i := range u {
		u[i] = float64(u[i] * scale)
	}
	return u
}

// Options returns the options the world was made with.
func (w *World) Options() Options { return w.opts }

// scratch is one goroutine's working memory for generating rows.
type scratch struct {
	s      sampler
	z      []float64 // latent vector
	lin    []float64 // A z
	nonlin []float64 // B z + c
	hidden []float64 // teacher hidden layer
	out    []float64 // teacher output
}

func (w *World) newScratch() *scratch {
	return &scratch{
		z:      make([]float64, w.opts.LatentDim),
		lin:    make([]float64, w.opts.InputDim),
		nonlin: make([]float64, w.opts.InputDim),
		hidden: make([]float64, w.opts.TeacherHidden),
		out:    make([]float64, w.opts.OutputDim),
	}
}

// image draws one image from sc.s (positioned at the image's stream) and
// writes its DINOv2 feature to feat and its CLIP image embedding to clip.
// The order of draws is fixed: latent, feature noise, target noise. On
// return sc.z holds the image's latent vector and sc.out the teacher's
// noiseless output, which captions start from.
func (w *World) image(sc *scratch, feat, clip []float32) {
	for i := range sc.z {
		sc.z[i] = sc.s.normal()
	}
	for i, m := range w.shift {
		sc.z[i] += m
	}
	clear(sc.lin)
	mulAdd(sc.lin, sc.z, w.featLinearT)
	copy(sc.nonlin, w.featBias)
	mulAdd(sc.nonlin, sc.z, w.featNonlinearT)
	for i := range feat {
		nl := softSign(sc.nonlin[i])
		signal := float64(featureLinear*sc.lin[i]) + float64(featureNonlinear*nl) +
			float64(w.opts.FeatureNoise*sc.s.noise())
		feat[i] = float32(w.featMean[i] + float64(w.featScale[i]*signal))
	}
	w.teacher(sc, sc.z)
	for i := range clip {
		noisy := sc.out[i] + float64(w.targetNoiseStd*sc.s.noise())
		clip[i] = float32(w.targetScale * noisy)
	}
}

// teacher writes the teacher's noiseless output for latent z to sc.out.
func (w *World) teacher(sc *scratch, z []float64) {
	copy(sc.hidden, w.teacherB1)
	mulAdd(sc.hidden, z, w.teacherW1T)
	for j, a := range sc.hidden {
		sc.hidden[j] = squarePlus(a)
	}
	clear(sc.out)
	mulAdd(sc.out, sc.hidden, w.teacherW2T)
}

// caption draws one caption of an image from sc.s (positioned at the
// caption's stream) into text. The image has latent vector z, noiseless
// teacher output clean and CLIP embedding clip. The caption describes a
// latent near z, √(1-η²)·z + η·δ with η = CaptionLatentNoise and δ standard
// normal, so it drifts towards images of similar content; its embedding is
// the image's CLIP embedding moved by the teacher's response to that drift,
// plus isotropic noise of norm about CaptionNoise·|clip|, scaled to a text
// embedding's norm.
func (w *World) caption(sc *scratch, z, clean []float64, clip []float32, text []float32) {
	norm := textNorm * (1 + float64(textNormSpread*sc.s.normal()))
	// Mixing keeps the caption's latent standard normal, like an image's.
	// In a shifted world the mixing is about the shift, so that the
	// caption's latent has its image's distribution.
	keep := math.Sqrt(1 - float64(w.opts.CaptionLatentNoise*w.opts.CaptionLatentNoise))
	for i := range sc.z {
		if w.shift == nil {
			sc.z[i] = float64(keep*z[i]) + float64(w.opts.CaptionLatentNoise*sc.s.normal())
		} else {
			m := w.shift[i]
			sc.z[i] = float64(keep*(z[i]-m)) + float64(w.opts.CaptionLatentNoise*sc.s.normal()) + m
		}
	}
	w.teacher(sc, sc.z)
	var clipSq float64
	for _, v := range clip {
		clipSq += float64(float64(v) * float64(v))
	}
	noiseStd := w.opts.CaptionNoise * math.Sqrt(clipSq/float64(len(clip)))
	dir := sc.out
	var dirSq float64
	for i, v := range clip {
		drift := float64(w.targetScale * (sc.out[i] - clean[i]))
		dir[i] = float64(v) + drift + float64(noiseStd*sc.s.noise())
		dirSq += float64(dir[i] * dir[i])
	}
	// A zero direction needs noise that exactly cancels the signal: not a
	// case that arises, but it must not divide by zero.
	scale := norm
	if dirSq > 0 {
		scale = norm / math.Sqrt(dirSq)
	}
	for i := range text {
		text[i] = float32(dir[i] * scale)
	}
}

// softSign is the saturating x/√(1+x²): like tanh, but built from
// correctly rounded operations only (see the package documentation).
func softSign(x float64) float64 {
	return x / math.Sqrt(float64(x*x)+1)
}

// squarePlus is the smooth ReLU (x + √(x²+1))/2: like softplus or GELU, but
// built from correctly rounded operations only.
func squarePlus(x float64) float64 {
	return (x + math.Sqrt(float64(x*x)+1)) / 2
}

// mulAdd adds x·mT to dst, where mT holds len(x) rows of len(dst) values:
// dst[i] += Σ_k x[k]·mT[k][i], summed over k in order. Matrices are stored
// this way round (transposed) so that the inner loop runs along dst; four
// rows are taken per pass, which keeps dst[i] in a register for four
// products without changing the order of the sums, so the result does not
// depend on the unrolling. Every product is rounded before it is added, so
// that no compiler fuses the two into an FMA.
func mulAdd(dst, x, mT []float64) {
	n := len(dst)
	k := 0
	for ; k+4 <= len(x); k += 4 {
		a0, a1, a2, a3 := x[k], x[k+1], x[k+2], x[k+3]
		r0 := mT[k*n : (k+1)*n]
		r1 := mT[(k+1)*n : (k+2)*n]
		r2 := mT[(k+2)*n : (k+3)*n]
		r3 := mT[(k+3)*n : (k+4)*n]
		for i, t := range dst {
			t += float64(a0 * r0[i])
			t += float64(a1 * r1[i])
			t += float64(a2 * r2[i])
			t += float64(a3 * r3[i])
			dst[i] = t
		}
	}
	for ; k < len(x); k++ {
		a, r := x[k], mT[k*n:(k+1)*n]
		for i, t := range dst {
			dst[i] = t + float64(a*r[i])
		}
	}
}
