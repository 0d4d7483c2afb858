// Package mmapfile memory-maps whole files read-only, for the readers that
// leave large arrays in the file and convert them only on request.
package mmapfile
