// Package errwriter wraps a writer to keep the first error a write to it
// returned, for code whose writes go through layers that drop errors
// (fmt.Fprintf reports) or turn them into their own (a callback's).
package errwriter
