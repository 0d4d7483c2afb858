package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// probeModule is the module the self-test doctors: kernels/arch_probe.cu,
// one tiny kernel with an sm_90a-only instruction, cheap to compile.
const probeModule = "arch_probe"

// spillingKernel spills on every target: 96 live accumulators under a cap
// of 32 registers (1024 threads, 2 blocks per multiprocessor).
const spillingKernel = `
extern "C" __global__ void __launch_bounds__(1024, 2) selftest_spill(float* out, const float* in, int n) {
    float acc[96];
#pragma unroll
    for (int j = 0; j < 96; ++j) acc[j] = in[j * n + threadIdx.x];
    for (int i = 0; i < n; ++i) {
#pragma unroll
        for (int j = 0; j < 96; ++j) acc[j] = acc[j] * acc[(j + 1) % 96] + in[i];
    }
#pragma unroll
    for (int j = 0; j < 96; ++j) out[j * n + threadIdx.x] = acc[j];
}
`

// selftest checks that the check fails where it must. m is the passing
// measurement of dir, budgets and required the text of its tables.
func selftest(tc toolchain, dir string, m measurement, budgets, required []byte) error {
	probeRow := regexp.MustCompile(`(?m)^` + probeModule + `\tsm_90a\t(\d+)\t(\d+)$`)
	row := probeRow.FindSubmatch(budgets)
	if row == nil {
		return fmt.Errorf("budgets.tsv has no sm_90a row for %s to doctor", probeModule)
	}
	regs, _ := strconv.Atoi(string(row[1]))
	smem, _ := strconv.Atoi(string(row[2]))
	setRow := func(r, s int) []byte {
		return probeRow.ReplaceAll(budgets, fmt.Appendf(nil, "%s\tsm_90a\t%d\t%d", probeModule, r, s))
	}
	sassRow := regexp.MustCompile(`(?m)^` + probeModule + `\t.*$`)
	tableCases := []struct {
		what          string
		budgets, sass []byte
		want          string
	}{
		{"a register budget one below the use", setRow(regs-1, smem), required, "OVER BUDGET: " + probeModule + " on sm_90a"},
		{"a shared-memory budget above the use", setRow(regs, smem+16), required, "STALE: " + probeModule + " on sm_90a"},
		{"a kernel without a row", probeRow.ReplaceAll(budgets, nil), required, "MISSING: " + probeModule + " on sm_90a"},
		{"a row without a kernel", slices.Concat(budgets, []byte("selftest_gone\tsm_90a\t8\t0\n")), required, "STALE: budgets.tsv has a row for selftest_gone"},
		{"a required opcode the SASS lacks", budgets, sassRow.ReplaceAllFunc(required, func(r []byte) []byte { return slices.Concat(r, []byte(" HGMMA")) }), "SASS: " + probeModule + " on sm_90a has no HGMMA"},
		{"a kernel without a SASS row", budgets, sassRow.ReplaceAll(required, nil), "MISSING: " + probeModule + " has no row in sass.tsv"},
	}
	for _, c := range tableCases {
		if err := expectProblem(c.what, c.want, func() ([]string, error) { return evaluate(m, c.budgets, c.sass, true) }); err != nil {
			return err
		}
	}

	// Doctored sources and artifacts: measure a copy of the probe module.
	copyCases := []struct {
		what   string
		doctor func(copyDir string) error
		want   string
	}{
		{"a stale PTX", func(d string) error { return appendFile(filepath.Join(d, "ptx", probeModule+".ptx"), "// stale\n") },
			"STALE ARTIFACT: ptx/" + probeModule + ".ptx"},
		{"a stale cubin", func(d string) error { return appendFile(filepath.Join(d, "sm90a", probeModule+".cubin"), "\x00") },
			"STALE ARTIFACT: sm90a/" + probeModule + ".cubin"},
		{"a kernel that spills", func(d string) error { return appendFile(filepath.Join(d, probeModule+".cu"), spillingKernel) },
			"SPILL: selftest_spill on sm_90a"},
	}
	for _, c := range copyCases {
		err := expectProblem(c.what, c.want, func() ([]string, error) {
			d, err := os.MkdirTemp("", "kernelcheck-selftest-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(d)
			if err := copyKernels(dir, d, probeModule); err != nil {
				return nil, err
			}
			if err := c.doctor(d); err != nil {
				return nil, err
			}
			dm, err := measure(tc, d, []string{probeModule}, false)
			if err != nil {
				return nil, err
			}
			return evaluate(dm, budgets, required, false)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// expectProblem runs a doctored check and requires a problem containing
// want.
func expectProblem(what, want string, check func() ([]string, error)) error {
	problems, err := check()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, p := range problems {
		if strings.Contains(p, want) {
			return nil
		}
	}
	return fmt.Errorf("%s: the check did not report %q; it reported %q", what, want, problems)
}

// copyKernels copies the headers, module's source and its artifacts from
// dir to dst.
func copyKernels(dir, dst, module string) error {
	headers, err := filepath.Glob(filepath.Join(dir, "*.cuh"))
	if err != nil {
		return err
	}
	files := append(headers, filepath.Join(dir, module+".cu"),
		filepath.Join(dir, "ptx", module+".ptx"), filepath.Join(dir, "sm90a", module+".cubin"))
	for _, f := range files {
		rel, err := filepath.Rel(dir, f)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}
