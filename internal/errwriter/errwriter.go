// Package errwriter wraps a writer to keep the first error a write to it
// returned, for code whose writes go through layers that drop errors
// (fmt.Fprintf reports) or turn them into their own (a callback's).
package errwriter

import "io"

// Writer writes to W and keeps in Err the first error a write to W
// returned. Every write is passed on, after an error too.
type Writer struct {
	W   io.Writer
	Err error
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.W.Write(p)
	if err != nil && w.Err == nil {
		w.Err = err
	}
	return n, err
}
