package retrieval

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// handImages and handCaptions are a case worked out by hand. Images are the
// unit axes; caption c describes image handCaptionImage[c].
//
//	caption  vector        own  best image  text->image rank of own
//	c0       (1, .1, 0)    0    0           1
//	c1       (.1, 1, 0)    0    1           2
//	c2       (0, 1, .2)    1    1           1
//	c3       (0, .2, 1)    1    2           2
//	c4       (1, 0, .5)    2    0           2
//	c5       (0, 0, 1)     2    2           1
//
// Text to image: R@1 = 3/6, R@2 = 6/6.
//
// Image to text, cosines of each image with its best captions:
//
//	image 0: c0 .995 (own), c4 .894, c1 .0995        -> hit at 1
//	image 1: c1 .995 (image 0's), c2 .981 (own)      -> hit at 2
//	image 2: c5 1 (own, its second caption), c3 .981 -> hit at 1
//
// Image to text: R@1 = 2/3, R@2 = 3/3. Image 2 hits only through its second
// caption, and image 0 has just one of its two captions in its top 2, so an
// evaluation that checked only an image's first caption, or averaged the
// fraction of its captions found, would give other numbers.
var (
	handImages = []float32{
		1, 0, 0,
		0, 1, 0,
		0, 0, 1,
	}
	handCaptions = []float32{
		1, .1, 0,
		.1, 1, 0,
		0, 1, .2,
		0, .2, 1,
		1, 0, .5,
		0, 0, 1,
	}
	handCaptionImage = []int{0, 0, 1, 1, 2, 2}
)

func checkRecall(t *testing.T, res Result, k int, wantTextToImage, wantImageToText float64) {
	t.Helper()
	got, ok := res.At(k)
	if !ok {
		t.Fatalf("no recall@%d in %+v", k, res)
	}
	if !(math.Abs(got.TextToImagePercent-wantTextToImage) <= 1e-9) || !(math.Abs(got.ImageToTextPercent-wantImageToText) <= 1e-9) {
		t.Errorf("recall@%d = text->image %v%%, image->text %v%%; want %v%%, %v%%",
			k, got.TextToImagePercent, got.ImageToTextPercent, wantTextToImage, wantImageToText)
	}
}

