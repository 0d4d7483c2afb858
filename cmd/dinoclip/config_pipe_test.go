//go:build linux || darwin

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A --config that is a named pipe is refused at once (with no writer, its
// open waited for ever); one of the process's descriptors, as the shell's
// <(command) gives, is read.
func TestConfigNamedPipe(t *testing.T) {
	data := makeData(t)
	fifo := filepath.Join(t.TempDir(), "config.yaml")
	makeFifo(t, fifo)
	done := make(chan struct{})
	go func() {
		defer close(done)
		wantError(t, []string{"train", "--data", data, "--out", filepath.Join(t.TempDir(), "run"), "--config", fifo}, fifo, "named pipe")
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("--config naming a named pipe with no writer: still waiting after 30 s")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fmt.Fprintln(w, "epochs: 2\nbatch: 16\nblocks: 1\nhidden-dim: 8")
	w.Close()
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, "train", "--data", data, "--out", run, "--config", fmt.Sprintf("/dev/fd/%d", r.Fd()))
	if o := runOptions(t, run); o.Epochs != 2 {
		t.Errorf("--config from a pipe's descriptor: %d epochs, want 2", o.Epochs)
	}
}
