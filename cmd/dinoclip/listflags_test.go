package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A repeatable flag's value is one entry, commas and all: an evaluation
// set or a features file whose path has a comma can be named, on the
// command line and in the environment, and a list of sets is given by
// repeating the flag (or as a YAML list in --config), not by commas that
// would make "a" and "b" of it when both exist.
func TestListFlagsKeepCommas(t *testing.T) {
	run, _, _ := trainRun(t)
	parent := t.TempDir()
	commaSet := makeEvalSet(t, "a,b")
	// Decoys the old splitting would have read instead: parent/a and b
	// (relative to the working directory).
	set := filepath.Join(parent, "a,b")
	if err := os.Rename(commaSet, set); err != nil {
		t.Fatal(err)
	}
	t.Chdir(parent)
	if err := os.Rename(makeEvalSet(t, "decoy-a"), filepath.Join(parent, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(makeEvalSet(t, "decoy-b"), filepath.Join(parent, "b")); err != nil {
		t.Fatal(err)
	}
	other := makeEvalSet(t, "other")
	out := mustRun(t, "eval", "--model", run, "--eval", set, "--eval", other)
	if !strings.Contains(out, "a,b: ") || !strings.Contains(out, "other: ") || strings.Contains(out, "decoy") {
		t.Errorf("eval --eval %s --eval %s evaluated other sets:\n%s", set, other, out)
	}

	t.Setenv("DINOCLIP_EVAL", set)
	out = mustRun(t, "eval", "--model", run)
	if !strings.Contains(out, "a,b: ") || strings.Contains(out, "decoy") {
		t.Errorf("DINOCLIP_EVAL=%s evaluated other sets:\n%s", set, out)
	}
	t.Setenv("DINOCLIP_EVAL", "")

	features := filepath.Join(parent, "x,y.dino.npy")
	if err := os.Rename(filepath.Join(set, "images.dino.npy"), features); err != nil {
		t.Fatal(err)
	}
	index := filepath.Join(parent, "index")
	mustRun(t, "index", "--model", run, "--features", features, "--out", index)
	if out := mustRun(t, "info", index); !strings.Contains(out, "x,y.dino.npy") {
		t.Errorf("index --features %s: info of the index names no such file:\n%s", features, out)
	}
}
