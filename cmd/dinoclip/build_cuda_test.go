//go:build cuda

package main

// cudaBuild: see build_default_test.go.
const cudaBuild = true
