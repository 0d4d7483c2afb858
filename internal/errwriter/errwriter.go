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
