package retrieval

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/strictjson"
	"github.com/dinoclip/dinoclip/npy"
)

// Files of an evaluation set directory (docs/FORMAT.md).
const (
	ImageFeaturesFile = dataset.ImageFeaturesFile
	ImageCLIPFile     = dataset.ImageCLIPFile
	CaptionCLIPFile   = dataset.CaptionCLIPFile
	CaptionImageFile  = dataset.CaptionImageFile
	SetInfoFile       = dataset.EvalInfoFile
)

// setFiles are the names of an evaluation set's files.
var setFiles = []string{ImageFeaturesFile, ImageCLIPFile, CaptionCLIPFile, CaptionImageFile, SetInfoFile}

// IsSetFile reports whether name is the name of one of an evaluation set's
// files, in any case (a filesystem that ignores case takes Images.clip.npy
// for images.clip.npy).
func IsSetFile(name string) bool {
	return slices.ContainsFunc(setFiles, func(f string) bool { return strings.EqualFold(f, name) })
}

// HoldsSet reports whether dir holds an evaluation set, whole or not:
// which image each caption describes, its eval.json, or image features
// with captions' embeddings. (Image features alone are a user's as often:
// images.dino.npy is a name anyone may give features.)
func HoldsSet(dir string) bool {
	has := func(name string) bool { _, err := os.Lstat(filepath.Join(dir, name)); return err == nil }
	return has(CaptionImageFile) || has(SetInfoFile) || has(ImageFeaturesFile) && has(CaptionCLIPFile)
}

// Set is an evaluation set held in memory: DINOv2 features and CLIP
// embeddings of the images, CLIP embeddings of the captions, and which image
// each caption describes.
type Set struct {
	Name          string
	Dir           string
	Images        int
	Captions      int
	FeatureDim    int
	EmbeddingDim  int
	ImageFeatures []float32 // [Images, FeatureDim]
	ImageCLIP     []float32 // [Images, EmbeddingDim]
	CaptionCLIP   []float32 // [Captions, EmbeddingDim]
	CaptionImage  []int     // [Captions]
	// Warnings are what LoadSet found questionable but loadable: rows of
	// CLIP embeddings that are all zero, model names it cannot read.
	Warnings []string
	// Encoders are the models eval.json records that the set was
	// extracted with (none for a set without them, such as synth's).
	Encoders dataset.Encoders

	clipMu sync.Mutex // held while CLIP computes clip, so that calls may overlap
	clip   *Result    // CLIP's own recall, computed once
}

// OverflowError is the error of an evaluation whose model output a NaN or
// infinity for an image of finite features (Largest, the largest
// magnitude): the model's float32 arithmetic overflowed.
type OverflowError struct {
	Set     string
	Image   int
	Value   float32
	Largest float64
}

func (e *OverflowError) Error() string {
	return fmt.Sprintf("evaluation set %s: the model's output for image %d is %v: its features are finite, the largest of magnitude %.3g, but the model's float32 arithmetic overflowed on them (features of another scale than the model's training data, or a damaged or edited model?)",
		e.Set, e.Image, e.Value, e.Largest)
}

// LoadSet reads the evaluation set in dir and checks that its files fit
// together. A set being written, or whose writer was interrupted
// (dataset.CheckComplete: a staging directory in dir, or an unfinished
// dinoclip synth into the directory above it), is refused.
func LoadSet(dir string) (*Set, error) {
	dir = atomicfile.ResolveDotDot(dir) // (LINK/.. as the system takes it, before names are joined to it)
	if err := dataset.CheckComplete(dir); err != nil {
		return nil, fmt.Errorf("evaluation set %w", err)
	}
	return loadSet(dir)
}

// LoadUnfinishedSet is LoadSet for describing what an unfinished dinoclip
// synth has written so far (dinoclip info): it reads dir even when the
// directory above it shows that run unfinished (a staging directory in dir
// itself is still refused). Evaluation must not use it.
func LoadUnfinishedSet(dir string) (*Set, error) {
	dir = atomicfile.ResolveDotDot(dir) // (LINK/.. as the system takes it, before names are joined to it)
	if err := dataset.CheckStaging(dir); err != nil {
		return nil, fmt.Errorf("evaluation set %w", err)
	}
	return loadSet(dir)
}

