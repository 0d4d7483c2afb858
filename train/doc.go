// Package train drives an [nn.Engine] through a training run: PyTorch's
// OneCycleLR schedule and AdamW hyperparameters, and the training loop
// around them; the training data it reads (memory-mapped shards in a
// deterministic order, [OpenDataset]); and the run directory it keeps
// (checkpoints, metrics.jsonl, the best and last links, the lock that keeps
// a second process out, and the record of the inputs a resume must find
// unchanged).
//
// The schedule and optimizer follow PyTorch exactly (see [OneCycle] and
// [AdamW]); the golden tests replay runs recorded from PyTorch step by step.
package train
