// Package scripts holds tests of the repository's shell scripts.
package scripts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The test runs gpu-check.sh without a GPU: bin/dinoclip-cuda is a wrapper
// around the CPU build that runs --device cuda on the CPU (and logs what the
// GPU build logs about resident data), nvidia-smi and cuda.test are stubs,
// and each case breaks one thing (FAKE_BREAK) to check that the script's
// verdict follows. What it tests is the script's logic: which parts run,
// when a part fails or is skipped, and the overall PASS/FAIL.

// fakeCUDA stands in for bin/dinoclip-cuda. REAL is the CPU build.
const fakeCUDA = `#!/usr/bin/env bash
cmd=${1:-} dev="" resident=auto prev="" args=()
for a in "$@"; do
	if [ "$prev" = --device ] && [ "$a" = cuda ]; then a=cpu; dev=cuda; fi
	[ "$prev" = --resident ] && resident=$a
	args+=("$a"); prev=$a
done
if [ "$cmd" = synth ] && [ "${FAKE_BREAK:-}" = synth ]; then echo "synth: no space left on device" >&2; exit 1; fi
if [ "$cmd" = synth ] && [ "${FAKE_BREAK:-}" = synth-empty ]; then exit 0; fi
if [ "$cmd" = train ] && [ "$dev" = cuda ]; then
	if [ "$resident" != off ] && [ "${FAKE_BREAK:-}" != resident ]; then
		echo 'level=INFO msg="training data resident on the device as float16"' >&2
	fi
	# A GPU that trains with another learning rate: its losses part from the CPU's after the first step.
	if [ "${FAKE_BREAK:-}" = parity ]; then args+=(--lr 0.002); fi
fi
exec REAL "${args[@]}"
`

const fakeSMI = `#!/usr/bin/env bash
case "$*" in *--query-gpu*) echo "Fake GPU, 000.00, 1 MiB" ;; *) echo "fake nvidia-smi" ;; esac
`

const fakeTest = `#!/usr/bin/env bash
if [ "${DINOCLIP_CUDA_KERNELS:-}" = ptx ]; then
	echo 'level=INFO msg="cuda: kernels loaded" gpu="Fake GPU" kernels="portable PTX"'
	if [ "${FAKE_BREAK:-}" = ptx ]; then echo "--- FAIL: TestGemm (0.00s)"; exit 1; fi
	echo "--- PASS: TestGemm (0.00s)"
	exit 0
fi
echo 'level=INFO msg="cuda: kernels loaded" gpu="Fake GPU" kernels="sm_90a cubins"'
if [ "${FAKE_BREAK:-}" = tests ]; then echo "--- FAIL: TestGemm (0.00s)"; exit 1; fi
echo "--- PASS: TestGemm (0.00s)"
`

// fakeDriverTest is bin/driver.test: gpu-check runs its tensor-core tests
// (-test.run 'TestTC|...') apart from the others (-test.skip), so it breaks
// only the part FAKE_BREAK names.
const fakeDriverTest = `#!/usr/bin/env bash
if [ "$1" = -test.run ]; then
	if [ "${FAKE_BREAK:-}" = tensorcore ]; then echo "--- FAIL: TestTCMma (0.00s)"; exit 1; fi
	echo "--- PASS: TestTCMma (0.00s)"
	exit 0
fi
if [ "${FAKE_BREAK:-}" = driver ]; then echo "--- FAIL: TestLaunchEx (0.00s)"; exit 1; fi
echo "--- PASS: TestLaunchEx (0.00s)"
`

// fakeBin is a directory with the fake binaries, built once.
var fakeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gpu-check-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		real := filepath.Join(dir, "dinoclip")
		build := exec.Command("go", "build", "-o", real, "../cmd/dinoclip")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building the CPU dinoclip: %v\n%s", err, out)
			return 1
		}
		for name, text := range map[string]string{
			"dinoclip-cuda": strings.ReplaceAll(fakeCUDA, "REAL", real),
			"nvidia-smi":    fakeSMI,
			"cuda.test":     fakeTest,
			"driver.test":   fakeDriverTest,
		} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		fakeBin = dir
		return m.Run()
	}()
	os.Exit(code)
}

