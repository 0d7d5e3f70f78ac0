// Allow / default posture, matchPatterns, execname and capabilities in the
// compiler (pure), plus allowListModes() and the glob matcher.
import * as yaml from 'js-yaml';
import { compilePolicies, CompileOptions, CompileResult, expandCapabilities } from '../../agent/src/policy/compiler';
import { compileGlob, expandBraces, globProblem, MAX_BRACE_EXPANSIONS } from '../../agent/src/policy/glob';
import { formatPolicyError, parsePolicyText } from '../../agent/src/policy/loader';
import { allowListModes } from '../../agent/src/policy/posture';
import { renumberRules } from '../../agent/src/policy/renumber';
import type { PostureRule, WorkloadTarget } from '../../agent/src/policy/types';
import { hostRulesOnly, resolveWorkloads, WorkloadContainer } from '../../agent/src/workloads';

const BLOCK_ALL: CompileOptions['posture'] = { file: 'block', network: 'block', capabilities: 'block' };

function doc(kind: 'KubeArmorHostPolicy' | 'KubeArmorPolicy', name: string, spec: Record<string, unknown>): string {
  const selector =
    kind === 'KubeArmorHostPolicy'
      ? { nodeSelector: { matchLabels: { 'kubearmor.io/hostname': '*' } } }
      : { selector: { matchLabels: { app: 'web' } } };
  return yaml.dump({ apiVersion: 'security.kubearmor.com/v1', kind, metadata: { name }, spec: { ...selector, ...spec } });
}

function compile(texts: string[], posture?: CompileOptions['posture']): CompileResult {
  const r = parsePolicyText(texts.join('---\n'), 'p.yaml');
  if (r.errors.length) throw new Error(r.errors.map(formatPolicyError).join('\n'));
  return compilePolicies(r.policies, { hostname: 'edge-1', ...(posture ? { posture } : {}) });
}

function loadErrors(spec: Record<string, unknown>): string[] {
  return parsePolicyText(doc('KubeArmorHostPolicy', 'x', spec), 'p.yaml').errors.map(formatPolicyError);
}

