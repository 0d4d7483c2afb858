//go:build unix

package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A training process whose stderr goes into a pipe that ended with the
// signal (a `2>&1 | tee log` in the same process group) still stops
// cleanly: its word of the stop, or a log line after the pipe closed,
// killed it by SIGPIPE before the save.
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
	cmd := cliCommand(append([]string{"train", "--data", data, "--out", run, "--epochs", "100000", "--batch", "16"}, tinyModel...))
	cmd.Stderr = w
	if err := startWithStopSignals(cmd); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	w.Close()
	go io.Copy(io.Discard, r) // (the log, until the pipe is closed)
	waitForCheckpoint(t, run, new(syncBuffer))
	r.Close()
	cmd.Process.Signal(syscall.SIGINT)
	var ee *exec.ExitError
	if err := waitExit(t, cmd); !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("after SIGINT with stderr closed: %v, want exit status 130 (a clean stop)", err)
	}
}

// A command whose output's reader went away (dinoclip info | head) ends
// quietly with SIGPIPE's status, as it did before writes to a closed pipe
// were made to fail.
func TestOutputReaderGone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // before the child writes: a pipe's buffer would take it
	cmd := cliCommand([]string{"info", makeData(t)})
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var ee *exec.ExitError
	if err := waitExit(t, cmd); !errors.As(err, &ee) || ee.ExitCode() != 141 || stderr.String() != "" {
		t.Fatalf("info into a closed pipe: %v, stderr %q; want exit status 141 and nothing said", err, stderr.String())
	}
}

// A command whose report cannot be written (stdout a full disk) fails,
// saying so, where it ended with status 0.
func TestOutputWriteFails(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full here: %v", err)
	}
	defer full.Close()
	run, _, _ := trainRun(t)
	cmd := cliCommand([]string{"info", run})
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = full, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := waitExit(t, cmd); !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "writing the description: write /dev/stdout") {
		t.Fatalf("info with its output to /dev/full: %v, stderr %q; want exit status 1 and the write's error", err, stderr.String())
	}
	// A command whose product is a file says what it wrote on stderr: a
	// stdout that fails after the file is in place fails nothing.
	cmd = cliCommand([]string{"average", "--out", filepath.Join(t.TempDir(), "avg.safetensors"), run})
	var said syncBuffer
	cmd.Stdout, cmd.Stderr = full, &said
	if err := cmd.Run(); err != nil || !strings.Contains(said.String(), "averaged 1 model") {
		t.Fatalf("average with stdout to /dev/full: %v, stderr %q; want success", err, said.String())
	}
}

// --config /dev/stdin reads the configuration from a pipe (printf ... |
// dinoclip train --config /dev/stdin, or a heredoc, which bash feeds
// through one).
func TestConfigFromStdinPipe(t *testing.T) {
	data := makeData(t)
	run := filepath.Join(t.TempDir(), "run")
	cmd := cliCommand([]string{"train", "--data", data, "--out", run, "--config", "/dev/stdin"})
	cmd.Stdin = strings.NewReader("epochs: 2\nbatch: 16\nblocks: 1\nhidden-dim: 8\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("train --config /dev/stdin from a pipe: %v\n%s", err, out)
	}
	if o := runOptions(t, run); o.Epochs != 2 {
		t.Errorf("--config /dev/stdin: %d epochs, want 2", o.Epochs)
	}
}
