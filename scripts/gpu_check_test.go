package scripts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
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
# The CPU engine has no bf16: a GPU run in bf16 runs in fp32 here, and says so.
bf16=0 out=""
for i in "${!args[@]}"; do
	[ "${args[$i]}" = --out ] && out=${args[$((i + 1))]:-}
	if [ "$dev" = cuda ] && [ "${args[$i]}" = --precision ] && [ "${args[$((i + 1))]:-}" = bf16 ]; then
		args[$((i + 1))]=fp32 bf16=1
		echo "fake: --precision bf16 asked for, fp32 run" >&2
	fi
done
if [ "$cmd" = synth ] && [ "${FAKE_BREAK:-}" = synth ]; then echo "synth: no space left on device" >&2; exit 1; fi
if [ "$cmd" = synth ] && [ "${FAKE_BREAK:-}" = synth-empty ]; then exit 0; fi
if [ "$cmd" = train ] && [ "$dev" = cuda ]; then
	if [ "$resident" != off ] && [ "${FAKE_BREAK:-}" != resident ]; then
		echo 'level=INFO msg="training data resident on the device as float16"' >&2
	fi
	# A GPU whose first-use checks failed: it trains, on other kernels, and warns.
	if [ "${FAKE_BREAK:-}" = fallback ]; then
		echo 'level=WARN msg="cuda: the wgmma GEMMs failed their check on this GPU; the bf16 GEMMs run on the mma.sync kernels (correct, slower)"' >&2
		echo 'level=WARN msg="cuda: the GPU search failed its check on this GPU; searches run on the CPU (exact, slower)"' >&2
	fi
	# A GPU that trains with another learning rate: its losses part from the CPU's after the first step.
	if [ "${FAKE_BREAK:-}" = parity ]; then args+=(--lr 0.002); fi
fi
REAL "${args[@]}" || exit
# What the GPU build records for a bf16 run (unless FAKE_BREAK=precision: a GPU
# build that trained in fp32 though bf16 was asked for).
if [ "$bf16" = 1 ] && [ "${FAKE_BREAK:-}" != precision ]; then
	sed -i 's/"precision": *"fp32"/"precision": "bf16"/' "$out/run.json"
fi
`

const fakeSMI = `#!/usr/bin/env bash
case "$*" in *compute_cap*) echo 9.0 ;; *--query-gpu*) echo "Fake GPU, 000.00, 1 MiB" ;; *) echo "fake nvidia-smi" ;; esac
`

const fakeTest = `#!/usr/bin/env bash
if [ "${DINOCLIP_CUDA_KERNELS:-}" = ptx ] || [ "${FAKE_BREAK:-}" = old-driver ]; then
	if [ "${FAKE_BREAK:-}" = old-driver ]; then
		echo 'level=INFO msg="cuda: kernels loaded" gpu="Fake GPU" kernels="portable PTX" fallback="not using the sm_90a cubins: they need a driver of CUDA 13.0 or later, this one is CUDA 12.4"'
	fi
	echo 'level=INFO msg="cuda: kernels loaded" gpu="Fake GPU" kernels="portable PTX"'
	if [ "${FAKE_BREAK:-}" = ptx ]; then echo "--- FAIL: TestGemm (0.00s)"; exit 1; fi
	echo "--- PASS: TestGemm (0.00s)"
	exit 0
fi
echo 'level=INFO msg="cuda: kernels loaded" gpu="Fake GPU" kernels="sm_90a cubins"'
if [ "${FAKE_BREAK:-}" = hang ]; then echo $$ >"$FAKE_PID"; exec sleep 600; fi
if [ "${FAKE_BREAK:-}" = tests ]; then echo "--- FAIL: TestGemm (0.00s)"; exit 1; fi
echo "--- PASS: TestGemm (0.00s)"
`

// fakeDriverTest is bin/driver.test: the driver part runs it with
// -test.skip, the tensorcore part with -test.run TestTC, then the mma.sync
// GEMMs and the others (FAKE_BREAK=gemm breaks the others: the mma.sync
// ones pass, and the part fails).
const fakeDriverTest = `#!/usr/bin/env bash
case " $* " in
*" -test.list="*)
	# device-run.sh's load check; FAKE_BREAK=loader: a host whose C library is too old.
	if [ "${FAKE_BREAK:-}" = loader ]; then echo "$0: /lib/x86_64-linux-gnu/libc.so.6: version 'GLIBC_2.34' not found" >&2; exit 1; fi ;;
