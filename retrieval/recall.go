package retrieval

import (
	"fmt"
	"math"
	"slices"
)

// defaultKs are the cut-offs CLIP_benchmark reports: recall at 1, 5 and 10.
var defaultKs = []int{1, 5, 10}

// noHit is the first-hit position of a query none of whose positives is in
// its list.
const noHit = math.MaxInt

// percentOfCLIPK is the cut-off of the "% of CLIP" figures (docs/RETRIEVAL.md): R@5.
const percentOfCLIPK = 5

// RecallAtK is retrieval recall at one cut-off k, in both directions, in
// percent (0 to 100).
type RecallAtK struct {
	K int `json:"k"`

	// TextToImagePercent is the percentage of captions whose own image is
	// among their k best images: CLIP_benchmark's image_retrieval_recall@k,
	// times 100.
	TextToImagePercent float64 `json:"text_to_image_percent"`

	// ImageToTextPercent is the percentage of images for which at least one
	// of their captions is among their k best captions: CLIP_benchmark's
	// text_retrieval_recall@k, times 100.
	ImageToTextPercent float64 `json:"image_to_text_percent"`
}

// Result is the outcome of one retrieval evaluation.
type Result struct {
	Images   int `json:"images"`
	Captions int `json:"captions"`

	// ImagesWithoutCaptions counts images that no caption describes; each
	// is a miss in the image-to-text direction (see the package
	// documentation).
	ImagesWithoutCaptions int `json:"images_without_captions"`

	// Recall holds one entry per requested k, in the order requested.
	Recall []RecallAtK `json:"recall"`
}

// At returns the recall at cut-off k and whether k was evaluated.
func (r Result) At(k int) (RecallAtK, bool) {
	for _, rk := range r.Recall {
		if rk.K == k {
			return rk, true
		}
	}
	return RecallAtK{}, false
}

// Evaluate runs the CLIP_benchmark retrieval protocol on nImages image
// embeddings and nCaptions caption embeddings, both row-major with dim
// columns. Caption c describes image captionImage[c]. Rows are L2-normalised
// (copies; the inputs are not modified), both directions are ranked with
// TopK, and recall is computed at each k in ks; nil or empty ks means 1, 5
// and 10.
//
// Evaluate returns an error if a shape does not match, if len(captionImage)
// is not nCaptions or an entry is not a valid image index, if a k is below 1
// or repeated, or if an embedding holds a NaN or an infinity.
func Evaluate(images, captions []float32, nImages, nCaptions, dim int, captionImage []int, ks []int) (Result, error) {
	return EvaluateWith(nil, images, captions, nImages, nCaptions, dim, captionImage, ks)
}

// TopKFunc ranks keys for queries with the contract of [TopK]: another
// implementation, such as a GPU's, whose scores may differ from TopK's in
// the last bits and so swap keys that are that close.
type TopKFunc func(queries, keys []float32, nQueries, nKeys, dim, k int) (indices []int32, scores []float32, err error)

// TopKOf returns v's own top-k (the TopK method of an engine that ranks on
// its GPU, say) when v has one with TopK's signature, else nil.
func TopKOf(v any) TopKFunc {
	if t, ok := v.(interface {
		TopK(queries, keys []float32, nQueries, nKeys, dim, k int) ([]int32, []float32, error)
	}); ok {
		return t.TopK
	}
	return nil
}

