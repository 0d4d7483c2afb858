package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"golang.org/x/term"
)

// signalContext catches SIGINT, SIGTERM and SIGHUP (stopSignals) for the
// whole run. What a signal does depends on what the command is doing when
// it comes:
//
//   - in the action of a command that stops itself when its context is
//     cancelled (handleInterrupts: train saves a checkpoint, search writes
//     nothing), the first signal cancels the returned context, with the
//     signal as its cause (see interruptedExitCode);
//   - otherwise (a command that does not look at its context, or any
//     command still reading its --config or opening a named pipe, where
//     nothing would ever look), the process ends at once: "dinoclip:
//     interrupted", exit 128 + the signal's number;
//   - in such an action, a later signal is ignored for stopGrace after
//     the first (the clean stop is under way), and ends the process at
//     once after that, so that a stop that takes too long, or a command
//     blocked where it cannot see the first, can still be ended without
//     SIGKILL. The files a command writes are replaced atomically, so this
//     loses the work since the last checkpoint, never a file; the
//     temporary files it was writing, and a checkpoint half saved, are
//     removed (atomicfile.RemoveUnfinished).
//
// SIGQUIT (Ctrl-\) ends the process at once, as a late second signal
// does, whatever the command is doing: the key means "quit now", and
// Go's own handling of it, a dump of every goroutine and exit status 2,
// left the temporary files behind. (A dump of a hung process is SIGABRT's,
// which Go still handles.)
//
// The returned stop stops catching signals.
func signalContext() (context.Context, context.CancelFunc) {
	p := &interruptPolicy{}
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), interruptPolicyKey{}, p))
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, stopSignals()...)
	// A write to a closed stdout or stderr fails (EPIPE) instead of ending
	// the process by SIGPIPE, as the runtime does unless SIGPIPE is
	// caught: Ctrl-C and a hangup go to the whole foreground process
	// group, so the `| tee log` a run's output goes through ends with
	// them, and the word of the clean stop, or any log line after it,
	// killed the run before its checkpoint. (run ends a command whose
	// output's reader went away, dinoclip info | head, as SIGPIPE would.)
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	quit := make(chan os.Signal, 1)
	signal.Notify(quit, syscall.SIGQUIT)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				sig := s.(syscall.Signal)
				switch p.onSignal(time.Now()) {
				case signalCancels:
					fmt.Fprintf(os.Stderr, "%sdinoclip: stopping cleanly (%s, %s from now on, quits at once instead)\n", lineStart(), repeatHint(sig, runtime.GOOS), stopGrace)
					cancel(signalError{sig})
				case signalIgnored:
					fmt.Fprintf(os.Stderr, "%sdinoclip: still stopping cleanly (%s, %s after the first, quits at once)\n", lineStart(), repeatHint(sig, runtime.GOOS), stopGrace)
				default:
					p.exit(sig)
				}
			case <-quit:
				p.exit(syscall.SIGQUIT)
			case <-done:
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		signal.Stop(pipe)
		signal.Stop(quit)
		close(done)
		cancel(context.Canceled)
	}
}

// lineStart is what takes a progress bar off the error stream's line
// before a word of the signal is written there, where the stream is a
// terminal (a carriage return, and ANSI's erase to the end of the line):
// the word came at the end of the bar. "" elsewhere.
func lineStart() string {
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return "\r\x1b[K"
	}
	return ""
}

// repeatHint says how to send sig again, in the word of a clean stop on
// goos: by its key where it has one (Ctrl-C), else by its name (a
// supervisor's SIGTERM, a closed terminal's SIGHUP), which no key repeats.
// On Windows, Go delivers a console's close, a logoff and a shutdown as
// SIGTERM, a name that no user sent there: it is "the signal".
func repeatHint(sig syscall.Signal, goos string) string {
	switch {
	case sig == syscall.SIGINT:
		return "Ctrl-C again"
	case sig == syscall.SIGTERM && goos != "windows":
		return "SIGTERM again"
	case sig == syscall.SIGHUP:
		return "SIGHUP again"
	}
	return "the signal again"
}

// stopSignals are the signals that stop a command cleanly: Ctrl-C,
// SIGTERM, and a hangup (the terminal closed: its process group gets
// SIGHUP, which left a command's temporary files behind) unless the
// process was started with hangups ignored (nohup), which catching it
// would undo. Ctrl-C is caught also where the process was started with it
// ignored, as a job a script starts with & is: a script that forwards
// Ctrl-C to that job (trap 'kill -INT $pid' INT) would otherwise leave a
// run training on after the script ended, and a stop by Ctrl-C is a clean
// one, which a resume continues.
func stopSignals() []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}

// interruptPolicy is what a signal does in the run of signalContext.
type interruptPolicy struct {
	mu          sync.Mutex
	cancellable bool      // the running action stops itself on cancellation
	firstSignal time.Time // when the signal that started a clean stop came
	exiting     bool      // a signal is ending the process (exit)
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

// stopGrace is how long after the signal that started a clean stop
// another one is ignored: a wrapper that forwards Ctrl-C and then
// terminates its child, a supervisor's SIGINT then SIGTERM, or an
// impatient second Ctrl-C would otherwise cut short the checkpoint the
// first asked for. One later than that ends the process: the stop is
// taking too long, or a command hangs where it cannot see it.
const stopGrace = 3 * time.Second

// What a signal does (interruptPolicy.onSignal).
const (
	signalExits   = iota // the process ends at once
	signalCancels        // the context is cancelled: the action stops cleanly
	signalIgnored        // a clean stop is under way (stopGrace)
)

// onSignal records a signal that came at now and says what it does: in an
// action that stops itself on cancellation, the first cancels and those
// within stopGrace of it are ignored; any other ends the process.
func (p *interruptPolicy) onSignal(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.cancellable:
		return signalExits
	case p.firstSignal.IsZero():
		p.firstSignal = now
		return signalCancels
	case now.Sub(p.firstSignal) < stopGrace:
		return signalIgnored
	}
	return signalExits
}

// exit ends the process for signal sig, after
// atomicfile.RemoveUnfinished (os.Exit runs no deferred call).
func (p *interruptPolicy) exit(sig syscall.Signal) {
	// A signal from now on ends the process as if nothing caught it: a
	// removal that hangs (on a hung filesystem) cannot keep it alive.
	// SIGQUIT, whose default in Go is a goroutine dump, is ignored
	// instead: a second Ctrl-\ changes nothing, and Ctrl-C still ends it.
	signal.Reset(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP) // (those not caught are left as they are)
	signal.Ignore(syscall.SIGQUIT)
	p.beginExit()
	atomicfile.RemoveUnfinished()
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

// beginExit marks the process as ending on a signal (exitingOnSignal).
func (p *interruptPolicy) beginExit() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exiting = true
}

// exitingOnSignal reports whether a signal is ending the process at once
// (interruptPolicy.exit): what the command still does is cut short by it,
// and an error it meets meanwhile (its scratch files removed under it) is
// of the exit's making, not one to report. Until the exit's os.Exit the
// command goes on running.
func exitingOnSignal(ctx context.Context) bool {
	p := policyOf(ctx)
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exiting
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
