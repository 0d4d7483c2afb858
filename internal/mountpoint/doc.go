// Package mountpoint tells whether a directory is a mount point: such a
// directory cannot be replaced by renaming another onto it, so writers
// that publish a directory whole (dinoclip search's output, dinoclip
// synth's data sets) must do otherwise there.
package mountpoint
