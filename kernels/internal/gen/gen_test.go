package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestParsesEveryKernel parses the repository's kernels and checks the
// result against two independent readings: the `extern "C" __global__`
// definitions a regular expression finds in each source, and the entry
// points and parameter sizes of the committed PTX (what the GPU driver
// loads), so that the launch functions pack what the GPU code reads.
func TestParsesEveryKernel(t *testing.T) {
	mods, err := parseDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	sources, _ := filepath.Glob("../../*.cu")
	if len(mods) != len(sources) || len(mods) == 0 {
		t.Fatalf("parsed %d modules from %d sources", len(mods), len(sources))
	}
	def := regexp.MustCompile(`extern "C" __global__ void(?:\s+__launch_bounds__\([^)]*\))?\s+(\w+)\(`)
	entry := regexp.MustCompile(`\.visible \.entry (\w+)\(([^)]*)\)`)
	param := regexp.MustCompile(`\.param (?:\.align \d+ )?\.(\w+) \w+?(?:\[(\d+)\])?$`)
	total := 0
	for _, m := range mods {
		src, err := os.ReadFile(filepath.Join("../..", m.Name+".cu"))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, d := range def.FindAllStringSubmatch(stripComments(string(src)), -1) {
			want = append(want, d[1])
		}
		var got []string
		for _, k := range m.Kernels {
			got = append(got, k.Name)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s.cu: parsed kernels %v, the source defines %v", m.Name, got, want)
		}
		ptx, err := os.ReadFile(filepath.Join("../../ptx", m.Name+".ptx"))
		if err != nil {
			t.Fatal(err)
		}
		entries := map[string][]int{}
		for _, e := range entry.FindAllStringSubmatch(string(ptx), -1) {
			var sizes []int
			for _, p := range strings.Split(e[2], ",") {
				p = strings.TrimSpace(p)
				pm := param.FindStringSubmatch(p)
				if pm == nil {
					t.Fatalf("%s.ptx: %s: cannot read parameter %q", m.Name, e[1], p)
				}
				sizes = append(sizes, ptxBytes(t, pm[1], pm[2]))
			}
			entries[e[1]] = sizes
		}
		if len(entries) != len(m.Kernels) {
			t.Errorf("%s.ptx has %d entry points, the source %d: run make kernels", m.Name, len(entries), len(m.Kernels))
		}
		for _, k := range m.Kernels {
			total++
			sizes, ok := entries[k.Name]
			if !ok {
				t.Errorf("%s: not in %s.ptx", k.Name, m.Name)
				continue
			}
			var parsed []int
			for _, p := range k.Params {
				parsed = append(parsed, p.Type.bytes)
			}
			if !equalInts(sizes, parsed) {
				t.Errorf("%s: the PTX's parameter sizes are %v, the generator's %v", k.Name, sizes, parsed)
			}
		}
	}
	if total < 10 {
		t.Errorf("only %d kernels parsed", total)
	}
}

