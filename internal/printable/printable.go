package printable

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Escaped reports whether String writes r as an escape: the C0 controls
// but the tab, DEL, the C1 controls, the line and paragraph separators,
// and the bidirectional marks, embeddings, overrides and isolates.
func Escaped(r rune) bool {
	switch {
	case r < 0x20:
		return r != '\t'
	case r >= 0x7f && r <= 0x9f:
		return true
	}
	switch r {
	case 0x061c, 0x200e, 0x200f, 0x2028, 0x2029, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069:
		return true
	}
	return false
}

// Needed reports whether String would change s.
func Needed(s string) bool {
	for i, r := range s {
		if Escaped(r) || r == utf8.RuneError && !isRuneError(s[i:]) {
			return true
		}
	}
	return false
}

// String is s with each rune Escaped writes as an escape written \xNN
// (below U+0100) or \uNNNN, and each byte that is no UTF-8 \xNN. A
// backslash stays as it is (a Windows path holds them).
func String(s string) string {
	if !Needed(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case Escaped(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case Escaped(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// isRuneError reports whether s begins with U+FFFD itself, written in
// UTF-8, not a byte that is no UTF-8.
func isRuneError(s string) bool { return strings.HasPrefix(s, "\uFFFD") }

// ShellArg is path as one shell word, quoted when it needs to be, for the
// commands that messages tell the user to run. A path holding what
// printable escapes (an ESC, a newline, a bidirectional override, a byte
// that is no UTF-8), which a terminal would act on and a copy of the
// command would lose, is written in ANSI-C quotes ($'...': bash, zsh,
// ksh, and POSIX sh since its 2024 edition), each such byte as \xNN,
// which the shell reads back as the path's bytes. A relative path that
// begins with "-" is written as ./-..., which a command does not take for
// an option.
func ShellArg(path string) string {
	if strings.HasPrefix(path, "-") { // (not an option of the command it is given to)
		path = "./" + path
	}
	if path != "" && strings.Trim(path, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:@%+=,-") == "" {
		return path
	}
	if !Needed(path) {
		return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
	}
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(path); {
		r, size := utf8.DecodeRuneInString(path[i:])
		switch {
		case r == utf8.RuneError && size == 1 || Escaped(r):
			for _, c := range []byte(path[i : i+size]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		case r == '\'' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteString(path[i : i+size])
		}
		i += size
	}
	b.WriteByte('\'')
	return b.String()
}
