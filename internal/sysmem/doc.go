// Package sysmem tells how much memory the process can still allocate, so
// that a command can refuse work that would not fit with a message rather
// than be killed by the kernel's out-of-memory killer halfway through.
package sysmem
