// ≥ 200 generated malformed policies (tests/helpers/malformed_policies.ts):
// each is refused as a whole with a clear error line naming the file (and
// the document and field where there is one); none throws, none loads.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { compilePolicies } from '../../agent/src/policy/compiler';
import { formatPolicyError, loadPolicyDirectory, loadPolicyFile } from '../../agent/src/policy/loader';
import { malformedPolicies } from '../helpers/malformed_policies';

const cases = malformedPolicies();
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ew-malformed-'));
  for (const c of cases) fs.writeFileSync(path.join(dir, `${c.name}.yaml`), c.text);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('there are at least 200 cases, with unique names', () => {
  expect(cases.length).toBeGreaterThanOrEqual(200);
  expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
});

describe.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
  test('refused with a clear message', () => {
    const file = path.join(dir, `${c.name}.yaml`);
    const r = loadPolicyFile(file);
    const lines = r.errors.map(formatPolicyError);
    // refused: nothing of the file loads (a document that is fine next to a broken one is not a case here)
    const compiled = compilePolicies(r.policies, { hostname: 'edge-1' });
    const refused = r.policies.length === 0 || compiled.errors.length > 0;
    if (!refused || lines.length + compiled.errors.length === 0) {
      throw new Error(`${c.name} was accepted: ${JSON.stringify(r.policies.map((p) => p.name))}`);
    }
    const all = [...lines, ...compiled.errors.map((e) => e.message)];
    if (!all.some((l) => c.expect.test(l))) throw new Error(`${c.name}: no error matches ${c.expect}:\n${all.join('\n')}`);
    for (const l of all) {
      expect(l.startsWith(`${file}: `)).toBe(true); // names the file
      expect(l).not.toMatch(/undefined|\[object Object\]|NaN/);
      expect(l.length).toBeLessThan(2000); // a huge value is not echoed back whole
    }
  });
});

test('the whole directory loads without throwing: every file refused, a good policy next to them still loads', () => {
  fs.writeFileSync(
    path.join(dir, 'zzz-good.yaml'),
    'apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata: {name: good}\nspec:\n  nodeSelector: {matchLabels: {kubearmor.io/hostname: "*"}}\n  file: {matchPaths: [{path: /etc/ew-good}]}\n  action: Block\n',
  );
  try {
    const r = loadPolicyDirectory(dir);
    const compiled = compilePolicies(r.policies, { hostname: 'edge-1' });
    expect(compiled.set.pathRules.map((p) => compiled.set.meta.get(p.ruleId)!.policyName)).toContain('good');
    const refusedFiles = new Set([...r.errors.map((e) => e.file), ...compiled.errors.map((e) => e.source)]);
    for (const c of cases) expect(refusedFiles.has(path.join(dir, `${c.name}.yaml`))).toBe(true);
  } finally {
    fs.rmSync(path.join(dir, 'zzz-good.yaml'));
  }
});
