package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/retrieval"
)

// An evaluation set's name is shown as written when it is plain text, and
// quoted with escapes otherwise: a name from an eval.json cannot put
// terminal escapes or line breaks into eval's and train's tables.
func TestRecallTableEscapesNames(t *testing.T) {
	for name, want := range map[string]string{
		"mscoco-5k":         "mscoco-5k",
		"flickr 30k":        "flickr 30k",
		"évaluation":        "évaluation",
		"x\n\x1b[31mforged": `"x\n\x1b[31mforged"`,
		`say "hi"`:          `"say \"hi\""`,
		"":                  `""`,
	} {
		var sb strings.Builder
		if err := writeRecallTable(&sb, []retrieval.Report{{Name: name}}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(sb.String(), "\n")
		if len(lines) != 6 || !strings.HasPrefix(lines[2], want+"  ") || strings.Contains(sb.String(), "\x1b") {
			t.Errorf("set %q: table\n%s\nwant 5 lines, the third starting %q", name, sb.String(), want)
		}
	}

	// Such a name in an eval.json is refused where the set is loaded,
	// quoted: it would reach errors and records too, not only the tables.
	run, _, _ := trainRun(t)
	set := makeEvalSet(t, "plain")
	if err := os.WriteFile(filepath.Join(set, "eval.json"), []byte(`{"name": "x\n\u001b[31mforged"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := wantError(t, []string{"eval", "--model", run, "--eval", set}, `"x\n\x1b[31mforged" has characters that are not printable`); strings.Contains(err.Error(), "\x1b") {
		t.Errorf("the refusal prints the name raw: %v", err)
	}
	// So is a right-to-left override, which reorders what follows it, and
	// a directory named so (without a name in eval.json).
	if err := os.WriteFile(filepath.Join(set, "eval.json"), []byte(`{"name": "abc\u202edef"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"eval", "--model", run, "--eval", set}, `"abc\u202edef" has characters that are not printable`)
	// A blank name would be an empty column.
	if err := os.WriteFile(filepath.Join(set, "eval.json"), []byte(`{"name": "   "}`), 0o644); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"eval", "--model", run, "--eval", set}, `its name "   " is blank`)
	os.Remove(filepath.Join(set, "eval.json"))
	odd := filepath.Join(filepath.Dir(set), "set\u202eodd")
	if err := os.Rename(set, odd); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"eval", "--model", run, "--eval", odd}, `"set\u202eodd" has characters that are not printable`, "eval.json")
}

// A report recorded without its percentage of CLIP (an empty one in a
// model's metadata) shows "-" there, as for its recalls, not 0.00.
func TestRecallTableWithoutPercentOfCLIP(t *testing.T) {
	for _, c := range []struct {
		rel  retrieval.RelativeRecall
		want string
	}{
		{retrieval.RelativeRecall{}, "-"},
		{retrieval.RelativeRecall{K: 5, TextToImagePercent: 82.9, ImageToTextPercent: 77.57}, "82.90"},
	} {
		var sb strings.Builder
		if err := writeRecallTable(&sb, []retrieval.Report{{Name: "set", PercentOfCLIP: c.rel}}); err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(sb.String(), "\n"); len(lines) < 3 || !strings.HasSuffix(lines[2], " "+c.want) {
			t.Errorf("percent of CLIP %+v: table\n%s\nwant its first row to end in %q", c.rel, sb.String(), c.want)
		}
	}
}
