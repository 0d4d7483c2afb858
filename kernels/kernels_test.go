package kernels

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestModules checks that Modules names exactly the entry points of each
// embedded PTX, that every source has its PTX and that the PTX is for
// compute_80, so the cuda package finds every kernel it asks for.
func TestModules(t *testing.T) {
	entry := regexp.MustCompile(`(?m)^\.visible \.entry (\w+)\(`)
	seen := map[string]bool{}
	for _, m := range Modules {
		seen[m.Name] = true
		text, err := PTX(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "\n.target sm_80\n") {
			t.Errorf("%s.ptx is not compiled for compute_80", m.Name)
		}
		var got []string
		for _, e := range entry.FindAllStringSubmatch(text, -1) {
			got = append(got, e[1])
		}
		want := slices.Clone(m.Kernels)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s.ptx has entry points %v, Modules lists %v", m.Name, got, want)
		}
	}
	sources, err := filepath.Glob("*.cu")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sources {
		name := strings.TrimSuffix(s, ".cu")
		if !seen[name] {
			t.Errorf("%s is not in Modules", s)
		}
		if _, err := os.Stat(filepath.Join("ptx", name+".ptx")); err != nil {
			t.Errorf("%s has no PTX: run make kernels", s)
		}
	}
	if _, err := PTX("nonexistent"); err == nil {
		t.Error("PTX of an unknown module: no error")
	}
}