describe('Allow and the default posture', () => {
  test('Allow rules compile with their own action; Block and Audit next to them keep theirs', () => {
    const r = compile([
      doc('KubeArmorHostPolicy', 'allow-cat', {
        file: { matchPaths: [{ path: '/etc/hostname', fromSource: [{ path: '/usr/bin/cat' }] }], action: 'Allow' },
      }),
      doc('KubeArmorHostPolicy', 'block-shadow', { file: { matchPaths: [{ path: '/etc/shadow' }] }, action: 'Block' }),
      doc('KubeArmorHostPolicy', 'audit-passwd', { file: { matchPaths: [{ path: '/etc/passwd' }] }, action: 'Audit' }),
    ]);
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules.map((p) => [p.ruleId, p.action])).toEqual([
      [1, 'Allow'],
      [2, 'Block'],
      [3, 'Audit'],
    ]);
    // default posture (no option): KubeArmor's audit
    expect(r.set.postureRules).toEqual([{ ruleId: 4, category: 'file', action: 'Audit', scopeKind: 'host' }]);
  });

  test('Allow at policy, section and rule level, each overridable like severity (rule > section > policy)', () => {
    const r = compile([
      doc('KubeArmorHostPolicy', 'levels', {
        action: 'Allow',
        severity: 3,
        process: { matchPaths: [{ path: '/usr/bin/a' }, { path: '/usr/bin/b', action: 'Block', severity: 9 }] },
        network: { action: 'Audit', matchProtocols: [{ protocol: 'udp', fromSource: [] }, { protocol: 'tcp', fromSource: [], action: 'Allow' }] },
      }),
    ]);
    expect(r.errors).toEqual([]);
    const rows = [...r.set.pathRules, ...r.set.networkRules].map((x) => [x.ruleId, x.action, r.set.meta.get(x.ruleId)!.severity]);
    expect(rows).toEqual([
      [1, 'Allow', 3],
      [2, 'Block', 9],
      [3, 'Audit', 3],
      [4, 'Allow', 3],
    ]);
    expect(r.set.postureRules!.map((p) => [p.category, p.scopeKind])).toEqual([
      ['process', 'host'],
      ['network', 'host'],
    ]);
  });

  test('posture per category from the options; process takes the file posture', () => {
    const spec = {
      action: 'Allow',
      process: { matchPaths: [{ path: '/usr/bin/a' }] },
      file: { matchPaths: [{ path: '/etc/a' }] },
      network: { matchProtocols: [{ protocol: 'tcp', fromSource: [] }] },
      capabilities: { matchCapabilities: [{ capability: 'net_raw', fromSource: [] }] },
    };
    const r = compile([doc('KubeArmorHostPolicy', 'p', spec)], { file: 'block', network: 'audit', capabilities: 'block' });
    const byCat = Object.fromEntries(r.set.postureRules!.map((p) => [p.category, p.action]));
    expect(byCat).toEqual({ process: 'Block', file: 'Block', network: 'Audit', capabilities: 'Block' });
    for (const p of r.set.postureRules!) {
      expect(r.set.meta.get(p.ruleId)).toMatchObject({ policyName: 'DefaultPosture', policyType: 'MatchedHostPolicy', action: p.action });
    }
    expect(r.set.meta.get(r.set.postureRules![0].ruleId)!.operation).toBe('Process');
  });

  test('no Allow rule: no posture rule (Block-only policies stay deny-lists)', () => {
    const r = compile([doc('KubeArmorHostPolicy', 'b', { file: { matchPaths: [{ path: '/etc/shadow' }] } })], BLOCK_ALL);
    expect(r.set.postureRules).toEqual([]);
    expect(allowListModes(r.set)).toEqual([]);
  });

  test('host and container Allow rules get separate posture rules (MatchedHostPolicy / MatchedPolicy)', () => {
    const r = compile(
      [
        doc('KubeArmorHostPolicy', 'h', { action: 'Allow', file: { matchPaths: [{ path: '/etc/a' }] } }),
        doc('KubeArmorPolicy', 'c', { action: 'Allow', file: { matchPaths: [{ path: '/etc/b' }] } }),
      ],
      BLOCK_ALL,
    );
    expect(r.set.postureRules).toEqual([
      { ruleId: 3, category: 'file', action: 'Block', scopeKind: 'host' },
      { ruleId: 4, category: 'file', action: 'Block', scopeKind: 'containers' },
    ]);
    expect(r.set.meta.get(4)!.policyType).toBe('MatchedPolicy');
  });

  test('allowListModes: only the containers an Allow rule selects switch; the host only with host Allow rules', () => {
    const r = compile(
      [
        doc('KubeArmorPolicy', 'allow-web', { action: 'Allow', process: { matchPaths: [{ path: '/usr/bin/nginx' }] } }),
        doc('KubeArmorHostPolicy', 'host-block', { network: { matchProtocols: [{ protocol: 'raw', fromSource: [] }] } }),
      ],
      BLOCK_ALL,
    );
    const c = (id: string, labels: Record<string, string>, mntNs: number): WorkloadContainer => ({
      id,
      name: id,
      labels,
      namespaceName: 'container_namespace',
      pid: 100 + mntNs,
      mntNs,
      pidNs: mntNs + 1000,
    });
    const resolved = resolveWorkloads(r.set, [c('web1', { app: 'web' }, 11), c('db', { app: 'db' }, 12), c('web2', { app: 'web' }, 13)]);
    const modes = allowListModes(resolved);
    expect(modes.map((m) => [m.workload?.containerName ?? 'host', Object.keys(m.postures)])).toEqual([
      ['web1', ['process']],
      ['web2', ['process']],
    ]);
    expect((modes[0].postures.process as PostureRule).action).toBe('Block');
    // the host policy is a deny-list: the host is not in allow-list mode
    expect(modes.some((m) => !m.workload)).toBe(false);
  });

  test('renumbering moves posture rules and their meta together; hostRulesOnly keeps host postures only', () => {
    const r = compile(
      [
        doc('KubeArmorHostPolicy', 'h', { action: 'Allow', file: { matchPaths: [{ path: '/etc/a' }] } }),
        doc('KubeArmorPolicy', 'c', { action: 'Allow', network: { matchProtocols: [{ protocol: 'tcp' }] } }),
      ],
      BLOCK_ALL,
    );
    const moved = renumberRules(r.set, 1 << 20);
    expect(moved.postureRules!.map((p) => p.ruleId)).toEqual([(1 << 20) + 3, (1 << 20) + 4]);
    for (const p of moved.postureRules!) expect(moved.meta.get(p.ruleId)!.policyName).toBe('DefaultPosture');
    const host = hostRulesOnly(moved, 'audit-only');
    expect(host.set.postureRules!.map((p) => p.scopeKind)).toEqual(['host']);
    expect(allowListModes(host.set).map((m) => Object.keys(m.postures))).toEqual([['file']]);
  });

  test('an unresolved container Allow rule switches nothing (it is in force nowhere)', () => {
    const r = compile([doc('KubeArmorPolicy', 'c', { action: 'Allow', file: { matchPaths: [{ path: '/etc/b' }] } })], BLOCK_ALL);
    expect(allowListModes(r.set)).toEqual([]);
    const w: WorkloadTarget = { mntNs: 5, pidNs: 6, pid: 7, containerId: 'x', containerName: 'x' };
    const withW = { ...r.set, pathRules: r.set.pathRules.map((p) => ({ ...p, workload: w })) };
    expect(allowListModes(withW).map((m) => m.workload?.mntNs)).toEqual([5]);
  });
});

