package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Usage is what ptxas reports for one kernel on one target.
type Usage struct {
	Kernel      string
	Target      string // sm_80, sm_90 (the PTX assembled) or sm_90a (the cubin)
	Registers   int
	SharedBytes int // static shared memory ("bytes smem"); dynamic shared memory is the launch's
	StackBytes  int // stack frame: local memory for arrays indexed at run time or spills
	SpillStores int
	SpillLoads  int
}

func (u Usage) key() string { return u.Kernel + "\t" + u.Target }

var (
	ptxasEntry = regexp.MustCompile(`Compiling entry function '([^']+)' for '([^']+)'`)
	ptxasProps = regexp.MustCompile(`Function properties for (\S+)`)
	ptxasFrame = regexp.MustCompile(`(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads`)
	ptxasRegs  = regexp.MustCompile(`Used (\d+) registers`)
	ptxasSmem  = regexp.MustCompile(`(\d+) bytes smem`)
)

// parsePtxasVerbose reads the output of ptxas -v (or nvcc -Xptxas -v): one
// Usage per entry function. Function properties of non-entry functions
// (device functions ptxas did not inline) are ignored: their frames are
// part of the calling entry's "cumulative stack size", and their spills
// are reported again under the entry.
func parsePtxasVerbose(log string) ([]Usage, error) {
	var out []Usage
	cur := -1      // index in out of the entry being read
	props := false // the next frame line belongs to the current entry
	for line := range strings.Lines(log) {
		if m := ptxasEntry.FindStringSubmatch(line); m != nil {
			out = append(out, Usage{Kernel: m[1], Target: m[2], Registers: -1})
			cur, props = len(out)-1, false
			continue
		}
		if cur < 0 {
			continue
		}
		if m := ptxasProps.FindStringSubmatch(line); m != nil {
			props = m[1] == out[cur].Kernel
			continue
		}
		if m := ptxasFrame.FindStringSubmatch(line); m != nil && props {
			out[cur].StackBytes = atoi(m[1])
			out[cur].SpillStores = atoi(m[2])
			out[cur].SpillLoads = atoi(m[3])
			props = false
			continue
		}
		if m := ptxasRegs.FindStringSubmatch(line); m != nil {
			out[cur].Registers = atoi(m[1])
			if s := ptxasSmem.FindStringSubmatch(line); s != nil {
				out[cur].SharedBytes = atoi(s[1])
			}
		}
	}
	for _, u := range out {
		if u.Registers < 0 {
			return nil, fmt.Errorf("ptxas output names entry %s for %s but no register count", u.Kernel, u.Target)
		}
	}
	return out, nil
}

// ptxasSerialised matches ptxas's notes that it serialised a kernel's wgmma
// pipeline, waiting for each wgmma before issuing the next (C7510, C7514),
// or that it ignored the kernel's setmaxnreg (C7508); the last quoted name
// on the line is the function.
var (
	ptxasSerialised = regexp.MustCompile(`\((C7508|C7510|C7514)\)`)
	ptxasQuotedName = regexp.MustCompile(`.*'([^']+)'`)
)

// serialisedByDesign: kernels whose wgmma pipeline may be serialised.
// tc_check_wgmma reads each result right after a single wgmma, to check the
// instruction, not to be fast.
var serialisedByDesign = map[string]bool{"tc_check_wgmma": true}

// checkSerialised returns a problem for each note of ptxasSerialised in
// log (nvcc -Xptxas -v output for sm_90a) about a kernel not in
// serialisedByDesign.
func checkSerialised(log string) []string {
	var out []string
	for line := range strings.Lines(log) {
		code := ptxasSerialised.FindStringSubmatch(line)
		if code == nil {
			continue
		}
		name := "?"
		if m := ptxasQuotedName.FindStringSubmatch(line); m != nil {
			name = m[1]
		}
		if serialisedByDesign[name] {
			continue
		}
		out = append(out, fmt.Sprintf("WGMMA PIPELINE: %s (sm_90a): ptxas %s: %s", name, code[1], strings.TrimSpace(line)))
	}
	return out
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		// The regular expressions match digits only; an overflow is not a
		// report ptxas can write.
		panic(fmt.Sprintf("kernelcheck: %q is not a count: %v", s, err))
	}
	return n
}

