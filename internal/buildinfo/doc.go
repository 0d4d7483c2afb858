// Package buildinfo says which version and commit a binary was built from.
package buildinfo
