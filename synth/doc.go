// Package synth generates synthetic training data and evaluation sets in
// dinoclip's real file formats (docs/FORMAT.md) and shapes, so that training,
// evaluation and the CLI can be exercised end to end without DINOv2, CLIP or
// a captioned image collection.
//
// # The synthetic world
//
// The data come from a hidden model (a [World]) that has the structure of
// the real problem, so a projector has something to learn and retrieval has
// a meaningful answer:
//
//   - Every image has a latent vector z of LatentDim standard normal values:
//     what the picture shows.
//   - Its DINOv2 feature (InputDim wide) is a fixed random linear map of z
//     plus a fixed random saturating nonlinearity of z, plus a little noise,
//     with a per-channel offset and scale: like DINOv2's mean-token features
//     it is not zero-mean and its channels differ in scale.
//   - Its CLIP image embedding (OutputDim wide) comes from a hidden
//     "teacher": a random two-layer MLP of z with a smooth ReLU, which is a
//     different function of z than the feature map, plus noise. A projector
//     from feature to CLIP embedding therefore has to learn a nonlinear map,
//     and cannot be exact because the noise is unpredictable. Embeddings have
//     CLIP-like norms (about 10) and share a common direction, as real CLIP
//     image embeddings do.
//   - A caption describes only part of what its image shows: its latent
//     vector is mixed with a fresh one. Its CLIP text embedding is its
//     image's CLIP embedding moved by the teacher's response to that change,
//     plus isotropic noise, with text-embedding norms (about 8, varying by
//     caption). So a caption is confusable with images of similar content,
//     as real captions are, and retrieval is not trivial: with the default
//     options CLIP's own recall on 1000 images with 5 captions each is close
//     to its published Flickr30k figures (text to image R@1 about 60%).
//
// A least-squares linear map from features to CLIP embeddings explains about
// 80% of the embeddings' variance on unseen images; the rest needs a
// nonlinear map. A perfect projector (the teacher's noiseless output) keeps
// about 96% of CLIP's own text-to-image R@5, because captions inherit their
// image embedding's noise, which no projector can predict.
//
// # Determinism
//
// Output depends only on the Options and the sizes asked for: the same
// options give byte-identical files on every machine, whatever the number of
// CPUs. Every random stream is derived from (Seed, purpose, index) with
// PCG (math/rand/v2): the world's matrices from the seed alone, so training
// data and evaluation sets written with one seed share one world; training
// row i from ("train", i), so row i does not depend on the shard size and a
// smaller data set is a prefix of a larger one; evaluation images and
// captions from the set's name, so differently named sets have different
// images. Rows are generated in parallel, each by one goroutine from its own
// stream, so scheduling cannot change the result.
//
// Bit-identical results across machines also need the arithmetic itself to
// be reproducible, which Go's math.Exp (its amd64 assembly takes an FMA path
// on CPUs that have FMA), math.Log and math.Tanh do not promise, and which
// the compiler's licence to fuse x*y+z into one FMA (on arm64, and on amd64
// at GOAMD64=v3) would also break. So the generator uses only +, -, *, / and
// sqrt, all correctly rounded under IEEE 754, with every product converted
// explicitly (float64(x*y)) so that it cannot be fused, and every sum taken
// in a fixed order. The nonlinearities are built from sqrt (x/√(1+x²) and
// the smooth ReLU (x+√(x²+1))/2) rather than tanh or GELU. Latent vectors are
// normal deviates from Marsaglia's polar method, with a logarithm built from
// the same operations; the per-channel noise is a cheaper bell-shaped
// deviate (the Irwin–Hall sum of four uniforms).
package synth
