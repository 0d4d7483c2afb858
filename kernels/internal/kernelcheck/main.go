package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
)

// toolchain is how to build and inspect the kernels.
type toolchain struct {
	ptxCmd     []string // .cu -> PTX (nvcc 11.8 and its flags, without -o)
	cubinCmd   []string // .cu -> sm_90a cubin (nvcc 13.0 and its flags, without -o)
	ptxas      string   // ptxas of CUDA 13.0, for the PTX targets
	cuobjdump  string   // cuobjdump (13.2 or later, with nvdisasm beside it)
	ptxTargets []string // the GPUs the PTX is assembled for
}

// measurement is what one pass over the sources found.
type measurement struct {
	stale      []string                   // artifacts that are not what their source compiles to
	serialised []string                   // ptxas's notes of a serialised wgmma pipeline or ignored setmaxnreg
	usage      []Usage                    // per kernel and target
	sass       map[string]map[string]bool // sm_90a opcodes per kernel
}

func main() {
	dir := flag.String("dir", "kernels", "the kernels directory: *.cu, ptx/, sm90a/, budgets.tsv, sass.tsv")
	ptxCmd := flag.String("ptx-cmd", "", "command line compiling a .cu to PTX, without -o and the source")
	cubinCmd := flag.String("cubin-cmd", "", "command line compiling a .cu to an sm_90a cubin, without -o and the source")
	ptxas := flag.String("ptxas", "", "CUDA 13.0 ptxas, to measure the PTX")
	cuobjdump := flag.String("cuobjdump", "", "cuobjdump, to disassemble the cubins")
	targets := flag.String("ptx-targets", "sm_80,sm_90", "the GPUs the PTX is measured on")
	write := flag.Bool("write-budgets", false, "write budgets.tsv from the measurement instead of checking it")
	self := flag.Bool("selftest", false, "after the check, check that doctored tables and artifacts fail")
	flag.Parse()
	tc := toolchain{
		ptxCmd:     strings.Fields(*ptxCmd),
		cubinCmd:   strings.Fields(*cubinCmd),
		ptxas:      *ptxas,
		cuobjdump:  *cuobjdump,
		ptxTargets: strings.Split(*targets, ","),
	}
	if len(tc.ptxCmd) == 0 || len(tc.cubinCmd) == 0 || tc.ptxas == "" || tc.cuobjdump == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "kernelcheck: -ptx-cmd, -cubin-cmd, -ptxas and -cuobjdump are required, and nothing else (see make check-kernels)")
		os.Exit(2)
	}
	if err := run(tc, *dir, *write, *self); err != nil {
		fmt.Fprintln(os.Stderr, "kernelcheck:", err)
		os.Exit(1)
	}
}

func run(tc toolchain, dir string, write, self bool) error {
	modules, err := sources(dir)
	if err != nil {
		return err
	}
	var budgets, required []byte
	if !write {
		// Read before the (minutes-long) measurement, to fail fast.
		if budgets, err = os.ReadFile(filepath.Join(dir, "budgets.tsv")); err != nil {
			return err
		}
		if required, err = os.ReadFile(filepath.Join(dir, "sass.tsv")); err != nil {
			return err
		}
		if _, err := evaluate(measurement{}, budgets, required, false); err != nil {
			return err
		}
	}
	m, err := measure(tc, dir, modules, true)
	if err != nil {
		return err
	}
	if write {
		if len(m.stale) > 0 {
			return fmt.Errorf("the artifacts are not current (run make kernels first):\n  %s", strings.Join(m.stale, "\n  "))
		}
		path := filepath.Join(dir, "budgets.tsv")
		if err := atomicfile.Write(path, func(w io.Writer) error { return writeBudgets(w, m.usage) }); err != nil {
			return err
		}
		fmt.Printf("kernelcheck: wrote %s (%d rows)\n", path, len(m.usage))
		return nil
	}
	problems, err := evaluate(m, budgets, required, true)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problems:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	fmt.Printf("kernelcheck: %d sources, %d kernel measurements: artifacts current, no spills, no serialised wgmma pipeline, budgets.tsv and sass.tsv hold\n", len(modules), len(m.usage))
	if self {
		if err := selftest(tc, dir, m, budgets, required); err != nil {
			return fmt.Errorf("self-test: %w", err)
		}
		fmt.Println("kernelcheck: self-test passed (doctored tables, stale artifacts and a spilling kernel fail)")
	}
	return nil
}

