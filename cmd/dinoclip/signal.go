package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// signalContext catches SIGINT and SIGTERM for the whole run. What a signal
// does depends on what the command is doing when it comes:
//
//   - in the action of a command that stops itself when its context is
//     cancelled (handleInterrupts: train saves a checkpoint, search writes
//     nothing), the first signal cancels the returned context, with the
//     signal as its cause (see interruptedExitCode);
//   - otherwise (a command that does not look at its context, or any
//     command still reading its --config or opening a named pipe, where
//     nothing would ever look), the process ends at once: "dinoclip:
//     interrupted", exit 128 + the signal's number, after the cleanups
//     exitOnInterrupt registered;
//   - a second signal always ends the process at once, so that a command
//     blocked where it cannot see the first (an open of a named pipe that
//     no writer will ever open) can still be stopped without SIGKILL. The
//     files a command writes are replaced atomically, so this loses the
//     work since the last checkpoint, never a file.
//
// The returned stop stops catching signals.
func signalContext() (context.Context, context.CancelFunc) {
	p := &interruptPolicy{}
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), interruptPolicyKey{}, p))
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				sig := s.(syscall.Signal)
				if p.cancelFirst() {
					fmt.Fprintln(os.Stderr, "dinoclip: stopping cleanly (a second Ctrl-C quits at once, losing what the stop would save)")
					cancel(signalError{sig})
					continue
				}
				p.exit(sig)
			case <-done:
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(context.Canceled)
	}
}

// interruptPolicy is what a signal does in the run of signalContext.
type interruptPolicy struct {
	mu          sync.Mutex
	cancellable bool     // the running action stops itself on cancellation
	signalled   bool     // a signal came already
	cleanup     []func() // run before the process ends at once
}

type interruptPolicyKey struct{}

// policyOf is ctx's interruptPolicy, nil for a context that signalContext
// did not make (the tests that run the app in-process).
func policyOf(ctx context.Context) *interruptPolicy {
	if ctx == nil {
		return nil
	}
	p, _ := ctx.Value(interruptPolicyKey{}).(*interruptPolicy)
	return p
}

// cancelFirst records a signal and reports whether it is the first one
// and the running action stops itself on cancellation.
func (p *interruptPolicy) cancelFirst() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	first := !p.signalled
	p.signalled = true
	return first && p.cancellable
}

// exit ends the process for signal sig, after the registered cleanups
// (os.Exit runs no deferred call).
func (p *interruptPolicy) exit(sig syscall.Signal) {
	p.mu.Lock()
	cleanup := p.cleanup
	p.mu.Unlock()
	for _, f := range cleanup {
		f()
	}
	fmt.Fprintln(os.Stderr, "dinoclip: interrupted")
	os.Exit(128 + int(sig))
}

// handleInterrupts declares that the command now running stops by itself,
// cleanly, when ctx is cancelled: from now on a first signal cancels ctx
// instead of ending the process.
func handleInterrupts(ctx context.Context) {
	if p := policyOf(ctx); p != nil {
		p.mu.Lock()
		p.cancellable = true
		p.mu.Unlock()
	}
}

// exitOnInterrupt declares that a signal ends the process at once (exit
// 128 + its number, after "dinoclip: interrupted"), for the commands whose
// long computations do not look at ctx (a top-k over an evaluation set, a
// benchmark's timed loops, averaging checkpoints) and that have nothing a
// stop would need to finish: they print to stdout or write their one
// output at the end, atomically, so a stop mid-way leaves at most a
// temporary file beside it. That is what a signal does to any command
// that did not call handleInterrupts; what this adds is cleanup, run
// first: the removal of a command's own scratch files.
func exitOnInterrupt(ctx context.Context, cleanup ...func()) {
	if p := policyOf(ctx); p != nil {
		p.mu.Lock()
		p.cancellable = false
		p.cleanup = append(p.cleanup, cleanup...)
		p.mu.Unlock()
	}
}

// signalError is the cause of a context cancelled by a signal.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "interrupted by " + e.sig.String() }

// interruptedExitCode is the exit status of a command that ctx's signal
// stopped: 128 + the signal's number, the shell's convention (130 for
// SIGINT, 143 for SIGTERM); 130 when the cause is not a signal.
func interruptedExitCode(ctx context.Context) int {
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		return 128 + int(se.sig)
	}
	return 130
}
