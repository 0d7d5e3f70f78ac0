// What the bpf-lsm backend does not enforce yet is named, never dropped in silence (agent/src/lsm_backend.ts).
import * as yaml from 'js-yaml';
import { notEnforcedByLsm } from '../../agent/src/lsm_backend';
import { compilePolicies } from '../../agent/src/policy/compiler';
import { formatPolicyError, parsePolicyText } from '../../agent/src/policy/loader';

function compileHost(name: string, spec: Record<string, unknown>) {
  const text = yaml.dump({
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorHostPolicy',
    metadata: { name },
    spec: { nodeSelector: { matchLabels: { 'kubearmor.io/hostname': '*' } }, ...spec },
  });
  const r = parsePolicyText(text, 'p.yaml');
  if (r.errors.length) throw new Error(r.errors.map(formatPolicyError).join('\n'));
  return compilePolicies(r.policies, { hostname: 'edge-1', posture: { file: 'block', network: 'audit', capabilities: 'block' } }).set;
}

test('Block and Audit path rules: nothing to report', () => {
  expect(notEnforcedByLsm(compileHost('b', { file: { matchPaths: [{ path: '/etc/shadow' }] }, action: 'Block' }))).toEqual([]);
});

test('an Allow rule puts the host in allow-list mode: the posture is named as not enforced', () => {
  const lines = notEnforcedByLsm(compileHost('a', { process: { matchPaths: [{ path: '/usr/bin/true' }] }, action: 'Allow' }));
  expect(lines).toEqual([expect.stringMatching(/^host: process allow-list \(default posture Block\) not enforced by the bpf-lsm backend yet/)]);
});

test('capability rules are enforced (bpf/lsm_capable.bpf.c); a capabilities allow-list is named as not enforced', () => {
  const caps = (action: string) => ({ capabilities: { matchCapabilities: [{ capability: 'net_raw', fromSource: [{ path: '/usr/bin/ping' }] }] }, action });
  expect(notEnforcedByLsm(compileHost('caps', caps('Block')))).toEqual([]);
  expect(notEnforcedByLsm(compileHost('caps', caps('Allow')))).toEqual([
    expect.stringMatching(/^host: capabilities allow-list \(default posture Block\) not enforced by the bpf-lsm backend yet/),
  ]);
});