func TestEvaluateHandBuilt(t *testing.T) {
	res, err := Evaluate(handImages, handCaptions, 3, 6, 3, handCaptionImage, []int{1, 2, 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Images != 3 || res.Captions != 6 || res.ImagesWithoutCaptions != 0 {
		t.Errorf("counts %+v", res)
	}
	checkRecall(t, res, 1, 50, 200.0/3)
	checkRecall(t, res, 2, 100, 100)
	checkRecall(t, res, 10, 100, 100) // k beyond both key counts
	if len(res.Recall) != 3 || res.Recall[0].K != 1 || res.Recall[1].K != 2 || res.Recall[2].K != 10 {
		t.Errorf("recall entries not in the order requested: %+v", res.Recall)
	}
}

// TestEvaluateScaleInvariant checks that rows are normalised: scaling every
// row by its own factor changes no recall.
func TestEvaluateScaleInvariant(t *testing.T) {
	scale := func(x []float32, dim int) []float32 {
		out := make([]float32, len(x))
		for i, v := range x {
			out[i] = v * float32(1+3*(i/dim))
		}
		return out
	}
	res, err := Evaluate(scale(handImages, 3), scale(handCaptions, 3), 3, 6, 3, handCaptionImage, []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	checkRecall(t, res, 1, 50, 200.0/3)
	checkRecall(t, res, 2, 100, 100)
}

func TestEvaluateDefaultKs(t *testing.T) {
	res, err := Evaluate(handImages, handCaptions, 3, 6, 3, handCaptionImage, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Recall) != 3 || res.Recall[0].K != 1 || res.Recall[1].K != 5 || res.Recall[2].K != 10 {
		t.Errorf("default ks: %+v", res.Recall)
	}
	checkRecall(t, res, 1, 50, 200.0/3)
}

// TestEvaluateImageWithoutCaptions adds a fourth image that no caption
// describes. It points away from every caption, so text->image is unchanged;
// image->text counts it as a miss (CLIP_benchmark's behaviour).
func TestEvaluateImageWithoutCaptions(t *testing.T) {
	images := append(append([]float32(nil), handImages...), -1, -1, -1)
	res, err := Evaluate(images, handCaptions, 4, 6, 3, handCaptionImage, []int{1, 2, 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.ImagesWithoutCaptions != 1 {
		t.Errorf("ImagesWithoutCaptions = %d, want 1", res.ImagesWithoutCaptions)
	}
	checkRecall(t, res, 1, 50, 50)
	checkRecall(t, res, 2, 100, 75)
	checkRecall(t, res, 10, 100, 75) // never a hit, whatever k
}

// TestEvaluateZeroRows uses zero captions: they score 0 against every image,
// so by the tie rule their best image is image 0.
func TestEvaluateZeroRows(t *testing.T) {
	images := []float32{
		1, 0,
		0, 1,
	}
	captions := []float32{
		0, 0, // describes image 1: ranks image 0 first, a miss at 1
		0, 0, // describes image 0: a hit at 1
		0, 1, // describes image 1: a hit at 1
	}
	// Image 0 scores 0 with every caption, so its list is c0 (image 1's),
	// c1 (own): a hit at 2. Image 1's best is c2 (own, score 1).
	res, err := Evaluate(images, captions, 2, 3, 2, []int{1, 0, 1}, []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	checkRecall(t, res, 1, 200.0/3, 50)
	checkRecall(t, res, 2, 100, 100)
}

func TestEvaluateErrors(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name              string
		images, captions  []float32
		nImages, nCaption int
		captionImage      []int
		ks                []int
	}{
		{"caption index negative", handImages, handCaptions, 3, 6, []int{0, 0, 1, 1, 2, -1}, nil},
		{"caption index too large", handImages, handCaptions, 3, 6, []int{0, 0, 1, 1, 2, 3}, nil},
		{"caption index short", handImages, handCaptions, 3, 6, []int{0, 0, 1, 1, 2}, nil},
		{"images shape", handImages, handCaptions, 4, 6, []int{0, 0, 1, 1, 2, 2}, nil},
		{"captions shape", handImages, handCaptions[:15], 3, 6, []int{0, 0, 1, 1, 2, 2}, nil},
		{"no captions", handImages, nil, 3, 0, nil, nil},
		{"k zero", handImages, handCaptions, 3, 6, handCaptionImage, []int{1, 0}},
		{"k repeated", handImages, handCaptions, 3, 6, handCaptionImage, []int{1, 5, 1}},
		{"NaN caption", handImages, append(append([]float32(nil), handCaptions[:17]...), nan), 3, 6, handCaptionImage, nil},
	} {
		if res, err := Evaluate(tc.images, tc.captions, tc.nImages, tc.nCaption, 3, tc.captionImage, tc.ks); err == nil {
			t.Errorf("%s: no error (got %+v)", tc.name, res)
		}
	}
}

// TestRecallFromTopKMatchesEvaluate feeds TopK's lists, computed separately,
// through RecallFromTopK, as a GPU path would, and checks it against Evaluate
// on random data with several captions per image.
func TestRecallFromTopKMatchesEvaluate(t *testing.T) {
	rnd := rand.New(rand.NewPCG(9, 10))
	const nImages, perImage, dim = 70, 5, 16
	const nCaptions = nImages * perImage
	images := randomGaussian(rnd, nImages, dim)
	captions := make([]float32, nCaptions*dim)
	captionImage := make([]int, nCaptions)
	for c := range nCaptions {
		img := c / perImage
		captionImage[c] = img
		for i := range dim { // a noisy copy of its image, so recall is neither 0 nor 100
			captions[c*dim+i] = images[img*dim+i] + 1.5*float32(rnd.NormFloat64())
		}
	}
	ks := []int{1, 5, 10}
	want, err := Evaluate(images, captions, nImages, nCaptions, dim, captionImage, ks)
	if err != nil {
		t.Fatal(err)
	}
	imagesNorm, _ := NormalizeRows(images, nImages, dim)
	captionsNorm, _ := NormalizeRows(captions, nCaptions, dim)
	// Lists longer than max(ks) are allowed.
	textToImage, _, _ := TopK(captionsNorm, imagesNorm, nCaptions, nImages, dim, 12)
	imageToText, _, _ := TopK(imagesNorm, captionsNorm, nImages, nCaptions, dim, 10)
	got, err := RecallFromTopK(textToImage, imageToText, nImages, captionImage, ks)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want.Recall {
		if got.Recall[i] != want.Recall[i] {
			t.Errorf("recall %+v, want %+v", got.Recall[i], want.Recall[i])
		}
		if r := want.Recall[i]; r.TextToImagePercent <= 0 || r.TextToImagePercent >= 100 {
			t.Errorf("test data too easy or too hard: %+v", r)
		}
	}

	// Recount image->text at 5 straight from the lists: any own caption counts.
	hits := 0
	for img := range nImages {
		list := imageToText[img*10 : img*10+5]
		for _, c := range list {
			if captionImage[c] == img {
				hits++
				break
			}
		}
	}
	if r, _ := want.At(5); !(math.Abs(r.ImageToTextPercent-100*float64(hits)/nImages) <= 1e-9) {
		t.Errorf("image->text R@5 = %v, recount %v", r.ImageToTextPercent, 100*float64(hits)/nImages)
	}
}

func TestRecallFromTopKErrors(t *testing.T) {
	captionImage := []int{0, 1, 1}
	okTI := []int32{0, 1, 1} // one entry per caption over 2 images
	okIT := []int32{0, 1}    // one entry per image over 3 captions
	if _, err := RecallFromTopK(okTI, okIT, 2, captionImage, []int{1}); err != nil {
		t.Fatalf("valid input: %v", err)
	}
	for _, tc := range []struct {
		name       string
		ti, it     []int32
		nImages    int
		captionImg []int
		ks         []int
	}{
		{"lists too short for k", okTI, okIT, 2, captionImage, []int{2}},
		{"ragged list", okTI[:2], okIT, 2, captionImage, []int{1}},
		{"image index out of range", []int32{0, 2, 1}, okIT, 2, captionImage, []int{1}},
		{"caption index out of range", okTI, []int32{0, 3}, 2, captionImage, []int{1}},
		{"negative entry", okTI, []int32{-1, 1}, 2, captionImage, []int{1}},
		{"list wider than keys", []int32{0, 1, 0, 1, 0, 1, 0, 1, 0}, okIT, 2, captionImage, []int{1}},
		{"bad caption image", okTI, okIT, 2, []int{0, 2, 1}, []int{1}},
		{"no images", okTI, nil, 0, captionImage, []int{1}},
	} {
		if _, err := RecallFromTopK(tc.ti, tc.it, tc.nImages, tc.captionImg, tc.ks); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestPercentOfCLIP(t *testing.T) {
	result := func(r5TextToImage, r5ImageToText float64) Result {
		return Result{Images: 1000, Captions: 5000, Recall: []RecallAtK{
			{K: 1, TextToImagePercent: 1, ImageToTextPercent: 1},
			{K: 5, TextToImagePercent: r5TextToImage, ImageToTextPercent: r5ImageToText},
		}}
	}
	got, err := PercentOfCLIP(result(50, 75), result(80, 100))
	if err != nil {
		t.Fatal(err)
	}
	if got.K != 5 || !(math.Abs(got.TextToImagePercent-62.5) <= 1e-12) || !(math.Abs(got.ImageToTextPercent-75) <= 1e-12) {
		t.Errorf("PercentOfCLIP = %+v, want k 5, 62.5, 75", got)
	}

	other := result(50, 75)
	other.Captions = 5001
	if _, err := PercentOfCLIP(other, result(80, 100)); err == nil {
		t.Error("different caption counts: no error")
	}
	if _, err := PercentOfCLIP(result(50, 75), result(0, 100)); err == nil {
		t.Error("zero CLIP recall: no error")
	}
	if _, err := PercentOfCLIPAt(result(50, 75), result(80, 100), 10); err == nil {
		t.Error("missing k: no error")
	}
}

func TestResultJSON(t *testing.T) {
	res, err := Evaluate(handImages, handCaptions, 3, 6, 3, handCaptionImage, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"images":3`, `"captions":6`, `"images_without_captions":0`,
		`"recall":[{"k":1,"text_to_image_percent":50,"image_to_text_percent":66.66666666666667}`} {
		if !strings.Contains(string(buf), field) {
			t.Errorf("JSON %s lacks %s", buf, field)
		}
	}
	var back Result
	if err := json.Unmarshal(buf, &back); err != nil {
		t.Fatal(err)
	}
	if back.Recall[2] != res.Recall[2] {
		t.Errorf("round trip %+v, want %+v", back.Recall[2], res.Recall[2])
	}
}

// TinyRows finds the rows too short for normalisation to make unit length
// (under 1e-12, zero included); ShortRows finds them after normalisation
// (not zero, not unit), where a zero row is ZeroRows' instead.
func TestTinyAndShortRows(t *testing.T) {
	x := []float32{
		3, 4, // unit once normalised
		0, 0, // zero
		1.2e-12, 1.6e-12, // 2e-12 long: normalised to unit
		3e-13, 4e-13, // 5e-13: normalised to 0.5
		3e-30, 4e-30, // normalised to 5e-18
	}
	if got, want := TinyRows(x, 2), []int{1, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("TinyRows = %v, want %v", got, want)
	}
	n, err := NormalizeRows(x, 5, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ShortRows(n, 2), []int{3, 4}; !slices.Equal(got, want) {
		t.Errorf("ShortRows = %v, want %v (normalised: %v)", got, want, n)
	}
}
