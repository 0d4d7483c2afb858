//go:build unix

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A named pipe put in place of a regular file between OpenRegular's look
// and its open is refused, not waited on: a second process swaps a pipe
// and a file under one name as fast as it can while OpenRegular opens it
// again and again, and every call returns (the regular file, or a
// refusal).
func TestOpenRegularPipeSwappedIn(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("mine"), 0o644)
	var stop atomic.Bool
	var swaps atomic.Int64
	swapped := make(chan int64)
	go func() {
		for ; !stop.Load(); swaps.Add(1) {
			pipe, plain := filepath.Join(dir, "pipe"), filepath.Join(dir, "plain")
			if err := syscall.Mkfifo(pipe, 0o644); err != nil {
				panic(err)
			}
			os.Rename(pipe, victim)
			os.WriteFile(plain, []byte("mine"), 0o644)
			os.Rename(plain, victim)
		}
		swapped <- swaps.Load()
	}()
	done := make(chan error)
	go func() {
		for opens := 0; swaps.Load() < 3000 || opens < 3000; opens++ {
			f, err := OpenRegular(victim, os.O_RDONLY, 0)
			var nr *NotRegularError
			switch {
			case err == nil:
				st, _ := f.Stat()
				f.Close()
				if !st.Mode().IsRegular() {
					done <- errors.New("opened " + Kind(st.Mode()))
					return
				}
			case errors.As(err, &nr), errors.Is(err, fs.ErrNotExist):
			default:
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		stop.Store(true)
		n := <-swapped
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d swaps", n)
	case <-time.After(60 * time.Second):
		stop.Store(true)
		<-swapped
		// Free the open that waits on the pipe, so the test process ends.
		if w, err := os.OpenFile(victim, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatal("OpenRegular waited on a named pipe swapped in for the file")
	}
}

// ReadRegular reads a regular file, also through a link, and refuses a
// named pipe without waiting for a writer, a directory, and a file over
// its limit (one byte over is enough); a link to /dev/zero is the device
// it leads to.
func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	plain, link, pipe := filepath.Join(dir, "plain"), filepath.Join(dir, "link"), filepath.Join(dir, "pipe")
	os.WriteFile(plain, []byte("mine"), 0o644)
	os.Symlink(plain, link)
	if err := syscall.Mkfifo(pipe, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{plain, link} {
		if b, err := ReadRegular(p, 4); err != nil || string(b) != "mine" {
			t.Errorf("ReadRegular(%s, 4) = %q, %v", p, b, err)
		}
		var tl *TooLargeError
		if b, err := ReadRegular(p, 3); !errors.As(err, &tl) || tl.Limit != 3 || b != nil {
			t.Errorf("ReadRegular(%s, 3) = %q, %v; want a TooLargeError of limit 3", p, b, err)
		}
	}
	zero := filepath.Join(dir, "zero")
	os.Symlink("/dev/zero", zero)
	var nr *NotRegularError
	if _, err := ReadRegular(zero, 1<<20); !errors.As(err, &nr) {
		t.Errorf("ReadRegular of a link to /dev/zero: %v, want a NotRegularError", err)
	}
	for p, kind := range map[string]string{pipe: "a named pipe", dir: "a directory"} {
		var nr *NotRegularError
		if _, err := ReadRegular(p, 1<<20); !errors.As(err, &nr) || nr.Kind != kind {
			t.Errorf("ReadRegular(%s): %v, want a NotRegularError naming %s", p, err, kind)
		}
	}
	if _, err := ReadRegular(filepath.Join(dir, "missing"), 1<<20); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadRegular of a missing file: %v", err)
	}
}
