// Package flock takes advisory locks on open files without waiting for
// them: exclusive (no other holder) or shared (no exclusive holder). The
// operating system drops a lock when its file is closed or its process
// ends, however it ends, so a process killed with SIGKILL leaves no stale
// lock behind.
//
// Unix systems lock with flock(2), Windows with LockFileEx on one byte far
// past any content (so that reading the file, such as a lock file's
// record of its holder, is never blocked by the lock). Two descriptors of
// one file conflict even within one process, as two processes do. Other
// systems have no implementation: TryLock returns an error there.
package flock

import "errors"

// ErrLocked is TryLock's error when the lock is held elsewhere.
var ErrLocked = errors.New("the file is locked by another holder")
