package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// info on a named pipe answers at once that it is no file it describes,
// rather than wait forever for a writer to open the pipe.
func TestInfoNamedPipe(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"ff.npy", "ff"} {
		path := filepath.Join(dir, name)
		makeFifo(t, path)
		done := make(chan error, 1)
		go func() { _, _, err := runCLI(t, "info", path); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("info %s on a named pipe: %v, want \"not a regular file\"", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("info %s on a named pipe: no answer in 30 s", name)
		}
	}
}

// A command waiting to open a --config that is a named pipe no one writes
// ends on SIGINT (exit 130): before its action, no command has anything a
// stop would need to finish, so a signal ends the process at once, train
// (which stops by itself in its action) included.
func TestSignalWhileOpeningConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	fifo := filepath.Join(t.TempDir(), "config.yaml")
	makeFifo(t, fifo)
	for _, command := range []string{"train", "eval", "index"} {
		code, stdout, stderr := interruptChild(t, command, "--config", fifo)
		if code != 130 || !strings.Contains(stderr, "dinoclip: interrupted") || stdout != "" {
			t.Errorf("%s --config FIFO after SIGINT: exit status %d (want 130 and \"interrupted\")\nstdout:\n%s\nstderr:\n%s", command, code, stdout, stderr)
		}
	}
}

// In the action of a command that stops by itself, the first signal
// cancels its context (with the signal as the cause), a later one within
// stopGrace is ignored (the stop is under way), and one after that ends
// the process; in any other command, or before the action, the first one
// ends the process. Without signalContext's policy (the app run
// in-process), the declarations do nothing.
func TestInterruptPolicy(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	p := &interruptPolicy{}
	if p.onSignal(t0) != signalExits || p.onSignal(t0) != signalExits {
		t.Error("a signal before handleInterrupts does not end the process")
	}
	ctx := context.WithValue(context.Background(), interruptPolicyKey{}, &interruptPolicy{})
	handleInterrupts(ctx)
	p = policyOf(ctx)
	for _, c := range []struct {
		after time.Duration
		want  int
	}{{0, signalCancels}, {0, signalIgnored}, {stopGrace - time.Millisecond, signalIgnored}, {stopGrace, signalExits}} {
		if got := p.onSignal(t0.Add(c.after)); got != c.want {
			t.Errorf("after handleInterrupts, a signal %s after the first: %d, want %d", c.after, got, c.want)
		}
	}
	// Once a signal begins to end the process, the command's errors are
	// the exit's making (exitingOnSignal).
	ctx = context.WithValue(context.Background(), interruptPolicyKey{}, &interruptPolicy{})
	if exitingOnSignal(ctx) {
		t.Error("exiting on a signal before any came")
	}
	if policyOf(ctx).beginExit(); !exitingOnSignal(ctx) {
		t.Error("not exiting after beginExit")
	}
	handleInterrupts(context.Background())
	if exitingOnSignal(context.Background()) {
		t.Error("a context of no run is exiting")
	}
}

// The commands that stop by themselves on a cancelled context declare it
// when their action starts, and only then.
func TestCommandsDeclareInterruptHandling(t *testing.T) {
	byName := map[string]bool{}
	for _, c := range newApp().Commands {
		byName[c.Name] = true
	}
	for name := range stopsOnInterrupt {
		if !byName[name] {
			t.Errorf("stopsOnInterrupt names %q, no command", name)
		}
	}
	// info does not stop by itself: after it, a signal still ends the
	// process; search (an error from its own checks) declared it did.
	for _, c := range []struct {
		args        []string
		cancellable bool
	}{{[]string{"info", "/"}, false}, {[]string{"search"}, true}} {
		p := &interruptPolicy{}
		app := newApp()
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		app.RunContext(context.WithValue(context.Background(), interruptPolicyKey{}, p), append([]string{"dinoclip"}, c.args...))
		if p.cancellable != c.cancellable {
			t.Errorf("dinoclip %s: cancellable %v, want %v", strings.Join(c.args, " "), p.cancellable, c.cancellable)
		}
	}
}