*" -test.run TestTC "*)
	if [ "${FAKE_BREAK:-}" = tensorcore ]; then echo "--- FAIL: TestTCMma (0.00s)"; exit 1; fi
	echo "--- PASS: TestTCMma (0.00s)" ;;
*" -test.run TestGemmBF16.*Mma "*)
	echo "--- PASS: TestGemmBF16Mma (0.00s)" ;;
*" -test.run TestGemmBF16 -test.skip Mma "*)
	if [ "${FAKE_BREAK:-}" = gemm ]; then echo "--- FAIL: TestGemmBF16Layouts (0.00s)"; exit 1; fi
	echo "--- PASS: TestGemmBF16Layouts (0.00s)" ;;
*)
	if [ "${FAKE_BREAK:-}" = driver ]; then echo "--- FAIL: TestLaunchEx (0.00s)"; exit 1; fi
	echo "--- PASS: TestLaunchEx (0.00s)" ;;
esac
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
		lacks           []string
	}{
		{"all pass", "", nil, nil, 0, []string{
			"device   PASS", "tests    PASS", "ptx      PASS the tests on the portable PTX too", "driver   PASS 1 tests", "tensorcore PASS 3 tests",
			"data     PASS", "train    PASS 8 steps of 1024 rows in bf16",
			"parity   PASS GPU resident = host batches exactly; worst CPU/GPU relative loss difference 0, within 1e-06",
			"eval     PASS", "overall: PASS (every part ran and passed)"}, []string{"FAILED their check", "FAILED its check", "NOTE:"}},
		{"no python", "", noPython, nil, 1, []string{
			"parity   SKIP the three runs finished; no ", "eval     SKIP ran on the GPU and the CPU; no ",
			"overall: FAIL (skipped: parity eval (a skipped part fails the check unless --allow-skip names it))"}, nil},
		{"no python, its skips allowed", "", noPython, []string{"--allow-skip", "parity", "--allow-skip=eval"}, 0, []string{
			"allowed to skip: parity eval", "parity   SKIP", "eval     SKIP",
			"overall: PASS, except the parts skipped with --allow-skip: parity eval"}, nil},
		{"no python, one skip allowed", "", noPython, []string{"--allow-skip", "parity"}, 1, []string{
			"overall: FAIL (skipped: eval (a skipped part"}, nil},
		{"a failing synth falls back to nothing", "synth", nil, nil, 1, []string{
			"data     FAIL dinoclip synth failed", "train    SKIP no data", "parity   SKIP no data", "eval     SKIP no data",
			"overall: FAIL (failed: data; skipped: train parity eval"}, nil},
		{"synth writes nothing", "synth-empty", nil, nil, 1, []string{"data     FAIL dinoclip synth succeeded but wrote no", "overall: FAIL"}, nil},
		{"everything skipped is not a pass", "synth", nil, []string{"--allow-skip", "train,parity,eval"}, 1, []string{
			"overall: FAIL (failed: data)"}, nil},
		{"data not resident", "resident", nil, nil, 1, []string{
			"train    FAIL trained, but the training data was not resident", "eval     SKIP", "overall: FAIL (failed: train; skipped: eval"}, nil},
		{"trained in fp32 though bf16 was asked for", "precision", nil, nil, 1, []string{
			"train    FAIL trained, but run.json does not record precision bf16", "overall: FAIL (failed: train; skipped: eval"}, nil},
		{"losses apart", "parity", nil, nil, 1, []string{"parity   FAIL", "BEYOND 1e-06", "overall: FAIL (failed: parity)"}, nil},
		{"the first-use checks fell back", "fallback", nil, nil, 0, []string{
			"train    PASS 8 steps of 1024 rows in bf16, data resident on the GPU, ",
			"; but the wgmma GEMMs FAILED their check: the bf16 GEMMs ran on mma.sync; but the GPU search FAILED its check: the evaluations ranked on the CPU"}, nil},
		{"failing GPU tests", "tests", nil, nil, 1, []string{"tests    FAIL --- FAIL: TestGemm", "overall: FAIL (failed: tests)"}, nil},
		{"a Hopper GPU whose driver refuses the cubins", "old-driver", nil, nil, 0, []string{
			"kernels: portable PTX (fallback: not using the sm_90a cubins: they need a driver of CUDA 13.0 or later, this one is CUDA 12.4)",
			"ptx      PASS the tests above ran on the portable PTX",
			"NOTE:    a compute capability 9.0 GPU, but the sm_90a cubins did not load (not using the sm_90a cubins: they need a driver of CUDA 13.0 or later, this one is CUDA 12.4): the wgmma, TMA and cluster kernels did not run"}, nil},
		{"failing on the portable PTX", "ptx", nil, nil, 1, []string{"ptx      FAIL", "overall: FAIL (failed: ptx)"}, nil},
		{"failing driver calls", "driver", nil, nil, 1, []string{"driver   FAIL --- FAIL: TestLaunchEx", "overall: FAIL (failed: driver)"}, nil},
		{"failing tensor-core primitives", "tensorcore", nil, nil, 1, []string{"tensorcore FAIL --- FAIL: TestTCMma", "overall: FAIL (failed: tensorcore)"}, nil},
		{"failing GEMMs", "gemm", nil, nil, 1, []string{"tensorcore FAIL --- FAIL: TestGemmBF16Layouts", "overall: FAIL (failed: tensorcore)"}, nil},
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
			for _, w := range c.lacks {
				if strings.Contains(summary, w) {
					t.Errorf("summary has %q:\n%s", w, summary)
				}
			}
		})
	}
}