// runCheck runs gpu-check.sh with args and FAKE_BREAK=breakWhat and returns
// its exit status and summary.
func runCheck(t *testing.T, breakWhat string, env []string, args ...string) (int, string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("gpu-check.sh is a bash script")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", append([]string{"gpu-check.sh"}, append(args, out)...)...)
	cmd.Env = append(os.Environ(),
		"BIN="+fakeBin, "DINOCLIP="+filepath.Join(fakeBin, "dinoclip-cuda"), "CUDA_TEST="+filepath.Join(fakeBin, "cuda.test"),
		"NVIDIA_SMI="+filepath.Join(fakeBin, "nvidia-smi"), "GIT_COMMIT=test",
		// A small model, so that the script's eight training runs take seconds on a CPU.
		"GPU_CHECK_TRAIN_FLAGS=--hidden-dim 16 --blocks 1",
		"FAKE_BREAK="+breakWhat)
	cmd.Env = append(cmd.Env, env...)
	log, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("gpu-check.sh: %v", err)
		}
		code = ee.ExitCode()
	}
	summary, err := os.ReadFile(filepath.Join(out, "summary.txt"))
	if err != nil {
		t.Fatalf("gpu-check.sh wrote no summary: %v\n%s", err, log)
	}
	return code, string(summary)
}

func TestGPUCheckVerdicts(t *testing.T) {
	noPython := []string{"PYTHON=" + filepath.Join(fakeBin, "no-python3")}
	cases := []struct {
		name, breakWhat string
		env, args       []string
		code            int
		wants           []string
	}{
		{"all pass", "", nil, nil, 0, []string{
			"device   PASS", "tests    PASS", "ptx      PASS the tests on the portable PTX too", "driver   PASS 1 tests", "tensorcore PASS 1 tests",
			"data     PASS", "train    PASS",
			"parity   PASS GPU resident = host batches exactly; worst CPU/GPU relative loss difference 0, within 1e-06",
			"eval     PASS", "overall: PASS (every part ran and passed)"}},
		{"no python", "", noPython, nil, 1, []string{
			"parity   SKIP the three runs finished; no ", "eval     SKIP ran on the GPU and the CPU; no ",
			"overall: FAIL (skipped: parity eval (a skipped part fails the check unless --allow-skip names it))"}},
		{"no python, its skips allowed", "", noPython, []string{"--allow-skip", "parity", "--allow-skip=eval"}, 0, []string{
			"allowed to skip: parity eval", "parity   SKIP", "eval     SKIP",
			"overall: PASS, except the parts skipped with --allow-skip: parity eval"}},
		{"no python, one skip allowed", "", noPython, []string{"--allow-skip", "parity"}, 1, []string{
			"overall: FAIL (skipped: eval (a skipped part"}},
		{"a failing synth falls back to nothing", "synth", nil, nil, 1, []string{
			"data     FAIL dinoclip synth failed", "train    SKIP no data", "parity   SKIP no data", "eval     SKIP no data",
			"overall: FAIL (failed: data; skipped: train parity eval"}},
		{"synth writes nothing", "synth-empty", nil, nil, 1, []string{"data     FAIL dinoclip synth succeeded but wrote no", "overall: FAIL"}},
		{"everything skipped is not a pass", "synth", nil, []string{"--allow-skip", "train,parity,eval"}, 1, []string{
			"overall: FAIL (failed: data)"}},
		{"data not resident", "resident", nil, nil, 1, []string{
			"train    FAIL trained, but the training data was not resident", "eval     SKIP", "overall: FAIL (failed: train; skipped: eval"}},
		{"losses apart", "parity", nil, nil, 1, []string{"parity   FAIL", "BEYOND 1e-06", "overall: FAIL (failed: parity)"}},
		{"failing GPU tests", "tests", nil, nil, 1, []string{"tests    FAIL --- FAIL: TestGemm", "overall: FAIL (failed: tests)"}},
		{"failing on the portable PTX", "ptx", nil, nil, 1, []string{"ptx      FAIL", "overall: FAIL (failed: ptx)"}},
		{"failing driver calls", "driver", nil, nil, 1, []string{"driver   FAIL --- FAIL: TestLaunchEx", "tensorcore PASS", "overall: FAIL (failed: driver)"}},
		{"failing tensor-core tests", "tensorcore", nil, nil, 1, []string{"driver   PASS", "tensorcore FAIL --- FAIL: TestTCMma", "overall: FAIL (failed: tensorcore)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, summary := runCheck(t, c.breakWhat, c.env, c.args...)
			if code != c.code {
				t.Errorf("exit status %d, want %d", code, c.code)
			}
			for _, w := range c.wants {
				if !strings.Contains(summary, w) {
					t.Errorf("summary lacks %q:\n%s", w, summary)
				}
			}
		})
	}
}

func TestGPUCheckUsage(t *testing.T) {
	for _, args := range [][]string{{"--allow-skip", "nonsense"}, {"--frobnicate"}, {"a", "b"}} {
		cmd := exec.Command("bash", append([]string{"gpu-check.sh"}, args...)...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("gpu-check.sh %s: %v, want exit status 2:\n%s", strings.Join(args, " "), err, out)
		}
	}
}