// evaluate checks a measurement against the text of the two tables.
func evaluate(m measurement, budgetsTSV, sassTSV []byte, complete bool) ([]string, error) {
	budgets, err := readBudgets(bytes.NewReader(budgetsTSV))
	if err != nil {
		return nil, fmt.Errorf("budgets.tsv: %w", err)
	}
	required, err := readRequiredSASS(bytes.NewReader(sassTSV))
	if err != nil {
		return nil, fmt.Errorf("sass.tsv: %w", err)
	}
	problems := slices.Concat(m.stale, m.serialised)
	problems = append(problems, checkBudgets(m.usage, budgets, complete)...)
	return append(problems, checkSASS(m.sass, required, complete)...), nil
}

// sources lists the module names of dir/*.cu.
func sources(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.cu"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no kernel sources in %s", dir)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".cu"))
	}
	return names, nil
}

// measure builds each module into a temporary directory, compares the
// artifacts and measures the kernels. complete says modules is every
// source, so that an artifact without a source is reported too.
func measure(tc toolchain, dir string, modules []string, complete bool) (measurement, error) {
	tmp, err := os.MkdirTemp("", "kernelcheck-")
	if err != nil {
		return measurement{}, err
	}
	defer os.RemoveAll(tmp)
	results := make([]measurement, len(modules))
	errs := make([]error, len(modules))
	// nvcc is one process per compile; run as many modules at once as
	// there are cores.
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, name := range modules {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i], errs[i] = measureModule(tc, dir, tmp, name)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return measurement{}, err
	}
	all := measurement{sass: map[string]map[string]bool{}}
	for _, r := range results {
		all.stale = append(all.stale, r.stale...)
		all.serialised = append(all.serialised, r.serialised...)
		all.usage = append(all.usage, r.usage...)
		for k, ops := range r.sass {
			all.sass[k] = ops
		}
	}
	if complete {
		for _, a := range []struct{ sub, ext string }{{"ptx", ".ptx"}, {"sm90a", ".cubin"}} {
			paths, err := filepath.Glob(filepath.Join(dir, a.sub, "*"+a.ext))
			if err != nil {
				return measurement{}, err
			}
			for _, p := range paths {
				if !slices.Contains(modules, strings.TrimSuffix(filepath.Base(p), a.ext)) {
					all.stale = append(all.stale, fmt.Sprintf("STALE ARTIFACT: %s/%s has no source: delete it", a.sub, filepath.Base(p)))
				}
			}
		}
	}
	return all, nil
}

func measureModule(tc toolchain, dir, tmp, name string) (measurement, error) {
	var m measurement
	src := filepath.Join(dir, name+".cu")
	ptx := filepath.Join(tmp, name+".ptx")
	cubin := filepath.Join(tmp, name+".cubin")
	if _, err := command(append(slices.Clone(tc.ptxCmd), "-o", ptx, src)...); err != nil {
		return m, err
	}
	if _, err := command(append(slices.Clone(tc.cubinCmd), "-o", cubin, src)...); err != nil {
		return m, err
	}
	for _, a := range []struct{ fresh, committed string }{
		{ptx, filepath.Join(dir, "ptx", name+".ptx")},
		{cubin, filepath.Join(dir, "sm90a", name+".cubin")},
	} {
		same, err := sameFile(a.fresh, a.committed)
		if err != nil {
			return m, err
		}
		if !same {
			rel, _ := filepath.Rel(dir, a.committed)
			m.stale = append(m.stale, fmt.Sprintf("STALE ARTIFACT: %s is not what %s.cu compiles to: run make kernels", rel, name))
		}
	}
	// -Xptxas -v changes a few bytes of the cubin (it records ptxas's
	// options), so the measurement is a second compile, not the artifact's.
	log, err := command(append(slices.Clone(tc.cubinCmd), "-Xptxas", "-v", "-o", filepath.Join(tmp, name+".v.cubin"), src)...)
	if err != nil {
		return m, err
	}
	m.serialised = checkSerialised(log)
	logs := []string{log}
	for _, t := range tc.ptxTargets {
		log, err := command(tc.ptxas, "-arch="+t, "-v", "-o", filepath.Join(tmp, name+"."+t+".cubin"), ptx)
		if err != nil {
			return m, err
		}
		logs = append(logs, log)
	}
	for _, log := range logs {
		u, err := parsePtxasVerbose(log)
		if err != nil {
			return m, fmt.Errorf("%s: %w", name, err)
		}
		m.usage = append(m.usage, u...)
	}
	listing, err := command(tc.cuobjdump, "-sass", cubin)
	if err != nil {
		return m, err
	}
	m.sass = parseSASS(listing)
	return m, nil
}

// command runs a tool and returns its standard output and error together
// (ptxas -v writes its report to standard output, nvcc's to standard error).
func command(args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// sameFile reports whether committed exists with fresh's bytes.
func sameFile(fresh, committed string) (bool, error) {
	a, err := os.ReadFile(fresh)
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile(committed)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.Equal(a, b), nil
}
