// Package dataset holds what writers and readers of data directories
// (training data, evaluation sets) agree on: the names of their files, and
// how to tell a whole data set from one being written or left by an
// interrupted writer (the names dinoclip synth gives its staging
// directories and its unfinished-run marker, and CheckComplete, which
// every reader calls before reading a set).
package dataset
