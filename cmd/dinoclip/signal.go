package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// signalContext is cancelled by the first SIGINT or SIGTERM, with the
// signal as its cause (see interruptedExitCode). Later signals are caught
// and ignored until the returned stop, so that a second Ctrl-C does not cut
// short the checkpoint the first one asked for.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			cancel(signalError{s.(syscall.Signal)})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(context.Canceled)
	}
}

// exitOnInterrupt ends the process as soon as ctx's signal comes (exit
// 128 + its number, after "dinoclip: interrupted"), for the commands whose
// long computations do not look at ctx (a top-k over an evaluation set, a
// benchmark's timed loops, averaging checkpoints) and that have nothing a
// stop would need to finish: they print to stdout or write their one
// output at the end, atomically, so a stop mid-way leaves at most a
// temporary file beside it. cleanup runs first (os.Exit runs no deferred
// call): the removal of a command's own scratch files.
func exitOnInterrupt(ctx context.Context, cleanup ...func()) {
	go func() {
		<-ctx.Done()
		var se signalError
		if errors.As(context.Cause(ctx), &se) {
			for _, f := range cleanup {
				f()
			}
			fmt.Fprintln(os.Stderr, "dinoclip: interrupted")
			os.Exit(128 + int(se.sig))
		}
	}()
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