// TestGPUCheckKilled: gpu-check.sh killed at a limit of its own, as
// device-run.sh kills it (timeout, which signals the script's process
// group), takes its running test binary with it; a binary left running
// would hold the GPU through the bench that follows.
func TestGPUCheckKilled(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("gpu-check.sh is a bash script")
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command("timeout", "--kill-after=5", "3", "bash", "gpu-check.sh", t.TempDir())
	cmd.Env = append(os.Environ(),
		"BIN="+fakeBin, "DINOCLIP="+filepath.Join(fakeBin, "dinoclip-cuda"), "CUDA_TEST="+filepath.Join(fakeBin, "cuda.test"),
		"NVIDIA_SMI="+filepath.Join(fakeBin, "nvidia-smi"), "GIT_COMMIT=test", "FAKE_BREAK=hang", "FAKE_PID="+pidFile)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 124 {
		t.Fatalf("timeout 3 gpu-check.sh: %v, want exit status 124 (killed at its limit)\n%s", err, out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the hanging test binary never started: %v\n%s", err, out)
	}
	pid := strings.TrimSpace(string(b))
	// The signal has been sent when timeout returns; give the process a
	// moment to die.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if exec.Command("kill", "-0", pid).Run() != nil {
			return
		}
		if time.Now().After(deadline) {
			exec.Command("kill", "-9", pid).Run()
			t.Fatalf("the test binary (pid %s) outlived gpu-check.sh by 5 s", pid)
		}
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

// device-run.sh is tested with a fake gpu-check.sh and a fake python3 that
// stands in for bench/compare.py: what is tested is the script's staging,
// its time limits, what it writes and its exit status. bench/test_compare.py
// tests compare.py itself.

// fakeGPUCheck writes a summary into its OUTDIR (the last argument), with
// its flags and its DINOCLIP_CUDA_CHECK, and exits with FAKE_CHECK_RC, or
// hangs (FAKE_CHECK=hang).
const fakeGPUCheck = `#!/usr/bin/env bash
for out; do :; done
mkdir -p "$out"
echo "fake gpu-check flags: $*" >"$out/summary.txt"
echo "fake gpu-check DINOCLIP_CUDA_CHECK: ${DINOCLIP_CUDA_CHECK-unset}" >>"$out/summary.txt"
if [ "${FAKE_CHECK:-}" = hang ]; then exec sleep 600; fi
echo "overall: fake verdict ${FAKE_CHECK_RC:-0}" >>"$out/summary.txt"
exit "${FAKE_CHECK_RC:-0}"
`

// fakePython records its arguments in FAKE_CALLS and writes results.json
// and results.md into --out, naming the batches it was given; or hangs
// (FAKE_BENCH=hang), writes nothing (FAKE_BENCH=fail), or one file alone:
// results.md (FAKE_BENCH=md: compare.py killed between its two files) or
// results.json (FAKE_BENCH=json: an older writer's order); FAKE_BENCH=fallback
// also prints what the benches print of wgmma GEMMs and a GPU search that
// failed their checks (compare.py passes dinoclip's output on, each line
// after "  ours| "; search_compare.py refuses a search that ran on the
// CPU), FAKE_BENCH=unchecked those of an engine that failed its check and
// ran anyway (DINOCLIP_CUDA_CHECK=warn), the same warning at two times, and
// search_compare.py's table line of such a search. Each call's line
// starts with its DINOCLIP_CUDA_CHECK in brackets.
const fakePython = `#!/usr/bin/env bash
echo "[${DINOCLIP_CUDA_CHECK-unset}] $*" >>"$FAKE_CALLS"
if [ "${FAKE_BENCH:-}" = hang ]; then exec sleep 600; fi
if [ "${FAKE_BENCH:-}" = fail ]; then echo "compare: no dinoclip" >&2; exit 1; fi
if [ "${FAKE_BENCH:-}" = fallback ]; then
	echo '  ours| 2026/12/06 21:30:20 WARN cuda: the wgmma GEMMs failed their check on this GPU; the bf16 GEMMs run on the mma.sync kernels (correct, slower) why="gemm_bf16_nt_f32: C[0][1]"' >&2
	echo "    raise RuntimeError(f\"dinoclip's --device {device} search ran on the CPU: the GPU search failed its check: \"" >&2
	echo "RuntimeError: dinoclip's --device cuda search ran on the CPU: the GPU search failed its check: keys resident, query 0" >&2
fi
if [ "${FAKE_BENCH:-}" = unchecked ]; then
	for t in 21:30:20 21:31:05; do
		echo "  ours| 2026/12/06 $t WARN cuda: the bf16 engine failed its check on this GPU; it runs anyway, unproven, as DINOCLIP_CUDA_CHECK=warn asks why=\"the output: relative difference 0.032\"" >&2
	done
fi
out="" batches="" prev=""
for a in "$@"; do
	[ "$prev" = --out ] && out=$a
	[ "$prev" = --batches ] && batches=$a
	prev=$a
done
mkdir -p "$out"
if [ "$1" = bench/search_compare.py ]; then
	echo "| fake search |" >"$out/search.md"
	[ "${FAKE_BENCH:-}" != unchecked ] || echo "- **UNCHECKED**: ours is the GPU search that failed its check on this GPU and ran anyway" >>"$out/search.md"
	exit 0
fi
[ "${FAKE_BENCH:-}" = json ] || echo "| fake results at batches $batches |" >"$out/results.md"
[ "${FAKE_BENCH:-}" = md ] || echo "{\"batches\": \"$batches\"}" >"$out/results.json"
`

// fakeSanitizer is compute-sanitizer: it records its folder, the kernels
// pinned and its arguments in FAKE_SAN_CALLS and reports FAKE_SAN_ERRORS
// errors (0 by default), exiting 86 when there are any, as
// --error-exitcode 86 asks.
const fakeSanitizer = `#!/usr/bin/env bash
echo "$(pwd) [${DINOCLIP_CUDA_KERNELS:-}]: $*" >>"$FAKE_SAN_CALLS"
echo "========= ERROR SUMMARY: ${FAKE_SAN_ERRORS:-0} errors"
[ "${FAKE_SAN_ERRORS:-0}" = 0 ] || exit 86
`

// runDeviceRun runs device-run.sh with env and returns its exit status, its
// summary, the fake python3's calls and the output folder.
func runDeviceRun(t *testing.T, env ...string) (code int, summary, calls, out string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("device-run.sh is a bash script")
	}
	cmd, dir := deviceRunCommand(t, env...)
	out = filepath.Join(dir, "out")
	log, err := cmd.CombinedOutput()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("device-run.sh: %v", err)
		}
		code = ee.ExitCode()
	}
	s, err := os.ReadFile(filepath.Join(out, "summary.txt"))
	if err != nil {
		t.Fatalf("device-run.sh wrote no summary: %v\n%s", err, log)
	}
	c, _ := os.ReadFile(filepath.Join(dir, "calls")) // absent when no bench ran
	return code, string(s), string(c), out
}