var (
	sassFunction = regexp.MustCompile(`^\s*Function : (\S+)`)
	sassOpcode   = regexp.MustCompile(`^[A-Z][A-Za-z0-9_.]*[A-Za-z0-9]$`)
	sassInsn     = regexp.MustCompile(`^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[0-9T]\s+)?([A-Z][^\s;]*)`)
)

// parseSASS reads cuobjdump -sass output: the set of opcodes (with their
// modifiers, e.g. HGMMA.64x128x16.F32.BF16) of each function.
func parseSASS(listing string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	var cur map[string]bool
	for line := range strings.Lines(listing) {
		if m := sassFunction.FindStringSubmatch(line); m != nil {
			cur = map[string]bool{}
			out[m[1]] = cur
			continue
		}
		if m := sassInsn.FindStringSubmatch(line); m != nil && cur != nil {
			cur[m[1]] = true
		}
	}
	return out
}

// hasOpcode reports whether ops holds mnemonic, alone or with modifiers:
// HGMMA matches HGMMA.64x128x16.F32.BF16, FENCE.VIEW.ASYNC matches
// FENCE.VIEW.ASYNC.S, and HMMA does not match HMMA2 (not a real opcode,
// but the rule is the dot).
func hasOpcode(ops map[string]bool, mnemonic string) bool {
	for op := range ops {
		if op == mnemonic || strings.HasPrefix(op, mnemonic+".") {
			return true
		}
	}
	return false
}

// budgetsHeader opens kernels/budgets.tsv.
const budgetsHeader = `# Resource figures of every kernel, as ptxas reports them (written by
# make kernel-budgets; make check-kernels fails when a kernel needs more
# than its row says, when its row is higher than what it needs now (the
# table is stale: regenerate it so the diff shows the change), or when a
# kernel has no row). Targets: sm_80 and sm_90 are kernels/ptx/*.ptx
# assembled by the pinned CUDA 13.0 ptxas (what a driver of that generation
# JIT-compiles), sm_90a is kernels/sm90a/*.cubin. smem_bytes is static
# shared memory; spills and stack frames must be zero and have no column.
# kernel	target	registers	smem_bytes
`

// budget is one row of kernels/budgets.tsv.
type budget struct {
	Registers, SharedBytes int
}

// readBudgets parses kernels/budgets.tsv: rows of kernel, target,
// registers, shared-memory bytes; # starts a comment line.
func readBudgets(r io.Reader) (map[string]budget, error) {
	out := map[string]budget{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("line %d: %d tab-separated fields, want 4 (kernel, target, registers, smem_bytes)", n, len(f))
		}
		regs, err1 := strconv.Atoi(f[2])
		smem, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || regs < 0 || smem < 0 {
			return nil, fmt.Errorf("line %d: registers %q and smem_bytes %q must be counts", n, f[2], f[3])
		}
		k := f[0] + "\t" + f[1]
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("line %d: a second row for %s on %s", n, f[0], f[1])
		}
		out[k] = budget{regs, smem}
	}
	return out, sc.Err()
}

// writeBudgets writes the table of the measured usage, sorted.
func writeBudgets(w io.Writer, usage []Usage) error {
	rows := slices.Clone(usage)
	slices.SortFunc(rows, func(a, b Usage) int { return strings.Compare(a.key(), b.key()) })
	if _, err := io.WriteString(w, budgetsHeader); err != nil {
		return err
	}
	for _, u := range rows {
		if _, err := fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", u.Kernel, u.Target, u.Registers, u.SharedBytes); err != nil {
			return err
		}
	}
	return nil
}

