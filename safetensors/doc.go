// Package safetensors reads and writes the safetensors format, which the
// project uses for checkpoints because PyTorch (and the safetensors Python
// package) can load it without unpickling.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON
// mapping each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end]} (plus an optional "__metadata__" map of strings), then the byte
// buffer the offsets point into.
//
// The reader is strict, because a checkpoint that loads wrongly is worse
// than one that does not load: the header must be valid UTF-8 JSON with no
// duplicate names or unknown fields, every dtype known, every byte range
// exactly shape × dtype size, and the ranges must tile the buffer from its
// first to its last byte with no gap or overlap (as the format requires, so
// no byte of the file is unaccounted for). Each failure names the file and
// the tensor concerned.
//
// Those checks prove that every byte belongs to a tensor, not that the
// bytes are the ones written or that each name points at its own bytes.
// dinoclip's writers therefore record a SHA-256 of the tensor table
// (names, dtypes, shapes, offsets) and of each tensor's bytes in the
// metadata (SHA256Key, through WithSHA256); when a file has it, the first
// read of a tensor hashes the tensors once (in parallel) and every read
// fails with ErrChecksum if it does not match. It guards against accidents
// (bit flips, truncation, a tool that rewrites tensors but keeps the
// metadata), not deliberate edits: anyone can drop or recompute the key,
// and a file without it (the safetensors library's own output) is read
// unverified. Reading only the header costs no pass over the data.
//
// The writer keeps the caller's tensor order (e.g. PyTorch state_dict
// order) both in the header and in the buffer, pads the header with spaces
// to a multiple of 8 bytes as the reference implementation does, and
// replaces the destination atomically (temporary file in the same
// directory, fsync, rename).
package safetensors
