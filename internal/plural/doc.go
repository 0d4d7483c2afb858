// Package plural writes a count with its noun in the number it takes
// ("1 epoch", "2 epochs"), for messages that count what a user gave or
// got: "1 epochs" or "lists 1 images" reads as a slip of the program.
package plural
