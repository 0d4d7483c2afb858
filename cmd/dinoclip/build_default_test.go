//go:build !cuda

package main

// cudaBuild says whether the test binary has the GPU engine (-tags cuda):
// cases that check the default build's refusal of --device cuda run only
// without it.
const cudaBuild = false