describe('execname, matchPatterns, capabilities', () => {
  test('execname: an exec rule on the executable name', () => {
    const r = compile([doc('KubeArmorHostPolicy', 'e', { process: { matchPaths: [{ execname: 'nc', fromSource: [{ path: '/usr/bin/bash' }] }] } })]);
    expect(r.set.pathRules[0]).toMatchObject({ operation: 'Process', target: { kind: 'execname', name: 'nc' }, fromSource: [{ kind: 'path', path: '/usr/bin/bash' }] });
  });

  test('matchPatterns (process and file) carry readOnly / ownerOnly and their own action', () => {
    const r = compile([
      doc('KubeArmorHostPolicy', 'p', {
        process: { matchPatterns: [{ pattern: '/tmp/**', action: 'Block' }] },
        file: { matchPatterns: [{ pattern: '/etc/*shadow*', readOnly: true, ownerOnly: true, action: 'Audit' }] },
      }),
    ]);
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules.map((p) => [p.operation, p.target, p.readOnly, p.ownerOnly, p.action])).toEqual([
      ['Process', { kind: 'pattern', pattern: '/tmp/**' }, false, false, 'Block'],
      ['File', { kind: 'pattern', pattern: '/etc/*shadow*' }, true, true, 'Audit'],
    ]);
  });

  test('capabilities: one rule per name (case, cap_ prefix and lists folded)', () => {
    expect(expandCapabilities('CAP_NET_RAW, sys_admin,net_raw')).toEqual(['net_raw', 'sys_admin']);
    const r = compile([
      doc('KubeArmorHostPolicy', 'c', {
        capabilities: { matchCapabilities: [{ capability: 'net_raw,CAP_SYS_ADMIN', fromSource: [{ path: '/usr/bin/ping' }] }], action: 'Block' },
      }),
    ]);
    expect(r.errors).toEqual([]);
    expect(r.set.capabilityRules!.map((c) => [c.ruleId, c.capability, c.action, c.fromSource.length])).toEqual([
      [1, 'net_raw', 'Block', 1],
      [2, 'sys_admin', 'Block', 1],
    ]);
    expect(r.set.meta.get(1)!.operation).toBe('Capabilities');
  });

  test('the loader refuses bad patterns and execnames, naming the field', () => {
    expect(loadErrors({ file: { matchPatterns: [{ pattern: 'etc/*' }] } })).toEqual([
      'p.yaml: document 1: spec.file.matchPatterns[0].pattern: must be an absolute path pattern (start with /)',
    ]);
    expect(loadErrors({ file: { matchPatterns: [{ pattern: '/etc/[abc' }] } })[0]).toMatch(/pattern: has "\[" without "\]"/);
    expect(loadErrors({ process: { matchPatterns: [{ pattern: '/a/{b,{c}}' }] } })[0]).toMatch(/nested "\{"/);
    expect(loadErrors({ process: { matchPatterns: [{ pattern: '/a/{b' }] } })[0]).toMatch(/"\{" without "\}"/);
    expect(loadErrors({ process: { matchPatterns: [{ pattern: '/a\\' }] } })[0]).toMatch(/unfinished escape/);
    expect(loadErrors({ process: { matchPatterns: [{ pattern: '/' + 'a'.repeat(5000) + '*' }] } })[0]).toMatch(/longer than PATH_MAX \(4095 bytes\)/);
    expect(loadErrors({ process: { matchPatterns: [{ pattern: '/tmp/\u0001*' }] } })[0]).toMatch(/control character at position 5/);
    expect(loadErrors({ process: { matchPaths: [{ execname: 'x'.repeat(256) }] } })[0]).toMatch(
      /spec.process.matchPaths\[0\].execname: is longer than NAME_MAX \(255 bytes\)/,
    );
    expect(loadErrors({ process: { matchPaths: [{ execname: '..' }] } })[0]).toMatch(/not "." or ".."/);
  });
});

