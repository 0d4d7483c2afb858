// Package atomicfile writes files so that a crash never leaves a half-written
// one: the data goes to a temporary file in the same directory (so the
// rename cannot cross filesystems), is fsynced, and is renamed over the
// destination. Readers see the old file or the complete new one.
//
// A writer holds a lock on its temporary file (or directory, MkdirTemp)
// while it writes, which the system drops when the writer ends, however it
// ends: RemoveStale tells the temporaries a killed writer left from those
// of a writer at work, and removes the first; SweepStale does so for all
// the temporaries of one name in a directory.
package atomicfile
