// Command kernelcheck is the static check of the compiled kernels that
// make check-kernels runs (make kernel-budgets runs it with -write-budgets).
// For every kernels/*.cu it
//
//   - compiles the source again, to PTX with nvcc 11.8 and to an sm_90a
//     cubin with nvcc 13.0 (the commands make kernels uses, passed in by the
//     Makefile), and fails when a committed artifact (kernels/ptx/*.ptx,
//     kernels/sm90a/*.cubin) differs or has no source;
//   - measures each kernel with ptxas -v: the PTX assembled for sm_80 and
//     sm_90, the cubin for sm_90a; it fails on a spill or a stack frame, and
//     unless registers and static shared memory equal the row of
//     kernels/budgets.tsv (more is over budget; less means the table is
//     stale, so that a change shows in review);
//   - disassembles the cubin (cuobjdump -sass) and fails when a kernel lacks
//     an opcode that its row of kernels/sass.tsv requires (a tensor-core
//     kernel that silently compiled to scalar code) or has no row.
//
// With -selftest it then checks itself: doctored copies of the tables and
// of one module (lowered and raised budgets, a missing row, a required
// opcode the code lacks, stale artifacts, a kernel that spills) must each
// fail with the matching message.
package main
