// Package searchtest checks any retrieval.Searcher against the contract of
// that interface, whatever runs it (the CPU's, a GPU's), the way gonum's
// testlapack checks LAPACK implementations: an implementation's own test
// calls Run with a fresh searcher.
//
// Every case compares the answer, rows and scores bit for bit, with a
// float64 brute force written here independently of the implementations:
// all scores of a query as float64 sums of the products in column order,
// sorted by score (higher first) and then by row.
package searchtest