func ptxBytes(t *testing.T, typ, count string) int {
	t.Helper()
	bits, err := strconv.Atoi(typ[1:])
	if err != nil {
		t.Fatalf("PTX parameter type .%s", typ)
	}
	n := 1
	if count != "" {
		n, _ = strconv.Atoi(count)
	}
	return bits / 8 * n
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestParseTypes checks the reading of each kind of parameter and that
// anything unknown is an error naming the file, line and parameter.
func TestParseTypes(t *testing.T) {
	const src = `// a comment with extern "C" __global__ void fake(bool b)
/* and extern "C" __global__ void fake2(bool b) */
extern "C" __device__ float helper(float x) { return x; }
extern "C" __global__ void __launch_bounds__(256, 2)
k1(float* __restrict__ y, const float *x, const __nv_bfloat16* a, __half* h, long long n, unsigned u,
   double d, float f, int i, const __grid_constant__ dc_tensor_map tmap, const unsigned short* s) {}
extern "C" __global__ void k2() {}
`
	ks, err := parseSource("kernels/t.cu", "t", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 2 || ks[0].Name != "k1" || ks[1].Name != "k2" || len(ks[1].Params) != 0 {
		t.Fatalf("parsed %+v", ks)
	}
	if ks[0].Line != 4 {
		t.Errorf("k1 at line %d, want 4", ks[0].Line)
	}
	want := []struct {
		name, goType string
		bytes        int
	}{
		{"y", "Ptr[float32]", 8}, {"x", "ConstPtr[float32]", 8}, {"a", "ConstPtr[BFloat16]", 8},
		{"h", "Ptr[Float16]", 8}, {"n", "int64", 8}, {"u", "uint32", 4}, {"d", "float64", 8},
		{"f", "float32", 4}, {"i", "int32", 4}, {"tmap", "driver.TensorMap", 128}, {"s", "ConstPtr[uint16]", 8},
	}
	if len(ks[0].Params) != len(want) {
		t.Fatalf("k1 has %d parameters, want %d", len(ks[0].Params), len(want))
	}
	for i, w := range want {
		p := ks[0].Params[i]
		if p.Name != w.name || p.Type.goType != w.goType || p.Type.bytes != w.bytes {
			t.Errorf("parameter %d: %s %s (%d bytes), want %s %s (%d)", i, p.Name, p.Type.goType, p.Type.bytes, w.name, w.goType, w.bytes)
		}
	}

	for _, bad := range []struct{ sig, msg string }{
		{"bool flag", `unknown parameter type "bool"`},
		{"float& y", `unknown parameter type "float&"`},
		{"float** y", `unknown parameter type "float * *"`},
		{"const int n", `unknown parameter type "const int"`},
		{"dc_tensor_map m", `unknown parameter type "dc_tensor_map"`},
		{"const __grid_constant__ CUtensorMap m", `unknown parameter type "const __grid_constant__ CUtensorMap"`},
		{"float2* v", `unknown parameter type "float2 *"`},
		{"float*", `"*" is not a name`},
		{"n", `want a type and a name`},
		{"int n, int n", "appears twice"},
	} {
		_, err := parseSource("kernels/t.cu", "t", "\n\nextern \"C\" __global__ void k("+bad.sig+") {}\n")
		if err == nil {
			t.Errorf("%q: no error", bad.sig)
			continue
		}
		if !strings.Contains(err.Error(), bad.msg) || !strings.Contains(err.Error(), "kernels/t.cu:3: kernel k") {
			t.Errorf("%q: error %q, want it to contain %q and the place", bad.sig, err, bad.msg)
		}
	}
}

// TestGenerate checks the generated code of a kernel with every kind of
// parameter: the Go launch function's parameters and packing, the table of
// parameter sizes, and the emulator's table entry, whose parameter sizes the compiler derives from
// the signature that the static_assert pins to the generator's reading.
func TestGenerate(t *testing.T) {
	ks, err := parseSource("kernels/t.cu", "t", `extern "C" __global__ void tma_copy(__nv_bfloat16* out, const __grid_constant__ dc_tensor_map src, int n, double s) {}`)
	if err != nil {
		t.Fatal(err)
	}
	files, err := generate([]Module{{Name: "t", Kernels: ks}})
	if err != nil {
		t.Fatal(err)
	}
	goSrc := files["cuda/launch/launch_gen.go"]
	for _, want := range []string{
		"KTmaCopy Kernel = iota",
		"func TmaCopy(l Launcher, cfg driver.LaunchConfig, out Ptr[BFloat16], src driver.TensorMap, n int32, s float64) error {",
		"return l.Launch(KTmaCopy, cfg, [][]byte{ptr(out), tensorMap(src), i32(n), f64(s)})",
	} {
		if !strings.Contains(goSrc, want) {
			t.Errorf("launch_gen.go lacks %q:\n%s", want, goSrc)
		}
	}
	// The parameter sizes the drivers check launches against.
	if mods := files["kernels/modules_gen.go"]; !strings.Contains(mods, `"tma_copy": {8, 128, 4, 8},`) {
		t.Errorf("modules_gen.go lacks the parameter sizes of tma_copy:\n%s", mods)
	}
	cpp := files["cuda/emu/t_gen.cpp"]
	for _, want := range []string{
		"void (*)(__nv_bfloat16*, dc_tensor_map, int, double)",
		"EMU_ENTRY(tma_copy),",
	} {
		if !strings.Contains(cpp, want) {
			t.Errorf("t_gen.cpp lacks %q:\n%s", want, cpp)
		}
	}
	if _, err := generate([]Module{{Name: "empty"}}); err == nil {
		t.Error("a module without kernels: no error")
	}
	// A parameter named like a Go keyword or a name the body uses.
	ks, err = parseSource("kernels/t.cu", "t", `extern "C" __global__ void k(float* type, int cfg) {}`)
	if err != nil {
		t.Fatal(err)
	}
	files, err = generate([]Module{{Name: "t", Kernels: ks}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(files["cuda/launch/launch_gen.go"], "type_ Ptr[float32], cfg_ int32") {
		t.Errorf("reserved names not renamed:\n%s", files["cuda/launch/launch_gen.go"])
	}
}
