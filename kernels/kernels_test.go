package kernels

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestModules checks that Modules names exactly the entry points of each
// embedded PTX and sm_90a cubin, that every source has both and that the
// PTX is for compute_80, so the cuda package finds every kernel it asks
// for whichever image it loads.
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
		if fns := cubinKernels(t, m.Name); !slices.Equal(fns, want) {
			t.Errorf("sm90a/%s.cubin has kernels %v, Modules lists %v", m.Name, fns, want)
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
		if _, err := os.Stat(filepath.Join("sm90a", name+".cubin")); err != nil {
			t.Errorf("%s has no sm_90a cubin: run make kernels", s)
		}
	}
	if _, err := PTX("nonexistent"); err == nil {
		t.Error("PTX of an unknown module: no error")
	}
	if _, err := CubinSM90a("nonexistent"); err == nil {
		t.Error("cubin of an unknown module: no error")
	}
}

// cubinKernels returns the sorted kernels of module name's cubin: its
// global function symbols (device functions the compiler kept are local or
// weak).
func cubinKernels(t *testing.T, name string) []string {
	t.Helper()
	b, err := CubinSM90a(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("sm90a/%s.cubin: %v", name, err)
	}
	if f.Machine != elf.EM_CUDA {
		t.Errorf("sm90a/%s.cubin is for machine %v, not CUDA", name, f.Machine)
	}
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("sm90a/%s.cubin: %v", name, err)
	}
	var fns []string
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && elf.ST_BIND(s.Info) == elf.STB_GLOBAL {
			fns = append(fns, s.Name)
		}
	}
	slices.Sort(fns)
	return fns
}