// EvaluateWith is Evaluate ranking both directions with topK; nil is TopK.
// The rows are normalised on the CPU either way.
func EvaluateWith(topK TopKFunc, images, captions []float32, nImages, nCaptions, dim int, captionImage []int, ks []int) (Result, error) {
	if topK == nil {
		topK = TopK
	}
	if err := checkShape("images", images, nImages, dim); err != nil {
		return Result{}, err
	}
	if err := checkShape("captions", captions, nCaptions, dim); err != nil {
		return Result{}, err
	}
	if len(captionImage) != nCaptions {
		return Result{}, fmt.Errorf("retrieval: %d caption-image entries for %d captions", len(captionImage), nCaptions)
	}
	if err := checkCaptionImage(captionImage, nImages); err != nil {
		return Result{}, err
	}
	ks, err := checkKs(ks)
	if err != nil {
		return Result{}, err
	}
	maxK := slices.Max(ks)

	imagesNorm, err := normalized("images", images, dim)
	if err != nil {
		return Result{}, err
	}
	captionsNorm, err := normalized("captions", captions, dim)
	if err != nil {
		return Result{}, err
	}
	textToImage, _, err := topK(captionsNorm, imagesNorm, nCaptions, nImages, dim, maxK)
	if err != nil {
		return Result{}, err
	}
	imageToText, _, err := topK(imagesNorm, captionsNorm, nImages, nCaptions, dim, maxK)
	if err != nil {
		return Result{}, err
	}
	return RecallFromTopK(textToImage, imageToText, nImages, captionImage, ks)
}

// RecallFromTopK computes recall from top-k lists already ranked, by TopK or
// by another implementation with the same contract. textToImage holds one
// list of image indices per caption and imageToText one list of caption
// indices per image, both laid out as TopK returns them; each list must be at
// least min(max(ks), number of keys) long, so that every k can be judged.
// nCaptions is len(captionImage). nil or empty ks means 1, 5 and 10.
//
// RecallFromTopK returns an error on an invalid caption-image index, an
// invalid k, lists of the wrong length, or a list entry out of range.
func RecallFromTopK(textToImage, imageToText []int32, nImages int, captionImage []int, ks []int) (Result, error) {
	nCaptions := len(captionImage)
	if nImages < 1 || nCaptions < 1 {
		return Result{}, fmt.Errorf("retrieval: %d images and %d captions, need at least 1 of each", nImages, nCaptions)
	}
	if err := checkCaptionImage(captionImage, nImages); err != nil {
		return Result{}, err
	}
	ks, err := checkKs(ks)
	if err != nil {
		return Result{}, err
	}
	maxK := slices.Max(ks)
	widthTI, err := listWidth("text-to-image", textToImage, nCaptions, nImages, maxK)
	if err != nil {
		return Result{}, err
	}
	widthIT, err := listWidth("image-to-text", imageToText, nImages, nCaptions, maxK)
	if err != nil {
		return Result{}, err
	}

	// firstHitTI[c] and firstHitIT[i] are the 0-based positions of the first
	// positive in each query's list, or noHit if there is none; a query hits
	// at k exactly when that position is below k. noHit must exceed every k,
	// not just the list width: a list can be shorter than k when k exceeds
	// the number of keys.
	firstHitTI := make([]int, nCaptions)
	for c, img := range captionImage {
		list := textToImage[c*widthTI : (c+1)*widthTI]
		firstHitTI[c] = noHit
		for p, key := range list {
			if int(key) == img {
				firstHitTI[c] = p
				break
			}
		}
	}
	hasCaption := make([]bool, nImages)
	for _, img := range captionImage {
		hasCaption[img] = true
	}
	firstHitIT := make([]int, nImages)
	for i := range nImages {
		list := imageToText[i*widthIT : (i+1)*widthIT]
		firstHitIT[i] = noHit
		for p, key := range list {
			if captionImage[key] == i {
				firstHitIT[i] = p
				break
			}
		}
	}

	res := Result{Images: nImages, Captions: nCaptions}
	for _, has := range hasCaption {
		if !has {
			res.ImagesWithoutCaptions++
		}
	}
	for _, k := range ks {
		res.Recall = append(res.Recall, RecallAtK{
			K:                  k,
			TextToImagePercent: percentBelow(firstHitTI, k),
			ImageToTextPercent: percentBelow(firstHitIT, k),
		})
	}
	return res, nil
}

// RelativeRecall is one evaluation's recall as a percentage of another's at
// the same k, per direction: 100 means equal.
type RelativeRecall struct {
	K                  int     `json:"k"`
	TextToImagePercent float64 `json:"text_to_image_percent"`
	ImageToTextPercent float64 `json:"image_to_text_percent"`
}

