// Package flocktest helps tests of code that meets another process's lock:
// refused by a writer at work, or waiting out a reader's brief look
// (flock.TryLockBriefly).
package flocktest
