package kernels

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestChoose(t *testing.T) {
	errUnsupported := errors.New("CUDA_ERROR_UNSUPPORTED_PTX_VERSION")
	paths := []Path{SM90a, PortablePTX}
	for _, c := range []struct {
		what       string
		cc, driver int
		fail       map[string]error // load errors by path name
		want       string           // the chosen path's name; "" for an error
		tried      []string         // the paths load was called with, in order
		notes      []string         // a substring of each note, in order
	}{
		{what: "H100, driver 13.0", cc: 90, driver: 13000,
			want: "sm_90a cubins", tried: []string{"sm_90a cubins"}},
		{what: "H200, a later driver", cc: 90, driver: 13050,
			want: "sm_90a cubins", tried: []string{"sm_90a cubins"}},
		{what: "H100, a CUDA 12.8 driver", cc: 90, driver: 12080,
			want: "portable PTX", tried: []string{"portable PTX"},
			notes: []string{"sm_90a cubins: they need a driver of CUDA 13.0 or later, this one is CUDA 12.8"}},
		{what: "A100", cc: 80, driver: 13000,
			want: "portable PTX", tried: []string{"portable PTX"},
			notes: []string{"run on compute capability 9.0 only, this GPU is 8.0"}},
		{what: "Blackwell", cc: 100, driver: 13000,
			want: "portable PTX", tried: []string{"portable PTX"},
			notes: []string{"this GPU is 10.0"}},
		{what: "H100 whose driver rejects the cubins", cc: 90, driver: 13000,
			fail: map[string]error{"sm_90a cubins": errUnsupported},
			want: "portable PTX", tried: []string{"sm_90a cubins", "portable PTX"},
			notes: []string{"sm_90a cubins: loading them failed: CUDA_ERROR_UNSUPPORTED_PTX_VERSION"}},
		{what: "a driver older than CUDA 11.8", cc: 80, driver: 11070,
			notes: []string{"compute capability 9.0 only", "need a driver of CUDA 11.8 or later, this one is CUDA 11.7"}},
		{what: "a Turing GPU", cc: 75, driver: 13000,
			notes: []string{"9.0 only", "need compute capability 8.0 or later, this GPU is 7.5"}},
		{what: "every load fails", cc: 90, driver: 13000,
			fail:  map[string]error{"sm_90a cubins": errUnsupported, "portable PTX": errors.New("out of memory")},
			tried: []string{"sm_90a cubins", "portable PTX"},
			notes: []string{"UNSUPPORTED_PTX_VERSION", "portable PTX: loading them failed: out of memory"}},
	} {
		var tried []string
		got, notes, err := Choose(c.cc, c.driver, paths, func(p Path) error {
			tried = append(tried, p.Name)
			return c.fail[p.Name]
		})
		if c.want == "" {
			if err == nil {
				t.Errorf("%s: chose %s, want an error", c.what, got.Name)
				continue
			}
			for _, n := range c.notes {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("%s: error %q does not say %q", c.what, err, n)
				}
			}
		} else if err != nil || got.Name != c.want {
			t.Errorf("%s: chose %q (%v), want %q", c.what, got.Name, err, c.want)
		}
		if !slices.Equal(tried, c.tried) {
			t.Errorf("%s: tried %v, want %v", c.what, tried, c.tried)
		}
		if len(notes) != len(c.notes) {
			t.Errorf("%s: notes %q, want %d", c.what, notes, len(c.notes))
			continue
		}
		for i, n := range c.notes {
			if !strings.Contains(notes[i], n) {
				t.Errorf("%s: note %q does not say %q", c.what, notes[i], n)
			}
		}
	}
	if _, _, err := Choose(90, 13000, nil, func(Path) error { return nil }); err == nil {
		t.Error("no paths: no error")
	}
}

// TestPaths checks that both paths are there for the embedded modules, the
// cubins first, and that each path's images are the embedded artifacts.
func TestPaths(t *testing.T) {
	paths := Paths()
	var names []string
	for _, p := range paths {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"sm_90a cubins", "portable PTX"}) {
		t.Fatalf("paths %v", names)
	}
	cubin, err := paths[0].Image("gemm")
	if err != nil || !strings.HasPrefix(string(cubin), "\x7fELF") {
		t.Errorf("sm_90a image of gemm: %.4q, %v", cubin, err)
	}
	ptx, err := paths[1].Image("gemm")
	if err != nil || !strings.Contains(string(ptx), ".target sm_80") {
		t.Errorf("PTX image of gemm: %v", err)
	}
	for key, want := range map[string]int{"": 2, "sm_90a": 1, "ptx": 1} {
		got, err := Only(paths, key)
		if err != nil || len(got) != want || key != "" && got[0].Key != key {
			t.Errorf("Only(%q): %d paths, %v", key, len(got), err)
		}
	}
	if _, err := Only(paths, "sm_80"); err == nil || !strings.Contains(err.Error(), "want one of sm_90a, ptx") {
		t.Errorf("Only of an unknown key: %v", err)
	}
	if DriverString(12080) != "12.8" || DriverString(13000) != "13.0" {
		t.Errorf("DriverString: %s %s", DriverString(12080), DriverString(13000))
	}
}
