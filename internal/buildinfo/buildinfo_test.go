package buildinfo

import (
	"strings"
	"testing"
)

func TestCommitFromLdflags(t *testing.T) {
	defer func(c string) { Commit = c }(Commit)
	for _, c := range []struct {
		commit, want string
		dirty        bool
	}{
		{"0123abcd", "0123abcd", false},
		{"0123abcd-dirty", "0123abcd", true},
	} {
		Commit = c.commit
		got, dirty, source := Revision()
		if got != c.want || dirty == nil || *dirty != c.dirty || source != "ldflags" {
			t.Errorf("Commit=%q: Revision() = %q, %v, %q; want %q, %v, ldflags", c.commit, got, dirty, source, c.want, c.dirty)
		}
	}
	Commit = "0123abcd-dirty"
	if s := String(); s != Version+" (commit 0123abcd + uncommitted changes)" {
		t.Errorf("String() = %q", s)
	}
	Commit = "0123abcd"
	if s := String(); s != Version+" (commit 0123abcd)" {
		t.Errorf("String() = %q", s)
	}
}

func TestNoCommit(t *testing.T) {
	defer func(c string) { Commit = c }(Commit)
	Commit = ""
	// A test binary carries no vcs.revision stamp.
	if c, _, source := Revision(); c != "" || source != "" {
		t.Fatalf("Revision() in a test binary = %q from %q; want nothing", c, source)
	}
	if s := String(); !strings.HasPrefix(s, Version+" (commit unknown") {
		t.Errorf("String() = %q", s)
	}
}
