package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// ptxasLog is real nvcc 13.0 -Xptxas -v output: a kernel that spills, one
// with shared memory, and one non-entry function's properties, which must
// not be taken for the entry's.
const ptxasLog = `ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'spill_probe' for 'sm_90a'
ptxas info    : Function properties for spill_probe
    984 bytes stack frame, 1436 bytes spill stores, 1488 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers, 984 bytes cumulative stack size
ptxas info    : Compile time = 12.000 ms
ptxas info    : Function properties for __internal_0_$__cuda_sm3x_div_rn_noftz_f32_slowpath
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Compiling entry function 'gemm_nn' for 'sm_90a'
ptxas info    : Function properties for gemm_nn
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 63 registers, used 1 barriers, 8704 bytes smem
ptxas info    : Compile time = 316.951 ms
`

func TestParsePtxasVerbose(t *testing.T) {
	got, err := parsePtxasVerbose(ptxasLog)
	if err != nil {
		t.Fatal(err)
	}
	want := []Usage{
		{Kernel: "spill_probe", Target: "sm_90a", Registers: 32, StackBytes: 984, SpillStores: 1436, SpillLoads: 1488},
		{Kernel: "gemm_nn", Target: "sm_90a", Registers: 63, SharedBytes: 8704},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// An entry cut off before its register line is an error, not a zero.
	if _, err := parsePtxasVerbose("ptxas info    : Compiling entry function 'k' for 'sm_90'\n"); err == nil {
		t.Error("entry without a register count: no error")
	}
}

// sassListing is the shape of cuobjdump -sass output (instructions of two
// functions, one with a predicated tensor-core instruction).
const sassListing = `
	code for sm_90a
		Function : wg_kernel
	.headerflags	@"EF_CUDA_ACCELERATORS EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                   /* 0x00000a00ff017b82 */
                                                                            /* 0x000fe20000000800 */
        /*0010*/               @P0 HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], RZ, !UPT ; /* 0x0000 */
        /*0020*/              @!P1 UTMALDG.2D [UR8], [UR4] ;                /* 0x0000 */
		.........
		Function : probe
        /*0000*/                   FENCE.VIEW.ASYNC.S ;                     /* 0x00000000000073c6 */
        /*0010*/                   EXIT ;                                   /* 0x000000000000794d */
`

func TestParseSASS(t *testing.T) {
	got := parseSASS(sassListing)
	if len(got) != 2 {
		t.Fatalf("functions %v, want wg_kernel and probe", got)
	}
	for _, c := range []struct {
		kernel, op string
		want       bool
	}{
		{"wg_kernel", "HGMMA", true},
		{"wg_kernel", "HGMMA.64x128x16.F32.BF16", true},
		{"wg_kernel", "UTMALDG", true},
		{"wg_kernel", "LDC", true},
		{"wg_kernel", "HMMA", false},
		{"wg_kernel", "HGMM", false}, // a prefix of an opcode is not the opcode
		{"wg_kernel", "FENCE.VIEW.ASYNC", false},
		{"probe", "FENCE.VIEW.ASYNC", true},
		{"probe", "FENCE", true},
		{"probe", "HGMMA", false},
	} {
		if got := hasOpcode(got[c.kernel], c.op); got != c.want {
			t.Errorf("%s has %s: %v, want %v", c.kernel, c.op, got, c.want)
		}
	}
}

func TestBudgets(t *testing.T) {
	usage := []Usage{
		{Kernel: "a", Target: "sm_90a", Registers: 40, SharedBytes: 1024},
		{Kernel: "b", Target: "sm_90a", Registers: 32},
	}
	var buf bytes.Buffer
	if err := writeBudgets(&buf, usage); err != nil {
		t.Fatal(err)
	}
	table, err := readBudgets(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if p := checkBudgets(usage, table, true); len(p) != 0 {
		t.Fatalf("the written table fails its own measurement: %v", p)
	}
	for _, c := range []struct {
		what  string
		usage []Usage
		table string
		want  string
	}{
		{"more registers", usage, "a\tsm_90a\t39\t1024\nb\tsm_90a\t32\t0\n", "OVER BUDGET: a on sm_90a"},
		{"more shared memory", usage, "a\tsm_90a\t40\t1000\nb\tsm_90a\t32\t0\n", "OVER BUDGET: a on sm_90a"},
		{"fewer registers", usage, "a\tsm_90a\t41\t1024\nb\tsm_90a\t32\t0\n", "STALE: a on sm_90a"},
		{"no row", usage, "a\tsm_90a\t40\t1024\n", "MISSING: b on sm_90a"},
		{"row without kernel", usage, "a\tsm_90a\t40\t1024\nb\tsm_90a\t32\t0\nc\tsm_80\t8\t0\n", "STALE: budgets.tsv has a row for c on sm_80"},
		{"spill", []Usage{{Kernel: "a", Target: "sm_90a", Registers: 40, SharedBytes: 1024, SpillStores: 4}}, "a\tsm_90a\t40\t1024\n", "SPILL: a on sm_90a"},
		{"stack frame", []Usage{{Kernel: "a", Target: "sm_90a", Registers: 40, SharedBytes: 1024, StackBytes: 16}}, "a\tsm_90a\t40\t1024\n", "LOCAL MEMORY: a on sm_90a"},
	} {
		table, err := readBudgets(strings.NewReader(c.table))
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if p := checkBudgets(c.usage, table, true); !containsProblem(p, c.want) {
			t.Errorf("%s: problems %q, want one with %q", c.what, p, c.want)
		}
	}
	// A partial check (some modules only) cannot call other rows stale.
	table, _ = readBudgets(strings.NewReader("a\tsm_90a\t40\t1024\nb\tsm_90a\t32\t0\nc\tsm_80\t8\t0\n"))
	if p := checkBudgets(usage, table, false); len(p) != 0 {
		t.Errorf("partial check: %v", p)
	}
	for _, bad := range []string{"a\tsm_90a\t40\n", "a\tsm_90a\tforty\t0\n", "a\tsm_90a\t-1\t0\n", "a\tsm_90a\t40\t0\na\tsm_90a\t40\t0\n"} {
		if _, err := readBudgets(strings.NewReader(bad)); err == nil {
			t.Errorf("budgets %q: no error", bad)
		}
	}
}

func TestRequiredSASS(t *testing.T) {
	sass := parseSASS(sassListing)
	for _, c := range []struct {
		table string
		want  string // "" for no problem
	}{
		{"wg_kernel\tHGMMA UTMALDG\nprobe\tFENCE.VIEW.ASYNC\n", ""},
		{"wg_kernel\t-\nprobe\t-\n", ""},
		{"wg_kernel\tHGMMA UTMASTG\nprobe\t-\n", "SASS: wg_kernel on sm_90a has no UTMASTG"},
		{"wg_kernel\tHGMMA\n", "MISSING: probe has no row in sass.tsv"},
		{"wg_kernel\tHGMMA\nprobe\t-\ngone\tHMMA\n", "STALE: sass.tsv has a row for gone"},
	} {
		required, err := readRequiredSASS(strings.NewReader(c.table))
		if err != nil {
			t.Fatalf("%q: %v", c.table, err)
		}
		p := checkSASS(sass, required, true)
		if c.want == "" && len(p) != 0 || c.want != "" && !containsProblem(p, c.want) {
			t.Errorf("%q: problems %q, want %q", c.table, p, c.want)
		}
	}
	for _, bad := range []string{"wg_kernel\n", "wg_kernel\t\n", "wg_kernel\thgmma\n", "probe\t-\nprobe\t-\n"} {
		if _, err := readRequiredSASS(strings.NewReader(bad)); err == nil {
			t.Errorf("sass.tsv %q: no error", bad)
		}
	}
}

func containsProblem(problems []string, want string) bool {
	for _, p := range problems {
		if strings.Contains(p, want) {
			return true
		}
	}
	return false
}

// TestCheckSerialised: ptxas's serialisation notes (real nvcc 13.0 lines)
// are problems, except for the kernels serialised by design; the
// informational notes C7517/C7519 are not.
func TestCheckSerialised(t *testing.T) {
	log := `ptxas info    : (C7514) Potential Performance Loss: wgmma.mma_async instructions are serialized due to non wgmma instructions reading accumulator registers of  a wgmma between start and end of the pipeline stage in the function 'gemm_bf16_nt_f32'
ptxas info    : (C7519) warpgroup.arrive is injected in around line 3040 by compiler to allow use of registers in GMMA in function 'tc_check_wgmma'
ptxas info    : (C7514) Potential Performance Loss: wgmma.mma_async instructions are serialized due to non wgmma instructions reading accumulator registers of  a wgmma between start and end of the pipeline stage in the function 'tc_check_wgmma'
ptxas info    : Used 168 registers, used 1 barriers
`
	got := checkSerialised(log)
	if len(got) != 1 || !strings.Contains(got[0], "gemm_bf16_nt_f32") || !strings.Contains(got[0], "C7514") {
		t.Errorf("got %q, want one problem naming gemm_bf16_nt_f32 and C7514", got)
	}
	if got := checkSerialised(ptxasLog); len(got) != 0 {
		t.Errorf("a log without the notes: %q", got)
	}
}
