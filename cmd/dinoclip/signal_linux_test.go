package main

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// On a terminal, the word of a clean stop clears the progress bar off its
// line first (it came at the end of the bar); in a pipe it is written as
// it is (TestTrainSignals).
func TestTrainSignalOnTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	master, tty := openPTY(t)
	data := makeData(t)
	run := filepath.Join(t.TempDir(), "run")
	cmd := cliCommand(append([]string{"train", "--data", data, "--out", run, "--epochs", "100000", "--batch", "16"}, tinyModel...))
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := startWithStopSignals(cmd); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	tty.Close()
	// (The master's reads end with EIO once the child, the terminal's
	// last holder, is gone.)
	terminal := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(master)
		terminal <- b
	}()
	waitForCheckpoint(t, run, new(syncBuffer))
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := waitExit(t, cmd)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("after SIGINT: %v, want exit status 130", err)
	}
	out := <-terminal
	if !bytes.Contains(out, []byte("\r\x1b[Kdinoclip: stopping cleanly (Ctrl-C again,")) {
		t.Errorf("on a terminal, the word of the stop does not clear the line first:\n%q", out)
	}
}
