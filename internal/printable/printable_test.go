package printable

import "testing"

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
