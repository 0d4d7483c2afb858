// Package sysmem tells how much memory the process can still allocate, and
// how much a file system can still take, so that a command can refuse
// work that would not fit with a message rather than be killed by the
// kernel's out-of-memory killer, or run out of disk, halfway through.
package sysmem
