//go:build unix

package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A device-run.sh killed from outside (the lease's own limit, SIGKILL:
// no trap runs) has already brought back the logs of the stages it
// finished: logs.tar.gz is written after each.
func TestDeviceRunKilledKeepsLogs(t *testing.T) {
	// (The script's work directory, which its trap would have removed, is
	// made in dir. The hanging bench, in a process group of timeout's own,
	// outlives the kill until its limit of 5 s.)
	cmd, dir := deviceRunCommand(t, "FAKE_BENCH=hang", "BENCH_TARGET_LIMIT=5", "DEVICE_RUN_MIN_STAGE=1")
	cmd.Env = append(cmd.Env, "TMPDIR="+dir)
	out := filepath.Join(dir, "out")
	// The script and what it started, killed as a group, as the lease's
	// end kills them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	defer kill()
	summary := filepath.Join(out, "summary.txt")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// gpu-check has ended, and the bench hangs (once it has started,
		// nothing more is written into dir).
		if b, _ := os.ReadFile(summary); strings.Contains(string(b), "== bench at batch 8192") && fileExists(filepath.Join(dir, "calls")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("device-run.sh did not reach the bench in 30 s")
		}
	}
	kill() // SIGKILL: no trap of the script's runs
	list, err := exec.Command("tar", "-tzf", filepath.Join(out, "logs.tar.gz")).CombinedOutput()
	if err != nil {
		t.Fatalf("logs.tar.gz of a run killed during the bench: %v\n%s", err, list)
	}
	for _, want := range []string{"./gpu-check.out", "./check/summary.txt", "./nvidia-smi.txt"} {
		if !strings.Contains(string(list), want+"\n") {
			t.Errorf("logs.tar.gz of a run killed during the bench lacks %s:\n%s", want, list)
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
