// The kernel glob matcher in the BPF-LSM guest (Debian's 6.1 kernel, run by
// tests/vm/vm.test.ts): the LSM program using it must pass that verifier, and
// the syscall program must give glob.ts's verdicts there too. Fewer cases than
// on the host (node is much slower under TCG); see glob_kernel_suite.ts.
import { globKernelSuite } from '../helpers/glob_kernel_suite';

globKernelSuite({ lsm: true, randomCount: 4_000, longCount: 200 });
