package retrieval

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/npy"
)

// writeSet writes a 3-image, 2-dim set whose features equal its CLIP
// embeddings, then applies edit to the arrays before writing.
func writeSet(t *testing.T, edit func(feat, clip, caps []float32, idx []int64) ([]float32, []float32, []float32, []int64)) string {
	t.Helper()
	dir := t.TempDir()
	feat := []float32{1, 0, 0, 1, -1, 0}
	clip := append([]float32(nil), feat...)
	caps := []float32{1, 0.1, 0.1, 1, -1, 0.2, 0.9, 0}
	idx := []int64{0, 1, 2, 0}
	if edit != nil {
		feat, clip, caps, idx = edit(feat, clip, caps, idx)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(npy.WriteFloat32(filepath.Join(dir, ImageFeaturesFile), []int{len(feat) / 2, 2}, feat))
	must(npy.WriteFloat32(filepath.Join(dir, ImageCLIPFile), []int{len(clip) / 2, 2}, clip))
	must(npy.WriteFloat32(filepath.Join(dir, CaptionCLIPFile), []int{len(caps) / 2, 2}, caps))
	must(npy.WriteInt64(filepath.Join(dir, CaptionImageFile), []int{len(idx)}, idx))
	return dir
}

func TestSetEvaluate(t *testing.T) {
	dir := writeSet(t, nil)
	if err := os.WriteFile(filepath.Join(dir, SetInfoFile), []byte(`{"name":"tiny"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "tiny" || s.Images != 3 || s.Captions != 4 {
		t.Fatalf("loaded %q with %d images and %d captions", s.Name, s.Images, s.Captions)
	}
	identity := func(dst, x []float32, n int) error { copy(dst, x); return nil }
	r, err := s.Evaluate(identity)
	if err != nil {
		t.Fatal(err)
	}
	// Every caption is closest to its own image, so both sides are perfect.
	if r1, _ := r.CLIP.At(1); r1.TextToImagePercent != 100 || r1.ImageToTextPercent != 100 {
		t.Fatalf("CLIP R@1 %+v, want 100 both ways", r1)
	}
	if r.PercentOfCLIP.TextToImagePercent != 100 || r.PercentOfCLIP.ImageToTextPercent != 100 {
		t.Fatalf("identity projection is %+v of CLIP, want 100%%", r.PercentOfCLIP)
	}
	// A projection that swaps the axes of every image sends each caption to
	// a wrong image: (1,.1) to image 1, (.1,1) to 0, (-1,.2) to 0, (.9,0) to 1.
	swap := func(dst, x []float32, n int) error {
		for i := 0; i < n; i++ {
			dst[2*i], dst[2*i+1] = x[2*i+1], x[2*i]
		}
		return nil
	}
	if r, err = s.Evaluate(swap); err != nil {
		t.Fatal(err)
	}
	if r1, _ := r.Projected.At(1); r1.TextToImagePercent != 0 {
		t.Fatalf("swapped projection: text->image R@1 %v, want 0", r1.TextToImagePercent)
	}
	// A model whose output overflows is named, not the set's images.
	overflow := func(dst, x []float32, n int) error {
		copy(dst, x)
		dst[len(dst)-1] = float32(math.Inf(1))
		return nil
	}
	want := fmt.Sprintf("the model's output for image 2 is +Inf: its features are finite, the largest of magnitude %.3g", MaxAbs(s.ImageFeatures[2*s.FeatureDim:3*s.FeatureDim]))
	if _, err := s.Evaluate(overflow); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a projection that overflows: %v, want the model named", err)
	}
}

func TestLoadSetErrors(t *testing.T) {
	cases := map[string]func(feat, clip, caps []float32, idx []int64) ([]float32, []float32, []float32, []int64){
		"rows": func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) {
			return f, c[:4], p, i
		},
		"names image 3": func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) {
			return f, c, p, []int64{0, 1, 2, 3}
		},
		"image 1 has no caption": func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) {
			return f, c, p, []int64{0, 0, 2, 0}
		},
		"NaN": func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) {
			p[3] = float32(math.NaN())
			return f, c, p, i
		},
		"one image index per caption": func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) {
			return f, c, p, i[:3]
		},
	}
	for want, edit := range cases {
		_, err := LoadSet(writeSet(t, edit))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got error %v", want, err)
		}
	}
	if _, err := LoadSet(t.TempDir()); err == nil {
		t.Error("empty directory: no error")
	}
	// Embeddings 0 wide: an error naming the file.
	dir := writeSet(t, nil)
	for _, name := range []string{ImageCLIPFile, CaptionCLIPFile} {
		shape := []int{3, 0}
		if name == CaptionCLIPFile {
			shape[0] = 4
		}
		if err := npy.WriteFloat32(filepath.Join(dir, name), shape, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadSet(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ImageCLIPFile)+" has rows 0 wide") {
		t.Errorf("embeddings 0 wide: %v, want an error naming %s", err, ImageCLIPFile)
	}
	// A float64 file: a finite value beyond float32's range reads as
	// infinite, which the error says; a NaN is a NaN, and an infinity in
	// a float32 file is one.
	for _, c := range []struct {
		value   float64
		float64 bool
		want    string
		notWant string
	}{
		{1e39, true, "row 3, column 1 is +Inf in float32 (infinite, or a float64 beyond float32's range)", ""},
		{-2.1e198, true, "row 3, column 1 is -Inf in float32 (infinite", ""},
		{math.NaN(), true, "is NaN", "beyond"},
		{math.Inf(1), false, "is +Inf", "beyond"},
	} {
		dir := writeSet(t, func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) { return f, c, p, i })
		path := filepath.Join(dir, CaptionCLIPFile)
		p, shape, err := npy.ReadFloat64(path)
		if err != nil {
			t.Fatal(err)
		}
		p[7] = c.value
		if c.float64 {
			err = npy.WriteFloat64(path, shape, p)
		} else {
			p32 := make([]float32, len(p))
			for i, v := range p {
				p32[i] = float32(v)
			}
			err = npy.WriteFloat32(path, shape, p32)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = LoadSet(dir)
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.notWant != "" && strings.Contains(err.Error(), c.notWant)) {
			t.Errorf("a caption embedding of %v (float64 file %v): %v, want an error saying %q", c.value, c.float64, err, c.want)
		}
	}
}

// An all-zero CLIP embedding row loads, with a warning naming the file and
// the first such row (a refusal would strand runs started on the set); so
// does one shorter than 1e-12.
func TestLoadSetWarnsOfZeroRows(t *testing.T) {
	cases := map[string]func(feat, clip, caps []float32, idx []int64) ([]float32, []float32, []float32, []int64){
		"images.clip.npy: 1 of 11 rows are all zero (the first is row 2)": func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) {
			c[4], c[5] = 0, 0
			return f, c, p, i
		},
		"captions.clip.npy: 1 of 12 rows are all zero (the first is row 0)": func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) {
			p[0], p[1] = 0, float32(math.Copysign(0, -1))
			return f, c, p, i
		},
		// Shorter than F.normalize's 1e-12, not zero: a warning of its
		// own (and not of the zero rows').
		"images.clip.npy: 1 of 11 rows are shorter than 1e-12 (the first is row 1)": func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) {
			c[2], c[3] = 3e-13, -4e-13
			return f, c, p, i
		},
	}
	for want, edit := range cases {
		s, err := LoadSet(writeSet(t, bigger(edit)))
		if err != nil || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], want) {
			t.Errorf("%s: error %v, warnings %q", want, err, s.Warnings)
		}
	}
	if s, err := LoadSet(writeSet(t, bigger(nil))); err != nil || len(s.Warnings) != 0 {
		t.Errorf("a clean set: error %v, warnings %q", err, s.Warnings)
	}
}

// bigger is edit with 8 more images (one caption each) after writeSet's
// 3: 11, one more than the largest recall cut-off.
func bigger(edit func(feat, clip, caps []float32, idx []int64) ([]float32, []float32, []float32, []int64)) func(feat, clip, caps []float32, idx []int64) ([]float32, []float32, []float32, []int64) {
	return func(f, c, p []float32, i []int64) ([]float32, []float32, []float32, []int64) {
		if edit != nil {
			f, c, p, i = edit(f, c, p, i)
		}
		for n := range 8 {
			v := []float32{float32(n + 2), float32(n - 3)}
			f, c, p, i = append(f, v...), append(c, v...), append(p, v...), append(i, int64(3+n))
		}
		return f, c, p, i
	}
}

// A set of at most 10 images (the largest cut-off) loads with a warning
// that its recall at K >= its size measures nothing, and of its captions
// too where they are as few; one of 11 without.
func TestLoadSetWarnsOfTooFewImages(t *testing.T) {
	s, err := LoadSet(writeSet(t, nil))
	if err != nil || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "has only 3 images: text-to-image recall at K >= 3 is 100 by construction (every image is within the top K); "+
		"and only 4 captions: image-to-text recall at K >= 4 is 100 by construction (every caption is within the top K), so those columns measure nothing") {
		t.Errorf("a set of 3 images: error %v, warnings %q", err, s.Warnings)
	}
	if s, err := LoadSet(writeSet(t, bigger(nil))); err != nil || s.Images != 11 || len(s.Warnings) != 0 {
		t.Errorf("a set of 11 images: error %v, warnings %q", err, s.Warnings)
	}
}

// fixedTopK is an engine whose top-k answers every query with keys 0, 1,
// ... (a bogus ranking that shows it was used) and counts its calls.
type fixedTopK struct{ calls int }

func (f *fixedTopK) TopK(queries, keys []float32, nq, nk, dim, k int) ([]int32, []float32, error) {
	f.calls++
	k = min(k, nk)
	idx, sc := make([]int32, nq*k), make([]float32, nq*k)
	for q := range nq {
		for p := range k {
			idx[q*k+p] = int32(p)
		}
	}
	return idx, sc, nil
}

// EvaluateWith ranks the projection with the given top-k (found on an
// engine by TopKOf) and CLIP's own recall with TopK; nil is Evaluate.
func TestSetEvaluateWith(t *testing.T) {
	s, err := LoadSet(writeSet(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	identity := func(dst, x []float32, n int) error { copy(dst, x); return nil }
	want, err := s.Evaluate(identity)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.EvaluateWith(identity, nil); err != nil || !reflect.DeepEqual(r, want) {
		t.Fatalf("EvaluateWith(nil) = %+v, %v; Evaluate %+v", r, err, want)
	}
	if r, err := s.EvaluateWith(identity, TopK); err != nil || !reflect.DeepEqual(r, want) {
		t.Fatalf("EvaluateWith(TopK) = %+v, %v; Evaluate %+v", r, err, want)
	}
	f := &fixedTopK{}
	topK := TopKOf(f)
	if topK == nil || TopKOf(struct{}{}) != nil {
		t.Fatal("TopKOf does not find the method, or finds one where there is none")
	}
	r, err := s.EvaluateWith(identity, topK)
	if err != nil {
		t.Fatal(err)
	}
	// Caption c ranks image 0 first: right for captions 0 and 3 only.
	if r1, _ := r.Projected.At(1); f.calls != 2 || r1.TextToImagePercent != 50 || !reflect.DeepEqual(r.CLIP, want.CLIP) {
		t.Fatalf("with a fixed top-k (%d calls): projected %+v, CLIP %+v", f.calls, r.Projected, r.CLIP)
	}
	boom := errors.New("GPU on fire")
	_, err = s.EvaluateWith(identity, func([]float32, []float32, int, int, int, int) ([]int32, []float32, error) { return nil, nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("a failing top-k: %v", err)
	}
}

// An evaluation set that is being written or was left incomplete is
// refused: a staging directory in it, or the unfinished-run marker of a
// dinoclip synth in the directory above it (an interrupted synth --force
// may have replaced the training data beside it but not this set).
// LoadUnfinishedSet, for describing it, reads the latter.
func TestLoadSetRefusesIncomplete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), dataset.EvalDir) // (where synth writes it)
	if err := os.Rename(writeSet(t, nil), dir); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(dir, dataset.StagingPrefix+"42")
	if err := os.Mkdir(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSet(dir); !errors.Is(err, dataset.ErrIncomplete) {
		t.Errorf("with %s: %v, want a refusal", staging, err)
	}
	os.Remove(staging)
	marker := filepath.Join(filepath.Dir(dir), dataset.UnfinishedFile)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSet(dir); !errors.Is(err, dataset.ErrIncomplete) || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("with %s: %v, want a refusal", marker, err)
	}
	if s, err := LoadUnfinishedSet(dir); err != nil || s.Images != 3 {
		t.Errorf("LoadUnfinishedSet: %v", err)
	}
	os.Remove(marker)
	if _, err := LoadSet(dir); err != nil {
		t.Errorf("a whole set: %v", err)
	}
}

// An eval.json whose bytes are not UTF-8 (the name would be read as
// U+FFFD, another name than the file's), that gives a key twice (each
// reader takes its own), or that is larger than a name needs (a file of
// gigabytes would be read into memory whole) is refused.
func TestLoadSetRefusesAmbiguousInfo(t *testing.T) {
	for info, want := range map[string]string{
		"{\"name\":\"\xff\xfe\"}":                                "not UTF-8",
		`{"name":"a","name":"b"}`:                                `"name" appears twice`,
		`{"name":"a","extractor":{"x":1}}`:                       "",
		`{"name":"a"}` + strings.Repeat(" ", maxSetInfoBytes-12): "",
		`{"name":"a"}` + strings.Repeat(" ", maxSetInfoBytes-11): fmt.Sprintf("over %d bytes", maxSetInfoBytes),
	} {
		dir := writeSet(t, bigger(nil))
		if err := os.WriteFile(filepath.Join(dir, SetInfoFile), []byte(info), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSet(dir)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("eval.json %.40q (%d bytes): %v, want %q", info, len(info), err, want)
		}
	}
}
