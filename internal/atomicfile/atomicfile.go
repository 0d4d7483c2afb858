// Package atomicfile writes files so that a crash never leaves a half-written
// one: the data goes to a temporary file in the same directory (so the
// rename cannot cross filesystems), is fsynced, and is renamed over the
// destination. Readers see the old file or the complete new one.
//
// A writer holds a lock on its temporary file (or directory, MkdirTemp)
// while it writes, which the system drops when the writer ends, however it
// ends: RemoveStale tells the temporaries a killed writer left from those
// of a writer at work, and removes the first.
package atomicfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dinoclip/dinoclip/internal/flock"
)

// Write creates path with what write writes, atomically. The file gets mode
// 0644, what a plain create under umask 022 gives. A path that is a
// symbolic link is followed: the file it leads to is written and the link
// kept. An existing destination that is not a regular file (a device such
// as /dev/null, a directory, a socket) or that is read-only is refused,
// since the rename would replace it by a plain file.
func Write(path string, write func(io.Writer) error) (err error) {
	if path, err = Destination(path); err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	flock.TryLock(f, true) // until f is closed; where the system has no locks, RemoveStale keeps it
	tmp := f.Name()
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	closed = true
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	SyncDir(dir)
	return nil
}

// Destination is the file Write replaces for path: path, or where its
// symbolic links lead (a dangling one: the file it would lead to), checked
// to be a writable regular file if it exists.
func Destination(path string) (string, error) {
	for hops := 0; ; hops++ {
		st, err := os.Lstat(path)
		if err != nil {
			return path, nil // created (or the create reports why not)
		}
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			if hops == 40 {
				return "", fmt.Errorf("write %s: too many levels of symbolic links", path)
			}
			target, err := os.Readlink(path)
			if err != nil {
				return "", fmt.Errorf("write %s: %w", path, err)
			}
			if !filepath.IsAbs(target) {
				// Relative to the link's directory as the system finds it:
				// through the links above it, before any ".." is applied.
				dir := filepath.Dir(path)
				if real, err := filepath.EvalSymlinks(dir); err == nil {
					dir = real
				}
				target = filepath.Join(dir, target)
			}
			path = target
		case !st.Mode().IsRegular():
			return "", fmt.Errorf("write %s: it is %s, not a regular file; refusing to replace it", path, kind(st.Mode()))
		case st.Mode().Perm()&0o200 == 0:
			return "", fmt.Errorf("write %s: the file is read-only; refusing to replace it", path)
		default:
			return path, nil
		}
	}
}

// kind names the type of a file that is not a regular one.
func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// WriteBytes is Write for data already in memory.
func WriteBytes(path string, data []byte) error {
	return Write(path, func(w io.Writer) error { _, err := w.Write(data); return err })
}

// SyncDir persists the entries of dir (a rename into it, say). Some
// filesystems refuse to fsync a directory; the data is already safe then,
// so that is not an error.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// MkdirTemp makes a temporary directory in dir as os.MkdirTemp does (mode
// 0700) and holds its lock until release is called: while it is held,
// RemoveStale leaves the directory alone.
func MkdirTemp(dir, pattern string) (path string, release func(), err error) {
	path, err = os.MkdirTemp(dir, pattern)
	if err != nil {
		return "", nil, err
	}
	if release, err = flock.LockDir(path); err != nil {
		release = func() {} // (not opened: no lock; RemoveStale's age still guards it)
	}
	return path, release, nil
}

// StaleAge is how long a temporary file or directory must have gone
// unmodified before RemoveStale takes it for a dead writer's: besides the
// lock, it covers the moments a live writer holds none (between creating
// the temporary and locking it, between closing it and renaming it).
const StaleAge = time.Minute

// RemoveStale removes path, a temporary file or directory that Write or a
// MkdirTemp user writes, when its writer has ended without renaming it
// into place (killed, say): nobody holds its lock, and it has gone
// unmodified for StaleAge. It reports whether it removed it. A system
// without file locks keeps every temporary (removed is false).
func RemoveStale(path string) (removed bool, err error) {
	st, err := os.Lstat(path)
	// Only what a writer makes: a regular file or a directory (opening a
	// named pipe would wait for a writer forever; a link is nobody's).
	if err != nil || time.Since(st.ModTime()) < StaleAge || !(st.Mode().IsRegular() || st.IsDir()) {
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, nil
	}
	lockErr := flock.TryLock(f, true)
	f.Close() // (Windows removes no open file; no writer opens a temporary it did not make)
	if lockErr != nil {
		return false, nil // a live writer holds it, or this system has no locks to tell
	}
	if err := os.RemoveAll(path); err != nil {
		return false, err
	}
	return true, nil
}
