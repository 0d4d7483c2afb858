// Package enginehooks holds the optional interfaces an nn.Engine may
// implement so that a measurement (package bench) can report what only the
// engine knows. The CPU engine implements none of them; the GPU engine
// (package cuda) implements all of them. They live below both, so that the
// engine does not import the benchmark. A measurement whose hook is missing
// is reported as unmeasured, with the reason.
package enginehooks