describe('glob', () => {
  const cases: Array<[string, string, boolean]> = [
    ['/etc/*shadow*', '/etc/shadow', true],
    ['/etc/*shadow*', '/etc/gshadow-', true],
    ['/etc/*shadow*', '/etc/sub/shadow', false], // * stays within a name
    ['/tmp/**', '/tmp/a/b/c', true],
    ['/tmp/**', '/tmp/', true],
    ['/tmp/**/x', '/tmp/a/b/x', true],
    ['/tmp/**/x', '/tmp/x', false], // "/**/" needs the slashes around it
    ['/tmp/*', '/tmp/a/b', false],
    ['/bin/?s', '/bin/ls', true],
    ['/bin/?s', '/bin/s', false],
    ['/bin/?s', '/bin//s', false],
    ['/dev/tty[0-9]', '/dev/tty7', true],
    ['/dev/tty[0-9]', '/dev/ttyS', false],
    ['/dev/tty[!0-9]', '/dev/ttyS', true],
    ['/dev/tty[^0-9]', '/dev/tty1', false],
    ['/a/{b,c}/d', '/a/c/d', true],
    ['/a/{b,c}/d', '/a/e/d', false],
    ['/a/\\*', '/a/*', true],
    ['/a/\\*', '/a/b', false],
    ['/a/é?', '/a/éx', true],
    ['/a/?', '/a/é', true], // one character, not one byte
    ['/x*y*z', '/x' + 'a'.repeat(3000) + 'y', false], // no exponential backtracking
  ];
  test.each(cases)('%s ~ %s: %s', (pattern, p, want) => {
    expect(globProblem(pattern)).toBeUndefined();
    expect(compileGlob(pattern)(p)).toBe(want);
  });

  test('brace expansion has a limit', () => {
    const many = '/' + Array.from({ length: 7 }, () => '{a,b}').join('');
    expect(typeof expandBraces(many)).toBe('string');
    expect(globProblem(many)).toBe(`expands into more than ${MAX_BRACE_EXPANSIONS} alternatives`);
    expect(expandBraces('/{a,b}{c,d}')).toEqual(['/ac', '/ad', '/bc', '/bd']);
  });

  test('a class cannot hold "/", an inverted range is refused', () => {
    expect(globProblem('/a/[/]')).toMatch(/"\/" inside a character class/);
    expect(globProblem('/a/[z-a]')).toMatch(/empty range z-a/);
  });
});
