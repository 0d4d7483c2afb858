package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/printable"
)

// warnEncoders warns when a and b, the encoders of what aWhat and bWhat
// name, are different models (dataset.Mismatch): a warning, since the
// names may be one model's.
func warnEncoders(w io.Writer, aWhat string, a dataset.Encoders, bWhat string, b dataset.Encoders) {
	if msg := dataset.Mismatch(aWhat, a, bWhat, b); msg != "" {
		fmt.Fprintf(w, "dinoclip: warning: %s\n", printable.String(msg))
	}
}

// extractedEncoders is what dir's extract.json records of the models that
// made the features (and targets) in dir: none when it has no record, and
// none with a warning when its record cannot be read (the files may still
// be good, and are not refused for it).
func extractedEncoders(w io.Writer, dir string) dataset.Encoders {
	enc, err := dataset.ReadEncoders(dir)
	if err != nil {
		fmt.Fprintf(w, "dinoclip: warning: %s: which DINOv2 and CLIP models made %s is not known\n", printable.String(err.Error()), printable.String(dir))
	}
	return enc
}

// warnFeaturesEncoders warns of features files (paths) whose extraction,
// as the extract.json beside them records it, used another DINOv2 model
// than the one of projector (what it is: "the model PATH", "the index
// PATH"): their projections mean nothing. Each directory is looked at
// once.
func warnFeaturesEncoders(w io.Writer, projector string, model dataset.Encoders, paths []string) {
	seen := map[string]bool{}
	for _, p := range paths {
		dir := filepath.Dir(p)
		if seen[dir] {
			continue
		}
		seen[dir] = true
		features := dataset.Encoders{DINOv2: extractedEncoders(w, dir).DINOv2}
		warnEncoders(w, projector, model, "the features in "+dir, features)
	}
}