// maxSetInfoBytes bounds what is read of a SetInfoFile, which holds a
// name: a file of gigabytes there must not fill memory.
const maxSetInfoBytes = 1 << 20

func loadSet(dir string) (*Set, error) {
	s := &Set{Dir: dir, Name: filepath.Base(filepath.Clean(dir))}
	// (A named pipe there is refused, not waited on.)
	if b, err := atomicfile.ReadRegular(filepath.Join(dir, SetInfoFile), maxSetInfoBytes); err == nil {
		var info struct {
			Name string `json:"name"`
		}
		// Bytes that are not UTF-8 would be read as U+FFFD (another name
		// than the file's), and a key given twice as the last one.
		err := strictjson.CheckKeys(b)
		if err == nil {
			err = strictjson.Describe(json.Unmarshal(b, &info))
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SetInfoFile), err)
		}
		if info.Name != "" {
			s.Name = info.Name
		}
		// (Names the set loads without: a warning, as of training data.)
		if s.Encoders, err = dataset.ParseEncoders(b); err != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: %v: which DINOv2 and CLIP models made the set is not known", filepath.Join(dir, SetInfoFile), err))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("evaluation set: %w", err)
	}
	// The name is printed in tables, errors and records: one with
	// characters that are not printable (control characters move the
	// cursor or forge a line; format characters reorder or hide text) is
	// refused, from eval.json or from the directory's name.
	if !dataset.Printable(s.Name) {
		at := filepath.Join(dir, SetInfoFile)
		if !dataset.Printable(at) {
			at = strconv.Quote(at)
		}
		return nil, fmt.Errorf("evaluation set: its name %q has characters that are not printable or is not UTF-8: give it a plain \"name\" in %s", s.Name, at)
	}
	if strings.TrimSpace(s.Name) == "" { // (a column of nothing in a table)
		return nil, fmt.Errorf("evaluation set %s: its name %q is blank: give it a plain \"name\" in %s", dir, s.Name, filepath.Join(dir, SetInfoFile))
	}
	// (A directory of something else, such as training data given as a
	// set, is said to be no set, not a file missing from one.)
	if _, err := os.Lstat(filepath.Join(dir, ImageFeaturesFile)); errors.Is(err, os.ErrNotExist) {
		hint := fmt.Sprintf("a set holds %s, %s, %s and %s; docs/FORMAT.md", ImageFeaturesFile, ImageCLIPFile, CaptionCLIPFile, CaptionImageFile)
		// (dinoclip synth --out DIR puts its evaluation set in DIR/eval.)
		sub := filepath.Join(dir, dataset.EvalDir)
		if _, err := os.Stat(filepath.Join(sub, ImageFeaturesFile)); err == nil {
			hint = "the set is in " + sub
		}
		return nil, fmt.Errorf("evaluation set %s: no %s there: not an evaluation set (%s)", dir, ImageFeaturesFile, hint)
	}
	var err error
	var imgShape, clipShape, capShape []int
	if s.ImageFeatures, imgShape, err = readMatrix(dir, ImageFeaturesFile); err != nil {
		return nil, err
	}
	if s.ImageCLIP, clipShape, err = readMatrix(dir, ImageCLIPFile); err != nil {
		return nil, err
	}
	if s.CaptionCLIP, capShape, err = readMatrix(dir, CaptionCLIPFile); err != nil {
		return nil, err
	}
	idxPath := filepath.Join(dir, CaptionImageFile)
	idx, idxShape, err := npy.ReadInt64(idxPath)
	if err != nil {
		return nil, fmt.Errorf("evaluation set: %w", err)
	}
	s.Images, s.FeatureDim = imgShape[0], imgShape[1]
	s.Captions, s.EmbeddingDim = capShape[0], capShape[1]
	switch {
	case clipShape[0] != s.Images:
		return nil, fmt.Errorf("evaluation set %s: %s has %d rows but %s has %d", dir, ImageCLIPFile, clipShape[0], ImageFeaturesFile, s.Images)
	case clipShape[1] != s.EmbeddingDim:
		return nil, fmt.Errorf("evaluation set %s: image embeddings are %d wide but caption embeddings %d", dir, clipShape[1], s.EmbeddingDim)
	case len(idxShape) != 1 || idxShape[0] != s.Captions:
		return nil, fmt.Errorf("%s: shape %v, want [%d] (one image index per caption)", idxPath, idxShape, s.Captions)
	}
	// A zero embedding has no direction: recall against it ranks ties, not
	// similarity (a padded or failed extraction writes them). A warning,
	// not a refusal: runs started on such a set must still resume.
	for _, m := range []struct {
		name string
		x    []float32
		dim  int
	}{{ImageCLIPFile, s.ImageCLIP, s.EmbeddingDim}, {CaptionCLIPFile, s.CaptionCLIP, s.EmbeddingDim}} {
		zero := ZeroRows(m.x, m.dim)
		if len(zero) > 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: %d of %d rows are all zero (the first is row %d): an embedding of zero has no cosine with anything, so recall ranks ties there (a padded or failed extraction?)",
				filepath.Join(dir, m.name), len(zero), len(m.x)/m.dim, zero[0]))
		}
		// Rows shorter than F.normalize's 1e-12 stay shorter than unit
		// length once normalised: their similarities shrink with them,
		// and recall, which CLIP_benchmark computes the same way, with
		// them (a set of another scale, say).
		if short := slices.DeleteFunc(TinyRows(m.x, m.dim), func(r int) bool { _, z := slices.BinarySearch(zero, r); return z }); len(short) > 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: %d of %d rows are shorter than 1e-12 (the first is row %d): normalisation divides them by 1e-12 (as PyTorch's F.normalize), so they stay shorter than unit length and score below their cosines, which changes the recall (embeddings of another scale?)",
				filepath.Join(dir, m.name), len(short), len(m.x)/m.dim, short[0]))
		}
	}
	// With at most K images, text-to-image R@K is 100 whatever the model:
	// a set too small to rank images by; with at most K captions,
	// image-to-text R@K likewise.
	top := slices.Max(defaultKs)
	var few []string
	if s.Images <= top {
		few = append(few, fmt.Sprintf("%s: text-to-image recall at K >= %d is 100 by construction (every image is within the top K)", plural.Count(s.Images, "image", "images"), s.Images))
	}
	if s.Captions <= top {
		few = append(few, fmt.Sprintf("%s: image-to-text recall at K >= %d is 100 by construction (every caption is within the top K)", plural.Count(s.Captions, "caption", "captions"), s.Captions))
	}
	if len(few) > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("evaluation set %s has only %s, so those columns measure nothing", s.Name, strings.Join(few, "; and only ")))
	}
	s.CaptionImage = make([]int, len(idx))
	hasCaption := make([]bool, s.Images)
	for i, v := range idx {
		if v < 0 || v >= int64(s.Images) {
			return nil, fmt.Errorf("%s: caption %d names image %d, but there are %d images", idxPath, i, v, s.Images)
		}
		s.CaptionImage[i] = int(v)
		hasCaption[v] = true
	}
	for i, ok := range hasCaption {
		if !ok {
			return nil, fmt.Errorf("%s: image %d has no caption", idxPath, i)
		}
	}
	return s, nil
}

