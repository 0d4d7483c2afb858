// Package gpuprobe fails a cuda build fast and clearly on a host without a
// usable NVIDIA GPU. gorgonia.org/cu's package init calls cuInit and, when
// it fails, prints a terse message and exits; a Go program initialises its
// packages in import-path order among those whose imports are ready, so
// this package (imported by package cuda/driver, and depending on nothing
// cu does not) runs its own cuInit first and exits with a message that says what to
// do instead. Only the file with the build tag cuda has code.
package gpuprobe
