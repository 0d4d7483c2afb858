// Package checkpoint reads and writes dinoclip models and training
// checkpoints (docs/FORMAT.md).
//
// A model is a safetensors file with one float32 tensor per state_dict
// entry of the original ProjectorWithResiduals, names and shapes unchanged,
// so PyTorch loads it with load_state_dict(strict=True); the model shape is
// in its metadata. A training checkpoint is a directory holding the model
// and, beside it, the AdamW moments and the trainer's state, written under a
// temporary name and renamed into place so that it is whole or absent.
// Every file records a SHA-256 of its tensors (table and data) in its
// metadata (safetensors.SHA256Key), and reading one verifies it; the key
// is not handed back in Model.Meta or Checkpoint.Meta.
package checkpoint