// PercentOfCLIP returns the "% of CLIP" figures of docs/RETRIEVAL.md: recall@5 of the
// projected DINOv2 image embeddings as a percentage of recall@5 of CLIP's own
// image embeddings, per direction. Both results must come from the same
// captions and images (the same text embeddings on both sides); PercentOfCLIP
// checks the counts, not the embeddings.
func PercentOfCLIP(projected, clip Result) (RelativeRecall, error) {
	return PercentOfCLIPAt(projected, clip, percentOfCLIPK)
}

// PercentOfCLIPAt is PercentOfCLIP at cut-off k instead of 5. It returns an
// error if either result lacks k, if the results differ in their numbers of
// images or captions, or if a CLIP recall is zero.
func PercentOfCLIPAt(projected, clip Result, k int) (RelativeRecall, error) {
	if projected.Images != clip.Images || projected.Captions != clip.Captions {
		return RelativeRecall{}, fmt.Errorf("retrieval: projected has %d images, %d captions; CLIP has %d, %d",
			projected.Images, projected.Captions, clip.Images, clip.Captions)
	}
	p, ok := projected.At(k)
	if !ok {
		return RelativeRecall{}, fmt.Errorf("retrieval: projected result has no recall@%d", k)
	}
	c, ok := clip.At(k)
	if !ok {
		return RelativeRecall{}, fmt.Errorf("retrieval: CLIP result has no recall@%d", k)
	}
	if c.TextToImagePercent == 0 || c.ImageToTextPercent == 0 {
		return RelativeRecall{}, fmt.Errorf("retrieval: CLIP recall@%d is zero (text-to-image %v%%, image-to-text %v%%)",
			k, c.TextToImagePercent, c.ImageToTextPercent)
	}
	return RelativeRecall{
		K:                  k,
		TextToImagePercent: 100 * p.TextToImagePercent / c.TextToImagePercent,
		ImageToTextPercent: 100 * p.ImageToTextPercent / c.ImageToTextPercent,
	}, nil
}

// percentBelow returns the percentage of positions below k.
func percentBelow(positions []int, k int) float64 {
	hits := 0
	for _, p := range positions {
		if p < k {
			hits++
		}
	}
	return 100 * float64(hits) / float64(len(positions))
}

// checkCaptionImage reports whether every caption names an image in
// [0, nImages).
func checkCaptionImage(captionImage []int, nImages int) error {
	for c, img := range captionImage {
		if img < 0 || img >= nImages {
			return fmt.Errorf("retrieval: caption %d describes image %d, want 0 <= image < %d", c, img, nImages)
		}
	}
	return nil
}

// checkKs returns ks, or the default cut-offs if ks is empty, after checking
// that every k is at least 1 and none repeats (Result.At must be unambiguous).
func checkKs(ks []int) ([]int, error) {
	if len(ks) == 0 {
		return slices.Clone(defaultKs), nil
	}
	for i, k := range ks {
		if k < 1 {
			return nil, fmt.Errorf("retrieval: k = %d, need at least 1", k)
		}
		if slices.Contains(ks[:i], k) {
			return nil, fmt.Errorf("retrieval: k = %d requested twice", k)
		}
	}
	return slices.Clone(ks), nil
}

// listWidth returns the per-query length of top-k lists for nQueries queries
// over nKeys keys, checking that it is whole, long enough for maxK and no
// longer than nKeys, and that every entry is a key index.
func listWidth(name string, lists []int32, nQueries, nKeys, maxK int) (int, error) {
	width := len(lists) / nQueries
	if len(lists)%nQueries != 0 || width < min(maxK, nKeys) || width > nKeys {
		return 0, fmt.Errorf("retrieval: %s lists have %d entries for %d queries, want %d per query (min(k=%d, keys=%d)) or more, up to %d",
			name, len(lists), nQueries, min(maxK, nKeys), maxK, nKeys, nKeys)
	}
	for i, key := range lists {
		if key < 0 || int(key) >= nKeys {
			return 0, fmt.Errorf("retrieval: %s list of query %d holds key %d, want 0 <= key < %d", name, i/width, key, nKeys)
		}
	}
	return width, nil
}