// readMatrix reads a 2-D float array from dir and rejects NaN and Inf.
func readMatrix(dir, name string) ([]float32, []int, error) {
	path := filepath.Join(dir, name)
	a, err := npy.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("evaluation set: %w", err)
	}
	defer a.Close()
	v, err := a.Float32s()
	if err != nil {
		return nil, nil, fmt.Errorf("evaluation set: %w", err)
	}
	shape := a.Shape()
	if len(shape) != 2 {
		return nil, nil, fmt.Errorf("%s: shape %v, want a 2-D matrix", path, shape)
	}
	if err := a.CheckFinite(v, 0); err != nil {
		return nil, nil, err
	}
	if err := checkShape(path, v, shape[0], shape[1]); err != nil { // (finite: checked above)
		return nil, nil, err
	}
	return v, shape, nil
}

// Report is one evaluation: recall of CLIP's own image embeddings, recall of
// the projected DINOv2 features against the same caption embeddings, and
// their ratio at R@5.
type Report struct {
	Name          string         `json:"name"`
	CLIP          Result         `json:"clip"`
	Projected     Result         `json:"projected"`
	PercentOfCLIP RelativeRecall `json:"percent_of_clip"`
	// TinyProjections counts the images whose projection is zero or
	// shorter than 1e-12 (TinyRows): normalisation cannot make them unit
	// length, so they score below their cosines (0 where zero) and the
	// ranking orders their ties. A sound model has none.
	TinyProjections int `json:"tiny_projections,omitempty"`
}

