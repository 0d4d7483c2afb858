package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal and returns its two ends: what is
// written to tty, a terminal to its writer, is read from master.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("no pseudo-terminals on this system (%v): the bars are drawn on none", err)
	}
	if err != nil {
		t.Fatalf("a terminal to draw on: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking the terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("naming the terminal: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening the terminal: %v", err)
	}
	return master, tty
}

// runOnTerminal runs the app in-process with its error stream on a
// terminal, and returns what the terminal showed and the app's error.
func runOnTerminal(t *testing.T, args ...string) (string, error) {
	t.Helper()
	master, tty := openPTY(t)
	shown := make(chan string)
	go func() {
		var b bytes.Buffer
		io.Copy(&b, master) // until the terminal is closed (EIO)
		shown <- b.String()
	}()
	app := newApp()
	var stdout bytes.Buffer
	app.Writer, app.ErrWriter = &stdout, tty
	err := app.Run(append([]string{"dinoclip"}, args...))
	tty.Close()
	return <-shown, err
}

// shownOnTerminal is runOnTerminal of a command that must succeed.
func shownOnTerminal(t *testing.T, args ...string) string {
	t.Helper()
	s, err := runOnTerminal(t, args...)
	if err != nil {
		t.Fatalf("dinoclip %s: %v\nterminal:\n%s", strings.Join(args, " "), err, s)
	}
	return s
}

// Long work draws a progress bar where the error stream is a terminal
// (elsewhere, a log or a pipe, it draws none: every other test).
func TestProgressBarsOnATerminal(t *testing.T) {
	dir := t.TempDir()
	shown := shownOnTerminal(t, "synth", "--out", filepath.Join(dir, "synth"), "--rows", "300", "--shard-rows", "100",
		"--input-dim", "8", "--output-dim", "4", "--eval-images", "4")
	if !strings.Contains(shown, "synthesising") || !strings.Contains(shown, "/300, ") {
		t.Errorf("synth drew no bar over its 300 rows:\n%q", shown)
	}
	// Drawn empty first, so that its clock runs from the start.
	if !strings.HasPrefix(strings.TrimLeft(shown, "\r"), "synthesising   0% ") {
		t.Errorf("synth's bar was not drawn empty first:\n%q", shown)
	}
	// ... but only once the work begins: a refused synth draws none.
	if shown, err := runOnTerminal(t, "synth", "--out", filepath.Join(dir, "synth"), "--rows", "300", "--shard-rows", "100",
		"--input-dim", "8", "--output-dim", "4", "--eval-images", "4"); err == nil || strings.Contains(shown, "synthesising") {
		t.Errorf("a synth refused for the data already there: %v, and the terminal showed:\n%q", err, shown)
	}

	run, data, _ := trainRun(t)
	shown = shownOnTerminal(t, "index", "--model", run, "--features", data, "--out", filepath.Join(dir, "photos.index"), "--batch", "7")
	if !strings.Contains(shown, "indexing") || !strings.Contains(shown, fmt.Sprintf("/%d, ", tRows)) {
		t.Errorf("index drew no bar over its %d rows:\n%q", tRows, shown)
	}
	shown = shownOnTerminal(t, "project", "--model", run, "--in", filepath.Join(data, "shard-00000.dino.npy"),
		"--out", filepath.Join(dir, "p.npy"), "--batch", "7")
	if !strings.Contains(shown, "projecting") || !strings.Contains(shown, "/40, ") {
		t.Errorf("project drew no bar:\n%q", shown)
	}
}
