// Package retrieval evaluates image-text retrieval the way LAION's
// CLIP_benchmark does in its zeroshot_retrieval task, on the CPU, and holds
// the search index that `dinoclip index` writes and `dinoclip search` reads
// ([Index], [IndexWriter]; its format is in docs/FORMAT.md), and the
// [Searcher] interface that the CPU's exact search and the GPU's share,
// with the float64 re-scoring ([Refine]) that makes both exact.
//
// # Data layout
//
// Embeddings are flat, row-major []float32 matrices: row r of an n×dim
// matrix x is x[r*dim : (r+1)*dim]. Captions are tied to images by a
// caption-to-image index: caption c describes image captionImage[c], and an
// image may have several captions (MSCOCO has five or more).
//
// # Protocol
//
// Evaluate follows CLIP_benchmark:
//
//   - Every image and caption row is L2-normalised (see NormalizeRows), so
//     scores are cosine similarities.
//   - Text to image (CLIP_benchmark's "image_retrieval_recall@k"): every
//     caption is one query over all images; it is a hit at k if the caption's
//     own image is among its k best-scoring images. Recall is averaged over
//     captions.
//   - Image to text (CLIP_benchmark's "text_retrieval_recall@k"): every image
//     is one query over all captions; it is a hit at k if any one of its
//     captions is among its k best-scoring captions. Recall is averaged over
//     images.
//
// Recall is reported in percent (0 to 100), the unit of CLIP_benchmark's
// published tables; field names carry the unit.
//
// An image that no caption describes stays in the evaluation: it is a key for
// every text-to-image query and, as an image-to-text query, it can never hit,
// so it counts as a miss. CLIP_benchmark does the same (its per-image recall
// is 0/0 = NaN, and NaN > 0 is false). Result.ImagesWithoutCaptions reports
// how many there were so that a broken caption index does not pass unseen.
//
// When k is at least the number of keys, every key is in the top k, so every
// query that has a positive at all is a hit. (torch.topk would refuse such a
// k; CLIP_benchmark's datasets never ask for it.)
//
// # Ordering and ties
//
// TopK orders keys by score, higher first, and breaks equal scores by the lower
// key index. Scores are compared as IEEE-754 values, so -0 and +0 are equal.
// With this rule the 1-based rank of key j for a query is
//
//	rank(j) = 1 + #{keys with a strictly greater score}
//	            + #{keys with an equal score and an index lower than j}
//
// and key j is in the top k exactly when rank(j) <= k. CLIP_benchmark takes
// whatever torch.topk returns, which leaves the order of equal scores
// unspecified; the two agree whenever no ties straddle the k-th place, which
// for real embeddings is essentially always.
//
// A zero row (for example a failed feature extraction) stays zero after
// normalisation, so all of its scores are 0: as a query it ranks the keys by
// index among those that also score 0, and as a key it sits behind every key
// that scores above 0.
//
// # Computation
//
// Scores are never held as a full queries×keys matrix. TopK and Evaluate
// run the CPU's exact search ([CPUSearcher]): keys are packed a tile at a
// time into panels (float16 decoded on the way), multiplied with the
// queries, packed once, by a register-blocked kernel that also compares
// each score with its query's current threshold (on amd64 an AVX-512
// kernel, 6 queries × 32 keys a tile, where the CPU has AVX-512F, else an
// AVX2 one of 6 × 16; portable Go elsewhere or with the purego tag), and
// the few candidates that pass are re-scored in float64 (see [Searcher]
// for the scores and the order). The kernels differ in speed only: what
// they let through is re-scored in float64, so the answer is the
// reference one whichever ran. Goroutines (up to GOMAXPROCS) take whole tiles of keys, each
// with its own candidate list per query, merged at the end, so the result
// does not depend on scheduling. Memory is bounded by
// CPUSearcher.MemoryBudget beyond the inputs and the answer.
package retrieval
