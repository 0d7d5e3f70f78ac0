/** Tests run in one process at a time: integration tests share the kernel. */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  // tests/integration/lsm_*.test.ts need a kernel that runs BPF-LSM programs;
  // this host refuses them, so tests/vm/vm.test.ts runs them inside a BPF-LSM
  // guest (its own jest config) and fails if any of them fails there.
  testPathIgnorePatterns: ['/node_modules/', '/tests/integration/lsm_[^/]*\\.test\\.ts$'],
  testTimeout: 60000,
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] },
};