// deviceRunCommand is device-run.sh with the fake binaries, gpu-check.sh
// and python3, env added to its environment, writing into dir/out; the
// fake python3 records its calls in dir/calls.
func deviceRunCommand(t *testing.T, env ...string) (cmd *exec.Cmd, dir string) {
	t.Helper()
	dir = t.TempDir()
	for name, text := range map[string]string{"gpu-check.sh": fakeGPUCheck, "python3": fakePython, "compute-sanitizer": fakeSanitizer} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd = exec.Command("bash", "device-run.sh", filepath.Join(dir, "out"))
	cmd.Env = append(os.Environ(), "BIN="+fakeBin, "NVIDIA_SMI="+filepath.Join(fakeBin, "nvidia-smi"),
		"GPU_CHECK="+filepath.Join(dir, "gpu-check.sh"), "PYTHON="+filepath.Join(dir, "python3"), "FAKE_CALLS="+filepath.Join(dir, "calls"),
		"COMPUTE_SANITIZER="+filepath.Join(dir, "compute-sanitizer"), "FAKE_SAN_CALLS="+filepath.Join(dir, "sanitizer-calls"))
	cmd.Env = append(cmd.Env, env...)
	return cmd, dir
}

func TestDeviceRun(t *testing.T) {
	cases := []struct {
		name         string
		env          []string
		code         int
		wants, lacks []string
		files        []string
		maxSeconds   float64
	}{
		{"all stages", []string{"GPU_CHECK_FLAGS=--allow-skip parity"}, 0, []string{
			"fake gpu-check flags: --allow-skip parity", "fake gpu-check DINOCLIP_CUDA_CHECK: unset", "overall: fake verdict 0", "gpu-check: exit status 0",
			"Fake GPU, 000.00, 1 MiB", // the GPU's state, as nvidia-smi --query-gpu found it
			"| fake results at batches 8192 |", "| fake results at batches 1024,2048,4096,16384 |", "bench autotune: exit status 0",
			"search 25000 x 5000: exit status 0", "gpu-check exit status 0; target bench wrote its results"}, []string{"WGMMA FALLBACK", "SEARCH FALLBACK", "UNCHECKED", "compute-sanitizer"},
			[]string{"results-8192.json", "results-8192.md", "results-autotune.json", "results-autotune.md", "results-sweep.json",
				"results-sweep.md", "logs.tar.gz"}, 0},
		{"gpu-check fails", []string{"FAKE_CHECK_RC=1"}, 1, []string{
			"overall: fake verdict 1", "gpu-check: exit status 1", "| fake results at batches 8192 |",
			"gpu-check exit status 1; target bench wrote its results"}, nil, []string{"results-8192.json"}, 0},
		{"a hanging gpu-check is killed and the bench still runs", []string{"FAKE_CHECK=hang", "GPU_CHECK_LIMIT=2"}, 1, []string{
			"gpu-check: KILLED at its limit of 2 s", "fake gpu-check flags", "| fake results at batches 8192 |"}, nil,
			[]string{"results-8192.json", "results-sweep.json"}, 30},
		{"a hanging bench is killed", []string{"FAKE_BENCH=hang", "BENCH_TARGET_LIMIT=2", "DEVICE_RUN_LIMIT=8", "DEVICE_RUN_MIN_STAGE=1"}, 1, []string{
			"bench 8192: KILLED at its limit of 2 s", "bench 8192: no results", "target bench FAILED"}, nil, []string{"logs.tar.gz"}, 30},
		{"the wgmma GEMMs' fallback is named", []string{"FAKE_BENCH=fallback"}, 0, []string{
			"WGMMA FALLBACK: the bf16 engine ran its GEMMs on the mma.sync kernels in the bench:   ours| 2026/12/06 21:30:20 WARN cuda: the wgmma GEMMs failed their check",
			"SEARCH FALLBACK: the GPU search ran on the CPU: RuntimeError: dinoclip's --device cuda search ran on the CPU: the GPU search failed its check",
			"gpu-check exit status 0; target bench wrote its results"}, []string{"UNCHECKED"}, nil, 0},
		{"what failed its check and ran anyway is named", []string{"FAKE_BENCH=unchecked"}, 0, []string{
			"UNCHECKED in the benches (their rows time code that failed its check): WARN cuda: the bf16 engine failed its check on this GPU; it runs anyway",
			"- **UNCHECKED**: ours is the GPU search that failed its check on this GPU and ran anyway",
			"gpu-check exit status 0; target bench wrote its results"}, []string{"SEARCH FALLBACK", "WGMMA FALLBACK"}, nil, 0},
		{"the caller's DINOCLIP_CUDA_CHECK is the benches'", []string{"DINOCLIP_CUDA_CHECK=on"}, 0, []string{
			"fake gpu-check DINOCLIP_CUDA_CHECK: unset"}, nil, nil, 0},
		{"the caller's empty DINOCLIP_CUDA_CHECK is the benches'", []string{"DINOCLIP_CUDA_CHECK="}, 0, []string{
			"fake gpu-check DINOCLIP_CUDA_CHECK: unset"}, nil, nil, 0},
		{"compute-sanitizer, asked for", []string{"DEVICE_RUN_SANITIZER=1"}, 0, []string{
			"limits: 560 s in all; gpu-check 110 s, compute-sanitizer 120 s, target bench",
			"== compute-sanitizer (DEVICE_RUN_SANITIZER=1)", "compute-sanitizer memcheck: exit status 0", "compute-sanitizer racecheck: exit status 0",
			"compute-sanitizer memcheck: ========= ERROR SUMMARY: 0 errors", "compute-sanitizer racecheck: ========= ERROR SUMMARY: 0 errors",
			"| fake results at batches 8192 |", "| fake results at batches 1024,2048,4096,16384 |"}, nil, nil, 0},
		{"compute-sanitizer finds errors", []string{"DEVICE_RUN_SANITIZER=1", "FAKE_SAN_ERRORS=2"}, 0, []string{
			"compute-sanitizer memcheck: exit status 86", "compute-sanitizer memcheck: ========= ERROR SUMMARY: 2 errors", "| fake results at batches 8192 |"}, nil, nil, 0},
		{"compute-sanitizer missing", []string{"DEVICE_RUN_SANITIZER=1", "COMPUTE_SANITIZER=/nonexistent/compute-sanitizer"}, 0, []string{
			"compute-sanitizer: /nonexistent/compute-sanitizer not found here (nor /usr/local/cuda/bin/compute-sanitizer): not run"}, nil, nil, 0},
		{"a failing bench", []string{"FAKE_BENCH=fail"}, 1, []string{
			"bench 8192: exit status 1", "bench 8192: no results", "target bench FAILED"}, nil, nil, 0},
		{"a bench that left results.md alone", []string{"FAKE_BENCH=md"}, 1, []string{
			"bench 8192: no results", "target bench FAILED"}, nil, nil, 0},
		{"a bench that left results.json alone", []string{"FAKE_BENCH=json"}, 1, []string{
			"bench 8192: no results", "target bench FAILED"}, nil, nil, 0},
		{"binaries the loader refuses", []string{"FAKE_BREAK=loader"}, 0, []string{
			"driver.test does not run here (every stage that uses it fails): " + fakeBin + "/driver.test: /lib/x86_64-linux-gnu/libc.so.6: version 'GLIBC_2.34' not found"},
			[]string{"dinoclip-cuda does not run", "cuda.test does not run"}, nil, 0},
		{"no time left for the bench", []string{"DEVICE_RUN_LIMIT=30"}, 1, []string{
			"bench 8192: SKIPPED", "bench autotune: SKIPPED", "bench sweep: SKIPPED", "target bench FAILED"}, []string{"fake results"}, nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			code, summary, calls, out := runDeviceRun(t, c.env...)
			if code != c.code {
				t.Errorf("exit status %d, want %d\n%s", code, c.code, summary)
			}
			for _, w := range c.wants {
				if !strings.Contains(summary, w) {
					t.Errorf("summary lacks %q:\n%s", w, summary)
				}
			}
			for _, w := range c.lacks {
				if strings.Contains(summary, w) {
					t.Errorf("summary has %q:\n%s", w, summary)
				}
			}
			for _, f := range c.files {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Errorf("%s: %v", f, err)
				}
			}
			if c.maxSeconds > 0 && time.Since(start).Seconds() > c.maxSeconds {
				t.Errorf("took %v: a stage's limit did not hold", time.Since(start))
			}
			if c.name == "compute-sanitizer, asked for" {
				// Both tools, on the carried cuda.test, run from its folder.
				b, err := os.ReadFile(filepath.Join(filepath.Dir(out), "sanitizer-calls"))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if err != nil || len(lines) != 2 ||
					!strings.HasPrefix(lines[0], fakeBin+" []: --tool memcheck --error-exitcode 86 --print-limit 20 ./cuda.test -test.run ^(TestGemmBF16Launcher|") ||
					!strings.HasPrefix(lines[1], fakeBin+" [ptx]: --tool racecheck --error-exitcode 86 --print-limit 20 ./cuda.test -test.run ^(TestGradRows|") {
					t.Errorf("compute-sanitizer calls (%v):\n%s", err, b)
				}
			}
			if c.name == "the caller's DINOCLIP_CUDA_CHECK is the benches'" && strings.Count(calls, "[on] ") != 4 {
				t.Errorf("the benches' calls do not all have DINOCLIP_CUDA_CHECK=on:\n%s", calls)
			}
			if c.name == "the caller's empty DINOCLIP_CUDA_CHECK is the benches'" && strings.Count(calls, "[] ") != 4 {
				t.Errorf("the benches' calls do not all have DINOCLIP_CUDA_CHECK set empty:\n%s", calls)
			}
			if c.name == "what failed its check and ran anyway is named" && strings.Count(summary, "UNCHECKED in the benches") != 1 {
				t.Errorf("the same warning at two times is said more than once:\n%s", summary)
			}
			if c.name == "all stages" {
				// The target bench: every part at 8192, with the CUDA build carried in BIN;
				// the search at 25k x 5k after a probe for torch with CUDA; max-autotune
				// at 8192 in a call of its own; the sweep: training steps only. Each
				// but the probe with DINOCLIP_CUDA_CHECK=warn.
				lines := strings.Split(strings.TrimSpace(calls), "\n")
				if len(lines) != 5 {
					t.Fatalf("%d python calls, want 5:\n%s", len(lines), calls)
				}
				for i, l := range lines {
					if want := map[bool]string{true: "[unset] ", false: "[warn] "}[i == 1]; !strings.HasPrefix(l, want) {
						t.Errorf("python call %d does not start with %q: %s", i+1, want, l)
					}
				}
				search := []string{"-c import torch", "bench/search_compare.py --device cuda --ours-bin " + fakeBin + "/dinoclip-cuda --queries 25000 --keys 5000 "}
				for i, w := range search {
					if !strings.Contains(lines[1+i]+" ", w) {
						t.Errorf("python call %d lacks %q: %s", 2+i, w, lines[1+i])
					}
				}
				lines = append(lines[:1], lines[3:]...)
				steps := []string{"--ours-args=--kernels=false --topk=false --data=false", "--torch-args=--no-gemm --no-copy --no-topk"}
				for i, want := range [][]string{
					{"bench/compare.py --device cuda --ours-bin " + fakeBin + "/dinoclip-cuda", "--batches 8192 ", "--modes fp32,tf32,bf16,compile_bf16"},
					append([]string{"--batches 8192 ", "--modes compile_max_autotune", "--precisions bf16"}, steps...),
					append([]string{"--batches 1024,2048,4096,16384", "--modes fp32,tf32,bf16,compile_bf16"}, steps...),
				} {
					for _, w := range want {
						if !strings.Contains(lines[i]+" ", w) {
							t.Errorf("bench call %d lacks %q: %s", i+1, w, lines[i])
						}
					}
				}
				if strings.Contains(lines[0], "--ours-args") {
					t.Errorf("the target bench must time every part: %s", lines[0])
				}
			}
		})
	}
}

func TestDeviceRunUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  string
	}{{[]string{"--help"}, ""}, {[]string{"a", "b"}, ""}, {nil, "DEVICE_RUN_LIMIT=8m"}, {nil, "GPU_CHECK_LIMIT=-1"}, {nil, "DINOCLIP_CUDA_CHECK=off"}} {
		cmd := exec.Command("bash", append([]string{"device-run.sh"}, c.args...)...)
		cmd.Env = append(os.Environ(), c.env, "OUT="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("device-run.sh %v %s: %v, want exit status 2:\n%s", c.args, c.env, err, out)
		}
	}
}

// TestDeviceRunSanitizerTestsExist: every test device-run.sh hands
// compute-sanitizer is a test of package cuda that runs under -test.short
// (a renamed one would match nothing, and one that skips would check
// nothing, while the sanitizer said 0 errors).
func TestDeviceRunSanitizerTestsExist(t *testing.T) {
	script, err := os.ReadFile("device-run.sh")
	if err != nil {
		t.Fatal(err)
	}
	runs := regexp.MustCompile(`(?m)^\s*sanitize (\w+) [^']* '\^\(([^)]*)\)\$'`).FindAllSubmatch(script, -1)
	if len(runs) != 2 {
		t.Fatalf("%d sanitize runs in device-run.sh, want 2 (memcheck and racecheck)", len(runs))
	}
	files, _ := filepath.Glob("../cuda/*_test.go")
	var tests []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, b...)
	}
	for _, r := range runs {
		for name := range strings.SplitSeq(string(r[2]), "|") {
			head := "\nfunc " + name + "(t *testing.T) {"
			i := strings.Index(string(tests), head)
			if i < 0 {
				t.Errorf("%s: %s is no test of package cuda", r[1], name)
				continue
			}
			// The test's body, up to the next function: it runs under
			// -test.short, as the sanitizer runs it.
			body := string(tests)[i+len(head):]
			if j := strings.Index(body, "\nfunc "); j >= 0 {
				body = body[:j]
			}
			if strings.Contains(body, "testing.Short()") {
				t.Errorf("%s: %s looks at testing.Short(), and the sanitizer runs -test.short", r[1], name)
			}
		}
	}
}
