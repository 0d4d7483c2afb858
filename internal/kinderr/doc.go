// Package kinderr makes errors that carry a complete message and the
// sentinel error they are a case of, so that callers can test the kind
// with errors.Is while the message says exactly what went wrong.
package kinderr
