//go:build unix

package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// A training process whose stderr goes into a pipe that ended with the
// signal (a `2>&1 | tee log` in the same process group) still stops
// cleanly: its word of the stop killed it by SIGPIPE, before the save.
func TestTrainSignalWithClosedStderr(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	data := makeData(t)
	run := filepath.Join(t.TempDir(), "run")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// (A larger model: its log lines, each of which would meet the closed
	// pipe before the signal, come milliseconds apart.)
	b, _ := json.Marshal([]string{"train", "--data", data, "--out", run, "--epochs", "100000", "--batch", "16", "--hidden-dim", "1024", "--blocks", "6"})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "DINOCLIP_CLI_ARGS="+string(b))
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	w.Close()
	go io.Copy(io.Discard, r) // (the log, until the pipe is closed)
	waitForCheckpoint(t, run, new(syncBuffer))
	// The pipe closes, and the signal comes, while the child is stopped:
	// the first write it can try after them is after the signal.
	cmd.Process.Signal(syscall.SIGSTOP)
	r.Close()
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Process.Signal(syscall.SIGCONT)
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("after SIGINT with stderr closed: %v, want exit status 130 (a clean stop)", err)
	}
}
