// Package train drives an [nn.Engine] through a training run: PyTorch's
// OneCycleLR schedule and AdamW hyperparameters, and the training loop
// around them.
//
// The schedule and optimizer follow PyTorch exactly (see [OneCycle] and
// [AdamW]); the golden tests replay runs recorded from PyTorch step by step.
package train