// checkBudgets compares the measured usage with the table. Every kernel
// must have a row for every target measured, and every row a kernel.
// complete says usage covers every source, so that a row without a
// measured kernel is stale (a check of some modules only cannot tell).
func checkBudgets(usage []Usage, table map[string]budget, complete bool) []string {
	var problems []string
	seen := map[string]bool{}
	for _, u := range usage {
		seen[u.key()] = true
		where := u.Kernel + " on " + u.Target
		if u.SpillStores != 0 || u.SpillLoads != 0 {
			problems = append(problems, fmt.Sprintf("SPILL: %s: %d bytes spill stores, %d bytes spill loads", where, u.SpillStores, u.SpillLoads))
		}
		if u.StackBytes != 0 {
			problems = append(problems, fmt.Sprintf("LOCAL MEMORY: %s: %d bytes stack frame (an array indexed at run time, or spills)", where, u.StackBytes))
		}
		b, ok := table[u.key()]
		if !ok {
			problems = append(problems, fmt.Sprintf("MISSING: %s has no row in budgets.tsv: run make kernel-budgets", where))
			continue
		}
		if u.Registers > b.Registers || u.SharedBytes > b.SharedBytes {
			problems = append(problems, fmt.Sprintf("OVER BUDGET: %s uses %d registers and %d bytes of shared memory, budgets.tsv allows %d and %d", where, u.Registers, u.SharedBytes, b.Registers, b.SharedBytes))
		} else if u.Registers < b.Registers || u.SharedBytes < b.SharedBytes {
			problems = append(problems, fmt.Sprintf("STALE: %s uses %d registers and %d bytes of shared memory, budgets.tsv still says %d and %d: run make kernel-budgets", where, u.Registers, u.SharedBytes, b.Registers, b.SharedBytes))
		}
	}
	var extra []string
	for k := range table {
		kernel, target, _ := strings.Cut(k, "\t")
		if !seen[k] && complete {
			extra = append(extra, fmt.Sprintf("STALE: budgets.tsv has a row for %s on %s, which no source defines: run make kernel-budgets", kernel, target))
		}
	}
	slices.Sort(extra)
	return append(problems, extra...)
}

// readRequiredSASS parses kernels/sass.tsv: rows of kernel, then the
// opcodes its sm_90a SASS must contain, separated by spaces ("-" for none).
func readRequiredSASS(r io.Reader) (map[string][]string, error) {
	out := map[string][]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kernel, ops, ok := strings.Cut(line, "\t")
		if !ok || kernel == "" || strings.TrimSpace(ops) == "" {
			return nil, fmt.Errorf("line %d: want a kernel, a tab and its required opcodes (- for none)", n)
		}
		if _, dup := out[kernel]; dup {
			return nil, fmt.Errorf("line %d: a second row for %s", n, kernel)
		}
		list := strings.Fields(ops)
		if len(list) == 1 && list[0] == "-" {
			list = nil
		}
		for _, op := range list {
			if !sassOpcode.MatchString(op) {
				return nil, fmt.Errorf("line %d: %q is not a SASS opcode (an upper-case name, dots before modifiers)", n, op)
			}
		}
		out[kernel] = list
	}
	return out, sc.Err()
}

// checkSASS checks that every sm_90a kernel has a row in sass.tsv and
// contains the opcodes the row requires; when sass covers every source
// (complete), rows without a kernel are stale.
func checkSASS(sass map[string]map[string]bool, required map[string][]string, complete bool) []string {
	var problems []string
	kernels := make([]string, 0, len(sass))
	for k := range sass {
		kernels = append(kernels, k)
	}
	slices.Sort(kernels)
	for _, k := range kernels {
		want, ok := required[k]
		if !ok {
			problems = append(problems, fmt.Sprintf("MISSING: %s has no row in sass.tsv (the sm_90a opcodes it must use, - for none)", k))
			continue
		}
		for _, op := range want {
			if !hasOpcode(sass[k], op) {
				problems = append(problems, fmt.Sprintf("SASS: %s on sm_90a has no %s: the compiler took another path (see cuobjdump -sass)", k, op))
			}
		}
	}
	var extra []string
	for k := range required {
		if _, ok := sass[k]; !ok && complete {
			extra = append(extra, fmt.Sprintf("STALE: sass.tsv has a row for %s, which no sm_90a cubin defines", k))
		}
	}
	slices.Sort(extra)
	return append(problems, extra...)
}
