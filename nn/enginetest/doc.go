// Package enginetest is the implementation-agnostic test suite for
// [nn.Engine]. Every engine (the float32 CPU engine, the GPU engine) runs the
// same checks against the float64 CPU engine, the oracle, on the same
// inputs.
package enginetest
