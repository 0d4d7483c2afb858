// Package scripts holds tests of the repository's shell scripts: gpu-check.sh
// and device-run.sh, run against stub GPU tools (nvidia-smi, the test
// binaries) that break one thing at a time.
package scripts
