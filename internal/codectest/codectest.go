package codectest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// AddFiles adds the contents of every file in testdata matching pattern
// (e.g. "*.npy") to f's seed corpus.
func AddFiles(f *testing.F, pattern string) {
	f.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", pattern))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// CheckRejected checks the error of reading a bad file: there must be one,
// errors.Is must match it to kind, and its message must start with prefix
// (the package and file name) and mention msg. It logs the error, so that
// go test -v shows every message.
func CheckRejected(t *testing.T, err, kind error, prefix, msg string) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted")
	}
	t.Log(err) // go test -v shows every message
	if !errors.Is(err, kind) {
		t.Errorf("error %q is not %v", err, kind)
	}
	if !strings.Contains(err.Error(), msg) || !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("error %q should start with the file name and mention %q", err, msg)
	}
}

// CloseWhileReading races close with n readers: goroutine g calls the
// function newReader(g) returns until it fails, then stops. Readers must
// either keep succeeding or fail with an error matching closed once the
// file is closed; any other error, or an error from close, fails t.
func CloseWhileReading(t *testing.T, n int, closed error, newReader func(g int) func() error, close func() error) {
	t.Helper()
	done := make(chan error, n)
	for g := range n {
		read := newReader(g)
		go func() {
			for {
				err := read()
				if errors.Is(err, closed) {
					done <- nil
					return
				}
				if err != nil {
					done <- err
					return
				}
			}
		}()
	}
	if err := close(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// WriteFile makes the file at path hold b, as a fuzz target writes each
// input: rewritten in place and then cut to length. os.WriteFile's O_TRUNC
// makes ext4 (auto_da_alloc) write the file back at its close, 0.2 ms an
// input, twenty times the read.
func WriteFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err == nil {
		_, err = f.WriteAt(b, 0)
		if err == nil {
			err = f.Truncate(int64(len(b)))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// CheckReadError fails t unless err, of reading what (a file, an index), is
// a message for a person: not empty, naming what, and in the reader's terms
// (strictjson.Describe's), not encoding/json's Go types.
func CheckReadError(t *testing.T, err error, what string) {
	t.Helper()
	msg := err.Error()
	switch {
	case strings.TrimSpace(msg) == "":
		t.Fatal("an empty error")
	case !strings.Contains(msg, what):
		t.Fatalf("the error does not name %s: %q", what, msg)
	case strings.Contains(msg, "Go struct field") || strings.Contains(msg, "Go value of type"):
		t.Fatalf("the error names Go types, not the file's fields: %q", msg)
	}
}
