// The kernel glob matcher (bpf/include/ew_glob.bpf.h) on this host's kernel
// against agent/src/policy/glob.ts: see tests/helpers/glob_kernel_suite.ts.
// Needs root (BPF). The same suite runs in the BPF-LSM guest
// (lsm_glob_kernel.test.ts) with the matcher also inside an LSM program.
import { globKernelSuite } from '../helpers/glob_kernel_suite';

globKernelSuite({ lsm: false, randomCount: 20_000, longCount: 1_000 });
