package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/buildinfo"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
)

func TestHelpCommand(t *testing.T) {
	cases := []struct {
		args  []string
		wants []string
	}{
		{nil, []string{"COMMANDS:", "train", "synth"}},
		{[]string{"help"}, []string{"COMMANDS:", "eval", "demo"}},
		{[]string{"help", "train"}, []string{"dinoclip train", "--resume"}},
		{[]string{"help", "info"}, []string{"dinoclip info PATH"}},
		{[]string{"train", "--help"}, []string{"dinoclip train", "--resume"}},
	}
	for _, c := range cases {
		out := mustRun(t, c.args...)
		for _, w := range c.wants {
			if !strings.Contains(out, w) {
				t.Errorf("dinoclip %s lacks %q:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}
	wantError(t, []string{"nope"}, `unknown command "nope"`, "dinoclip help")
	wantError(t, []string{"help", "nope"}, "nope")
}

// --help or -h among a command's flags asks for that command's help,
// whatever follows (urfave/cli described the command named by the next
// argument: train --help eval described eval); a flag's value or an
// argument after the flags that reads -h is no request.
func TestHelpWhateverFollows(t *testing.T) {
	cmds := newApp().Commands
	help := func(cmd string) []string { return []string{"dinoclip", cmd, "--help"} }
	for _, c := range []struct{ args, want []string }{
		{[]string{"dinoclip", "train", "--help", "eval"}, help("train")},
		{[]string{"dinoclip", "info", "--help", "h"}, help("info")},
		{[]string{"dinoclip", "info", "-h", "foo", "bar"}, help("info")},
		{[]string{"dinoclip", "search", "--k", "5", "-help", "x"}, help("search")},
		{[]string{"dinoclip", "train", "--help=true", "x"}, help("train")},
		{[]string{"dinoclip", "train", "--resume", "--help", "x"}, help("train")}, // (a bool flag takes no value)
		{[]string{"dinoclip", "train", "--out", "-h", "x"}, nil},                  // (--out's value)
		{[]string{"dinoclip", "train", "--help=false", "x"}, nil},
		{[]string{"dinoclip", "info", "x", "--help"}, nil}, // (after the flags: info refuses it)
		{[]string{"dinoclip", "info", "--", "-h"}, nil},
		{[]string{"dinoclip", "help", "-h", "x"}, nil},
		{[]string{"dinoclip", "train", "--help"}, nil},
	} {
		want := c.want
		if want == nil {
			want = c.args
		}
		if got := helpArgs(cmds, c.args); !slices.Equal(got, want) {
			t.Errorf("helpArgs(%q) = %q, want %q", c.args, got, want)
		}
	}
	out := mustRun(t, helpArgs(cmds, []string{"dinoclip", "train", "--help", "eval"})[1:]...)
	if !strings.Contains(out, "dinoclip train - ") || strings.Contains(out, "dinoclip eval - ") {
		t.Errorf("dinoclip train --help eval:\n%s", out)
	}
}

// A path named h or help is a path to every command, not a request for
// help: info described nothing and average wrote nothing, exiting 0.
func TestPathNamedHelp(t *testing.T) {
	run, _, _ := trainRun(t)
	dir := t.TempDir()
	t.Chdir(dir)
	for _, name := range []string{"h", "help"} {
		if err := os.Symlink(run, name); err != nil {
			t.Fatal(err)
		}
		if out := mustRun(t, "info", name); !strings.Contains(out, name+": training run") {
			t.Errorf("dinoclip info %s (a run):\n%s", name, out)
		}
		mustRun(t, "average", "--out", name+".safetensors", name)
		if _, err := os.Stat(name + ".safetensors"); err != nil {
			t.Errorf("dinoclip average --out %s.safetensors %s (a run): %v", name, name, err)
		}
	}
}

// Every command's --help fits in helpWidth columns, and its texts are
// written to fit as they are: a line urfave/cli has to wrap loses its
// indentation (an example split mid-command, a usage mid-bracket).
func TestHelpFitsWidth(t *testing.T) {
	const indent = 3 // of the name, usage and description lines
	for _, c := range newApp().Commands {
		texts := map[string]int{c.Description: indent, c.UsageText: indent, c.Usage: indent + len("dinoclip "+c.Name+" - ")}
		for text, at := range texts {
			for _, line := range strings.Split(text, "\n") {
				if at+len(line) > helpWidth {
					t.Errorf("dinoclip %s --help: %q runs to column %d, past %d", c.Name, line, at+len(line), helpWidth)
				}
			}
		}
		if c.Name == "help" {
			continue
		}
		for _, line := range strings.Split(mustRun(t, c.Name, "--help"), "\n") {
			if len(line) > helpWidth {
				t.Errorf("dinoclip %s --help: %q runs past column %d", c.Name, line, helpWidth)
			}
		}
	}
}

// Every command's --help names each flag as its usage line and the docs
// do, with two dashes: urfave/cli writes a one-letter name with one
// (search's -k), which read as another option than --k.
func TestHelpNamesFlagsWithTwoDashes(t *testing.T) {
	for _, c := range newApp().Commands {
		if c.Name == "help" {
			continue
		}
		help := mustRun(t, c.Name, "--help")
		_, options, ok := strings.Cut(help, "\nOPTIONS:\n")
		if !ok {
			t.Fatalf("dinoclip %s --help has no OPTIONS:\n%s", c.Name, help)
		}
		names := map[string]bool{}
		for _, line := range strings.Split(options, "\n") {
			if name, ok := strings.CutPrefix(line, "   -"); ok {
				names[strings.FieldsFunc(name, func(r rune) bool { return r == ' ' || r == ',' })[0]] = true
			}
		}
		for _, f := range c.Flags {
			if !names["-"+f.Names()[0]] {
				t.Errorf("dinoclip %s --help does not list --%s (its options: %v):\n%s", c.Name, f.Names()[0], names, options)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	defer func(c string) { buildinfo.Commit = c }(buildinfo.Commit)
	buildinfo.Commit = "feedc0de-dirty" // as make build's -ldflags set it
	for _, flag := range []string{"--version", "-v"} {
		out := mustRun(t, flag)
		want := "dinoclip version " + buildinfo.Version + " (commit feedc0de + uncommitted changes)\n"
		if out != want {
			t.Errorf("dinoclip %s printed %q, want %q", flag, out, want)
		}
	}
}

// TestREADMEDescribesTheModel holds README.md to the one description of the
// architecture, nn.Config.Describe.
func TestREADMEDescribesTheModel(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The README wraps lines; compare with runs of white space as one space.
	readme := strings.Join(strings.Fields(string(b)), " ")
	if want := nn.DefaultConfig().Describe(); !strings.Contains(readme, want) {
		t.Errorf("README.md does not describe the model as nn.DefaultConfig().Describe() does: %q", want)
	}
}

// TestErrorLineEscapesControls: the error line shows a path holding an
// ESC, a newline or a bidirectional override as escapes (the terminal
// coloured the rest of the line, split it, or reversed it), and the
// command it suggests is one a shell reads back as that path.
func TestErrorLineEscapesControls(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "esc\x1b[31m nl\n rtl\u202e", "data")
	_, _, err := runCLI(t, "train", "--data", missing, "--out", filepath.Join(t.TempDir(), "run"))
	if err == nil {
		t.Fatal("train on missing data: no error")
	}
	line := errorLine(err)
	if !strings.Contains(err.Error(), missing) || strings.ContainsAny(line, "\x1b\n\u202e") || !strings.Contains(line, `esc\x1b[31m nl\x0a rtl\u202e`) {
		t.Errorf("error line %q for the error %q", line, err)
	}
}

// TestInputOfAnotherKind checks that a file or directory given where
// another kind is wanted (by a slip, or flags swapped) is named as what it
// is, with the flag that named it.
func TestInputOfAnotherKind(t *testing.T) {
	run, data, eval := trainRun(t)
	model := filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile)
	features := filepath.Join(eval, retrieval.ImageFeaturesFile)
	index := filepath.Join(t.TempDir(), "index")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index)
	out := t.TempDir()
	for _, c := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"eval", "--model", features, "--eval", eval}, []string{features, "a .npy array (numpy's format), not safetensors"}},
		{[]string{"eval", "--model", index, "--eval", eval}, []string{index, "it is a search index, not a model"}},
		{[]string{"eval", "--model", eval, "--eval", eval}, []string{"it is an evaluation set, not a model"}},
		{[]string{"average", "--out", filepath.Join(out, "a.safetensors"), run, data}, []string{"it is a directory of features, not a model"}},
		{[]string{"project", "--model", run, "--in", model, "--out", filepath.Join(out, "p.npy")}, []string{"--in: ", "not a .npy file: it is a safetensors file"}},
		{[]string{"index", "--model", run, "--features", model, "--out", filepath.Join(out, "ix")}, []string{"--features: ", "it is a safetensors file"}},
		{[]string{"search", "--index", model, "--queries", features, "--out", filepath.Join(out, "s")}, []string{"--index: ", "it is a safetensors file"}},
		{[]string{"search", "--index", index, "--queries", model, "--out", filepath.Join(out, "s")}, []string{"--queries: ", "it is a safetensors file"}},
		{[]string{"search", "--index", filepath.Join(index, retrieval.IndexManifestFile), "--queries", features, "--out", filepath.Join(out, "s")},
			[]string{"is a file of the search index " + index + ": give the index's directory (--index " + index + ")"}},
	} {
		wantError(t, c.args, c.wants...)
	}
}
