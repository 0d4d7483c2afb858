package printable

import (
	"os/exec"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain/path with spaces", "plain/path with spaces"},
		{"tab\tstays", "tab\tstays"},
		{`C:\runs\a`, `C:\runs\a`},
		{"caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"},
		{"\uFFFD is a rune", "\uFFFD is a rune"},
		{"esc\x1b[31mdir", `esc\x1b[31mdir`},
		{"new\nline\r", `new\x0aline\x0d`},
		{"nul\x00del\x7f", `nul\x00del\x7f`},
		{"c1\u0085\u009b", `c1\x85\x9b`},
		{"latin1 \xe9 \x9b", `latin1 \xe9 \x9b`},
		{"rtl\u202egpj.exe", `rtl\u202egpj.exe`},
		{"\u2028\u2029\u200e\u200f\u061c\u2066\u2069", `\u2028\u2029\u200e\u200f\u061c\u2066\u2069`},
	} {
		if got := String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
		if Needed(c.in) != (c.in != c.want) {
			t.Errorf("Needed(%q) = %v", c.in, Needed(c.in))
		}
	}
}

// TestShellArg: a path is one shell word that the shell reads back as the
// path's bytes, with no byte a terminal acts on (an ESC, a newline, a
// bidirectional override, a C1 control, a byte that is no UTF-8: those in
// ANSI-C quotes, as escapes); bash, where there is one, reads each back.
func TestShellArg(t *testing.T) {
	cases := map[string]string{"runs/base": "runs/base", "/a/b-c_1.x": "/a/b-c_1.x", "my run": "'my run'", "it's": `'it'\''s'`, "": "''", "$HOME": "'$HOME'",
		"caf\u00e9 run": "'caf\u00e9 run'", "tab\there": "'tab\there'",
		"esc\x1b[31mdir/run":   `$'esc\x1b[31mdir/run'`,
		"nl\ndir":              `$'nl\x0adir'`,
		"it's\n\\":             `$'it\'s\x0a\\'`,
		"c1\u009b/rtl\u202e.x": `$'c1\xc2\x9b/rtl\xe2\x80\xae.x'`,
		"latin1 \xe9":          `$'latin1 \xe9'`,
		"-tdecoy/best":         "./-tdecoy/best",
		"-rf run":              "'./-rf run'",
	}
	bash, _ := exec.LookPath("bash")
	for in, want := range cases {
		got := ShellArg(in)
		if got != want {
			t.Errorf("ShellArg(%q) = %s, want %s", in, got, want)
		}
		if Needed(got) {
			t.Errorf("ShellArg(%q) = %q holds what a terminal acts on", in, got)
		}
		if bash == "" {
			continue
		}
		if strings.HasPrefix(in, "-") {
			in = "./" + in // (the same file)
		}
		if out, err := exec.Command(bash, "-c", "printf %s "+got).Output(); err != nil || string(out) != in {
			t.Errorf("bash reads ShellArg(%q) = %s back as %q (%v)", in, got, out, err)
		}
	}
}
