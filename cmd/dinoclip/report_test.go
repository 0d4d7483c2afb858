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

	run, _, _ := trainRun(t)
	set := makeEvalSet(t, "plain")
	evil := "x\n\x1b[31mforged"
	if err := os.WriteFile(filepath.Join(set, "eval.json"), []byte(`{"name": "x\n\u001b[31mforged"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "eval", "--model", run, "--eval", set)
	if strings.Contains(out, "\x1b") || strings.Contains(out, evil) || !strings.Contains(out, `"x\n\x1b[31mforged": 16 images`) {
		t.Errorf("eval of a set named %q prints it raw:\n%s", evil, out)
	}
}
