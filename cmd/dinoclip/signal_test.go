package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
)

// TestMain runs the CLI itself when a test re-executes the test binary as
// a dinoclip process (DINOCLIP_CLI_ARGS, a JSON list of arguments).
func TestMain(m *testing.M) {
	if a := os.Getenv("DINOCLIP_CLI_ARGS"); a != "" {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			panic(err)
		}
		os.Exit(run(append([]string{"dinoclip"}, args...)))
	}
	os.Exit(m.Run())
}

// A training process stopped by SIGINT exits 130 and by SIGTERM 143, after
// saving a checkpoint and printing the command that resumes it; while it
// trains, a second process on its run directory is refused by the lock.
func TestTrainSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	data := makeData(t)
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			run := filepath.Join(t.TempDir(), "run")
			args := append([]string{"train", "--data", data, "--out", run, "--epochs", "100000", "--batch", "16"}, tinyModel...)
			b, _ := json.Marshal(args)
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "DINOCLIP_CLI_ARGS="+string(b))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(filepath.Join(run, checkpoint.LastLink, checkpoint.ModelFile)); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the child wrote no checkpoint in a minute:\n%s", stderr.String())
				}
			}
			locked := "run " + run + " is locked by another process (pid " + strconv.Itoa(cmd.Process.Pid) + ")"
			wantError(t, []string{"train", "--resume", "--out", run}, locked)
			wantError(t, args, locked)

			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != c.code {
				t.Fatalf("after %v: %v, want exit status %d\n%s", c.sig, err, c.code, stderr.String())
			}
			if hint := "continue it with: dinoclip train --resume --out " + run + "\n"; !strings.Contains(stderr.String(), hint) {
				t.Errorf("after %v, stderr lacks %q:\n%s", c.sig, hint, stderr.String())
			}
		})
	}
}

// eval, whose top-k does not look for interruption, ends at once on SIGINT
// (exit 130) rather than ranking the whole set and printing its table.
func TestEvalSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	run, _, _ := trainRun(t)
	eval := makeEvalSetOf(t, "big-eval", 40000) // minutes of ranking
	b, _ := json.Marshal([]string{"eval", "--model", run, "--eval", eval})
	// A signal that comes before the child has installed its handler kills
	// it outright (no exit status): then again, waiting longer.
	for wait := 500 * time.Millisecond; ; wait *= 4 {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "DINOCLIP_CLI_ARGS="+string(b))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(wait) // loading the set, then ranking
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			cmd.Process.Kill()
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == -1 && wait < 8*time.Second {
			continue // killed by the signal itself: too early
		}
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "interrupted") || stdout.Len() > 0 {
			t.Fatalf("eval after SIGINT: %v (want exit status 130, \"interrupted\" and no table)\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		}
		return
	}
}
