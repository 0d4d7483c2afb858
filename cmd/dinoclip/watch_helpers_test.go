package main

import (
	"bytes"
	"context"
	"testing"
)

// runCLIWatched runs the app in-process as runCLI does, calling watch with
// each write to stdout, before the write is kept, and the cancel of the
// run's context: a test acts at a given point of a run, as a Ctrl-C or
// another dinoclip would then.
func runCLIWatched(t *testing.T, watch func(written string, cancel context.CancelFunc), args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &watchedWriter{watch: func(p []byte) { watch(string(p), cancel) }}
	var stderr bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = stdout, &stderr
	err := app.RunContext(ctx, append([]string{"dinoclip"}, args...))
	return stdout.String(), stderr.String(), err
}

// watchedWriter is a buffer that calls watch with each write first.
type watchedWriter struct {
	bytes.Buffer
	watch func(p []byte)
}

func (w *watchedWriter) Write(p []byte) (int, error) {
	w.watch(p)
	return w.Buffer.Write(p)
}