// Project maps n rows of DINOv2 features into CLIP space: dst is
// [n, EmbeddingDim], x is [n, FeatureDim].
type Project func(dst, x []float32, n int) error

// ProjectBatch is how many images Evaluate projects at a time.
const ProjectBatch = 1024

// CLIP is the recall of CLIP's own image embeddings on the set (computed
// once). A set on which CLIP's R@5 is zero in either direction is an error:
// "% of CLIP" is undefined there, and such a set is broken, not hard.
// It may be called from several goroutines.
func (s *Set) CLIP() (Result, error) {
	s.clipMu.Lock()
	defer s.clipMu.Unlock()
	if s.clip == nil {
		r, err := Evaluate(s.ImageCLIP, s.CaptionCLIP, s.Images, s.Captions, s.EmbeddingDim, s.CaptionImage, nil)
		if err != nil {
			return Result{}, fmt.Errorf("evaluation set %s: %w", s.Name, err)
		}
		if _, err := PercentOfCLIP(r, r); err != nil {
			return Result{}, fmt.Errorf("evaluation set %s: %w", s.Name, err)
		}
		s.clip = &r
	}
	return *s.clip, nil
}

// Evaluate projects the set's image features with project and reports
// recall@1/5/10 for the projection and for CLIP.
func (s *Set) Evaluate(project Project) (Report, error) {
	return s.EvaluateWith(project, nil)
}

// EvaluateWith is Evaluate ranking the projection with topK (nil: TopK),
// e.g. the GPU's top-k of the engine that projects. CLIP's own recall is
// ranked with TopK, once per set, whatever topK is.
func (s *Set) EvaluateWith(project Project, topK TopKFunc) (Report, error) {
	clip, err := s.CLIP()
	if err != nil {
		return Report{}, err
	}
	projected := make([]float32, s.Images*s.EmbeddingDim)
	for lo := 0; lo < s.Images; lo += ProjectBatch {
		hi := min(lo+ProjectBatch, s.Images)
		err := project(projected[lo*s.EmbeddingDim:hi*s.EmbeddingDim], s.ImageFeatures[lo*s.FeatureDim:hi*s.FeatureDim], hi-lo)
		if err != nil {
			return Report{}, fmt.Errorf("evaluation set %s: %w", s.Name, err)
		}
	}
	// The features are finite (LoadSet checks them): a NaN or Inf here is
	// the model's arithmetic overflowing, on features far larger than it
	// was made for or with damaged weights, not a NaN "image" of the
	// evaluation set, as the ranking's message would have it.
	for i, v := range projected {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			img := i / s.EmbeddingDim
			return Report{}, &OverflowError{Set: s.Name, Image: img, Value: v, Largest: MaxAbs(s.ImageFeatures[img*s.FeatureDim : (img+1)*s.FeatureDim])}
		}
	}
	p, err := EvaluateWith(topK, projected, s.CaptionCLIP, s.Images, s.Captions, s.EmbeddingDim, s.CaptionImage, nil)
	if err != nil {
		return Report{}, fmt.Errorf("evaluation set %s: projected embeddings: %w", s.Name, err)
	}
	rel, err := PercentOfCLIP(p, clip)
	if err != nil {
		return Report{}, fmt.Errorf("evaluation set %s: %w", s.Name, err)
	}
	return Report{Name: s.Name, CLIP: clip, Projected: p, PercentOfCLIP: rel, TinyProjections: len(TinyRows(projected, s.EmbeddingDim))}, nil
}
