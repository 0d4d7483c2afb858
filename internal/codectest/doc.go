// Package codectest holds test helpers shared by the file-format packages
// (npy, safetensors), whose tests check the same behaviours: every
// rejection names the file and its kind, readers race safely with Close,
// and the fuzz targets start from the test files; and by every fuzz target
// that reads its input from a file (WriteFile).
package codectest
