import * as path from 'path';
import * as yaml from 'js-yaml';
import {
  ALL_PROTOCOLS,
  compilePolicies,
  CompileOptions,
  CompileResult,
  expandProtocols,
  formatCompileError,
  nodeSelectorMismatch,
} from '../../agent/src/policy/compiler';
import { formatPolicyError, LoadedPolicy, loadPolicyDirectory, loadPolicyFile, parsePolicyText } from '../../agent/src/policy/loader';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'kubearmor');
const ANY_NODE: CompileOptions = { hostname: 'edge-1' };

function load(text: string, source = 'p.yaml'): LoadedPolicy[] {
  const r = parsePolicyText(text, source);
  if (r.errors.length) throw new Error(r.errors.map(formatPolicyError).join('\n'));
  return r.policies;
}

function fixture(name: string): LoadedPolicy[] {
  const r = loadPolicyFile(path.join(FIXTURES, name));
  if (r.errors.length) throw new Error(r.errors.map(formatPolicyError).join('\n'));
  return r.policies;
}

/** A host policy for every node with the given spec (nodeSelector added). */
function hsp(name: string, spec: Record<string, unknown>, labels: Record<string, string> = { 'kubearmor.io/hostname': '*' }): string {
  return yaml.dump({
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorHostPolicy',
    metadata: { name },
    spec: { nodeSelector: { matchLabels: labels }, ...spec },
  });
}

function compileText(text: string, options: CompileOptions = ANY_NODE): CompileResult {
  return compilePolicies(load(text), options);
}

function metaOf(r: CompileResult, ruleId: number) {
  const m = r.set.meta.get(ruleId);
  if (!m) throw new Error(`no meta for rule ${ruleId}`);
  return m;
}

describe('KubeArmor published examples', () => {
  test('hsp-kubearmor-dev-proc-path-block: one exec rule on its node', () => {
    const r = compilePolicies(fixture('hsp-kubearmor-dev-proc-path-block.yaml'), { hostname: 'kubearmor-dev' });
    expect(r.errors).toEqual([]);
    expect(r.skipped).toEqual([]);
    expect(r.set.pathRules).toEqual([
      {
        ruleId: 1,
        action: 'Block',
        operation: 'Process',
        target: { kind: 'path', path: '/usr/bin/diff' },
        readOnly: false,
        ownerOnly: false,
        fromSource: [],
        scope: { kind: 'host' },
      },
    ]);
    expect(r.set.networkRules).toEqual([]);
    expect(metaOf(r, 1)).toEqual({
      ruleId: 1,
      policyName: 'hsp-kubearmor-dev-proc-path-block',
      policyType: 'MatchedHostPolicy',
      severity: 5,
      tags: [],
      message: '',
      action: 'Block',
      operation: 'Process',
      source: path.join(FIXTURES, 'hsp-kubearmor-dev-proc-path-block.yaml'),
    });
  });

  test('hsp-kubearmor-dev-proc-path-block is not for another node: skipped, not an error', () => {
    const r = compilePolicies(fixture('hsp-kubearmor-dev-proc-path-block.yaml'), { hostname: 'edge-1' });
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules).toEqual([]);
    expect(r.set.meta.size).toBe(0);
    expect(r.skipped).toEqual([
      {
        policyName: 'hsp-kubearmor-dev-proc-path-block',
        source: path.join(FIXTURES, 'hsp-kubearmor-dev-proc-path-block.yaml'),
        reason: 'kubernetes.io/hostname is "edge-1", policy wants "kubearmor-dev"',
        message: `${path.join(FIXTURES, 'hsp-kubearmor-dev-proc-path-block.yaml')}: policy "hsp-kubearmor-dev-proc-path-block" is not for this node: kubernetes.io/hostname is "edge-1", policy wants "kubearmor-dev"`,
      },
    ]);
  });

  test('hsp-nonk8s (kubearmor.io/hostname "*"): a directory rule limited to /usr/bin/head, on any node', () => {
    const r = compilePolicies(fixture('hsp-nonk8s-kubearmor-dev-file-dir-block-fromsource.yaml'), { hostname: 'whatever' });
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules).toEqual([
      {
        ruleId: 1,
        action: 'Block',
        operation: 'File',
        target: { kind: 'dir', path: '/etc/default/', recursive: false },
        readOnly: false,
        ownerOnly: false,
        fromSource: [{ kind: 'path', path: '/usr/bin/head' }],
        scope: { kind: 'host' },
      },
    ]);
    expect(metaOf(r, 1).severity).toBe(5);
  });

  test('hsp-kubearmor-dev-file-path-audit and -block-fromSource', () => {
    const r = compilePolicies(
      [...fixture('hsp-kubearmor-dev-file-path-audit.yaml'), ...fixture('hsp-kubearmor-dev-file-path-block-fromSource.yaml')],
      { hostname: 'kubearmor-dev' },
    );
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules.map((p) => [p.ruleId, p.action, p.operation, p.target, p.fromSource])).toEqual([
      [1, 'Audit', 'File', { kind: 'path', path: '/etc/passwd' }, []],
      [2, 'Block', 'File', { kind: 'path', path: '/etc/hostname' }, [{ kind: 'path', path: '/usr/bin/head' }]],
    ]);
    expect(metaOf(r, 1).action).toBe('Audit');
    expect(metaOf(r, 2).policyName).toBe('hsp-kubearmor-dev-file-path-block-fromsource');
  });

  test('hsp-cve-2019-14271: section severity/action, policy tags/message', () => {
    const r = compilePolicies(fixture('hsp-cve-2019-14271.yaml'), { hostname: 'gke-ubuntu' });
    expect(r.errors).toEqual([]);
    const tags = ['CVE-2019-14271', 'docker-cp', 'libraries', 'docker-tar', 'root-code-execution'];
    const rows = r.set.pathRules.map((p) => {
      const m = metaOf(r, p.ruleId);
      return [p.ruleId, p.operation, (p.target as { path: string }).path, m.severity, m.action, m.message, m.tags];
    });
    const msg = 'Alert! Docker Binary Has Been Executed.';
    expect(rows).toEqual([
      [1, 'Process', '/usr/bin/docker', 2, 'Block', msg, tags],
      [2, 'Process', '/usr/sbin/chroot', 2, 'Block', msg, tags],
      [3, 'Process', '/usr/lib/tar', 2, 'Block', msg, tags],
      [4, 'Process', '/usr/lib/chmod', 2, 'Block', msg, tags],
      [5, 'File', '/lib/x86_64-linux-gnu/', 3, 'Block', msg, tags],
      [6, 'File', '/var/log/', 3, 'Block', msg, tags],
    ]);
  });

  test('hsp-kubearmor-dev-proc-path-allow-fromSource: Allow rules switch the host\'s process category to allow-list mode', () => {
    const r = compilePolicies(fixture('hsp-kubearmor-dev-proc-path-allow-fromSource.yaml'), {
      hostname: 'kubearmor-dev',
      posture: { file: 'block', network: 'audit', capabilities: 'audit' },
    });
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules.map((p) => [p.ruleId, p.action, p.target, p.fromSource])).toEqual([
      [1, 'Allow', { kind: 'path', path: '/bin/date' }, [{ kind: 'path', path: '/bin/bash' }]],
      [2, 'Allow', { kind: 'path', path: '/usr/bin/date' }, [{ kind: 'path', path: '/usr/bin/bash' }]],
    ]);
    // process takes the file posture (KubeArmor); one posture rule, after the policy rules
    expect(r.set.postureRules).toEqual([{ ruleId: 3, category: 'process', action: 'Block', scopeKind: 'host' }]);
    expect(metaOf(r, 1)).toMatchObject({ policyName: 'hsp-kubearmor-dev-proc-path-allow-fromsource', action: 'Allow', severity: 5 });
    expect(metaOf(r, 3)).toEqual({
      ruleId: 3,
      policyName: 'DefaultPosture',
      policyType: 'MatchedHostPolicy',
      severity: 0,
      tags: [],
      message: '',
      action: 'Block',
      operation: 'Process',
      source: '',
    });
  });

  test('ksp-group-1-proc-path-block: an exec rule for containers labelled group=group-1, Type MatchedPolicy', () => {
    const r = compilePolicies(fixture('ksp-group-1-proc-path-block.yaml'), ANY_NODE);
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules).toEqual([
      {
        ruleId: 1,
        action: 'Block',
        operation: 'Process',
        target: { kind: 'path', path: '/bin/sleep' },
        readOnly: false,
        ownerOnly: false,
        fromSource: [],
        scope: { kind: 'containers', selector: { matchLabels: { group: 'group-1' }, matchExpressions: [] } },
      },
    ]);
    expect(metaOf(r, 1)).toMatchObject({ policyName: 'ksp-group-1-proc-path-block', policyType: 'MatchedPolicy', severity: 5, message: 'block /bin/sleep' });
  });

  test('ksp-ubuntu-5 (network Audit), -4 (readOnly) and -2 (recursive directory) compile with their container selectors', () => {
    const r = compilePolicies(
      [
        ...fixture('ksp-ubuntu-5-net-icmp-audit.yaml'),
        ...fixture('ksp-ubuntu-4-file-path-readonly-block.yaml'),
        ...fixture('ksp-ubuntu-2-file-dir-recursive-block.yaml'),
      ],
      ANY_NODE,
    );
    expect(r.errors).toEqual([]);
    expect(r.set.networkRules).toEqual([
      {
        ruleId: 1,
        action: 'Audit',
        operation: 'Network',
        protocol: 'icmp',
        fromSource: [],
        scope: { kind: 'containers', selector: { matchLabels: { container: 'ubuntu-5' }, matchExpressions: [] } },
      },
    ]);
    expect(r.set.pathRules.map((p) => [p.ruleId, p.target, p.readOnly, p.scope])).toEqual([
      [2, { kind: 'path', path: '/credentials/password' }, true, { kind: 'containers', selector: { matchLabels: { container: 'ubuntu-4' }, matchExpressions: [] } }],
      [
        3,
        { kind: 'dir', path: '/run/secrets/kubernetes.io/serviceaccount/', recursive: true },
        false,
        { kind: 'containers', selector: { matchLabels: { container: 'ubuntu-2' }, matchExpressions: [] } },
      ],
    ]);
    expect([...r.set.meta.values()].map((m) => m.policyType)).toEqual(['MatchedPolicy', 'MatchedPolicy', 'MatchedPolicy']);
    expect(metaOf(r, 2)).toMatchObject({ severity: 10, tags: ['WARNNING'], message: 'a critical file was accessed' });
  });

  test('ksp-match-expression-notin-block-process: execname compiles into an exec rule on the name', () => {
    const r = compilePolicies(fixture('ksp-match-expression-notin-block-process.yaml'), ANY_NODE);
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules.map((p) => [p.operation, p.target])).toEqual([['Process', { kind: 'execname', name: 'apt' }]]);
  });

  test('the whole fixture directory: supported policies compile, the rest is reported, ids stay dense', () => {
    const loaded = loadPolicyDirectory(FIXTURES);
    const r = compilePolicies(loaded.policies, { hostname: 'kubearmor-dev' });
    const ids = [...r.set.pathRules, ...r.set.networkRules, ...(r.set.postureRules ?? [])].map((x) => x.ruleId).sort((a, b) => a - b);
    expect(ids).toEqual(ids.map((_, i) => i + 1));
    expect([...r.set.meta.keys()].sort((a, b) => a - b)).toEqual(ids);
    expect(r.errors).toEqual([]);
    expect(r.skipped.map((s) => s.policyName)).toEqual(['hsp-cve-2019-14271']);
  });
});

describe('severity / tags / message / action precedence (rule > section > policy)', () => {
  const rules = (r: CompileResult) =>
    [...r.set.pathRules, ...r.set.networkRules]
      .sort((a, b) => a.ruleId - b.ruleId)
      .map((x) => {
        const m = metaOf(r, x.ruleId);
        return { severity: m.severity, tags: m.tags, message: m.message, action: m.action, ruleAction: x.action };
      });

  test('defaults: severity 1, action Block, no tags, empty message', () => {
    const r = compileText(hsp('d', { file: { matchPaths: [{ path: '/etc/x' }] } }));
    expect(rules(r)).toEqual([{ severity: 1, tags: [], message: '', action: 'Block', ruleAction: 'Block' }]);
  });

  test('policy level applies when section and rule say nothing', () => {
    const r = compileText(hsp('p', { severity: 4, tags: ['T'], message: 'M', action: 'Audit', process: { matchPaths: [{ path: '/bin/x' }] } }));
    expect(rules(r)).toEqual([{ severity: 4, tags: ['T'], message: 'M', action: 'Audit', ruleAction: 'Audit' }]);
  });

  test('section level overrides policy level, per section', () => {
    const r = compileText(
      hsp('s', {
        severity: 4,
        tags: ['P'],
        message: 'policy',
        action: 'Block',
        process: { severity: 7, tags: ['S'], message: 'section', action: 'Audit', matchPaths: [{ path: '/bin/x' }] },
        file: { matchPaths: [{ path: '/etc/x' }] },
        network: { severity: 9, matchProtocols: [{ protocol: 'udp', fromSource: [] }] },
      }),
    );
    expect(rules(r)).toEqual([
      { severity: 7, tags: ['S'], message: 'section', action: 'Audit', ruleAction: 'Audit' },
      { severity: 4, tags: ['P'], message: 'policy', action: 'Block', ruleAction: 'Block' },
      { severity: 9, tags: ['P'], message: 'policy', action: 'Block', ruleAction: 'Block' },
    ]);
  });

  test('rule level overrides section and policy; each field independently', () => {
    const r = compileText(
      hsp('r', {
        severity: 2,
        tags: ['P'],
        message: 'policy',
        action: 'Block',
        file: {
          severity: 5,
          action: 'Audit',
          matchPaths: [
            { path: '/etc/a', severity: 10, tags: ['R'], message: 'rule', action: 'Block' },
            { path: '/etc/b', message: 'only message' },
            { path: '/etc/c', tags: ['only-tags'] },
          ],
          matchDirectories: [{ dir: '/etc/d/', action: 'Block' }],
        },
      }),
    );
    expect(rules(r)).toEqual([
      { severity: 10, tags: ['R'], message: 'rule', action: 'Block', ruleAction: 'Block' },
      { severity: 5, tags: ['P'], message: 'only message', action: 'Audit', ruleAction: 'Audit' },
      { severity: 5, tags: ['only-tags'], message: 'policy', action: 'Audit', ruleAction: 'Audit' },
      { severity: 5, tags: ['P'], message: 'policy', action: 'Block', ruleAction: 'Block' },
    ]);
  });

  test('empty tags and an empty message inherit, as in KubeArmor (len == 0)', () => {
    const r = compileText(
      hsp('e', { tags: ['P'], message: 'policy', process: { tags: [], message: '', matchPaths: [{ path: '/bin/x', tags: [], message: '' }] } }),
    );
    expect(rules(r)).toEqual([{ severity: 1, tags: ['P'], message: 'policy', action: 'Block', ruleAction: 'Block' }]);
  });

  test('meta tags are copies: changing one rule does not change another', () => {
    const r = compileText(hsp('c', { tags: ['P'], process: { matchPaths: [{ path: '/bin/x' }, { path: '/bin/y' }] } }));
    metaOf(r, 1).tags.push('changed');
    expect(metaOf(r, 2).tags).toEqual(['P']);
  });
});

describe('rules', () => {
  test('readOnly, ownerOnly, recursive and fromSource are carried through', () => {
    const r = compileText(
      hsp('flags', {
        process: {
          matchPaths: [{ path: '/usr/bin/passwd', ownerOnly: true, fromSource: [{ dir: '/usr/sbin/', recursive: true }] }],
          matchDirectories: [{ dir: '/opt/app/', recursive: true, ownerOnly: true }, { dir: '/srv/' }],
        },
        file: {
          matchPaths: [{ path: '/etc/shadow', readOnly: true, ownerOnly: true }],
          matchDirectories: [{ dir: '/etc/', readOnly: true, recursive: true, fromSource: [{ path: '/usr/bin/vi' }, { dir: '/opt/' }] }],
        },
      }),
    );
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules.every((p) => p.scope?.kind === 'host')).toBe(true);
    expect(r.set.pathRules.map(({ scope: _scope, ...rest }) => rest)).toEqual([
      {
        ruleId: 1,
        action: 'Block',
        operation: 'Process',
        target: { kind: 'path', path: '/usr/bin/passwd' },
        readOnly: false,
        ownerOnly: true,
        fromSource: [{ kind: 'dir', path: '/usr/sbin/', recursive: true }],
      },
      { ruleId: 2, action: 'Block', operation: 'Process', target: { kind: 'dir', path: '/opt/app/', recursive: true }, readOnly: false, ownerOnly: true, fromSource: [] },
      { ruleId: 3, action: 'Block', operation: 'Process', target: { kind: 'dir', path: '/srv/', recursive: false }, readOnly: false, ownerOnly: false, fromSource: [] },
      { ruleId: 4, action: 'Block', operation: 'File', target: { kind: 'path', path: '/etc/shadow' }, readOnly: true, ownerOnly: true, fromSource: [] },
      {
        ruleId: 5,
        action: 'Block',
        operation: 'File',
        target: { kind: 'dir', path: '/etc/', recursive: true },
        readOnly: true,
        ownerOnly: false,
        fromSource: [
          { kind: 'path', path: '/usr/bin/vi' },
          { kind: 'dir', path: '/opt/', recursive: false },
        ],
      },
    ]);
    expect([...r.set.meta.values()].map((m) => m.operation)).toEqual(['Process', 'Process', 'Process', 'File', 'File']);
  });

  test('network: one rule per protocol class, each with its own id and meta', () => {
    const r = compileText(
      hsp('net', {
        network: {
          matchProtocols: [
            { protocol: 'TCP, udp', fromSource: [{ path: '/usr/bin/curl' }] },
            { protocol: 'all', fromSource: [], action: 'Audit' },
            { protocol: 'icmpv6', fromSource: [{ dir: '/usr/bin/', recursive: false }] },
          ],
        },
      }),
    );
    expect(r.errors).toEqual([]);
    expect(r.set.networkRules.map((n) => [n.ruleId, n.protocol, n.action, n.fromSource])).toEqual([
      [1, 'tcp', 'Block', [{ kind: 'path', path: '/usr/bin/curl' }]],
      [2, 'udp', 'Block', [{ kind: 'path', path: '/usr/bin/curl' }]],
      [3, 'tcp', 'Audit', []],
      [4, 'udp', 'Audit', []],
      [5, 'icmp', 'Audit', []],
      [6, 'icmpv6', 'Audit', []],
      [7, 'raw', 'Audit', []],
      [8, 'icmpv6', 'Block', [{ kind: 'dir', path: '/usr/bin/', recursive: false }]],
    ]);
    expect(r.set.networkRules.every((n) => n.operation === 'Network' && metaOf(r, n.ruleId).operation === 'Network')).toBe(true);
  });

  test('expandProtocols: case, spaces, duplicates, all, unsupported names', () => {
    expect(expandProtocols('all')).toEqual({ classes: [...ALL_PROTOCOLS], unsupported: [] });
    expect(expandProtocols('ALL,tcp')).toEqual({ classes: [...ALL_PROTOCOLS], unsupported: [] });
    expect(expandProtocols(' Tcp , tcp,UDP ')).toEqual({ classes: ['tcp', 'udp'], unsupported: [] });
    expect(expandProtocols('ICMPv6')).toEqual({ classes: ['icmpv6'], unsupported: [] });
    expect(expandProtocols('tcp,sctp,SCTP,packet')).toEqual({ classes: ['tcp'], unsupported: ['sctp', 'packet'] });
    expect(ALL_PROTOCOLS).toEqual(['tcp', 'udp', 'icmp', 'icmpv6', 'raw']);
  });
});

describe('not supported yet: refused with policy, field and reason; other policies still compile', () => {
  const good = hsp('good', { process: { matchPaths: [{ path: '/bin/good' }] } });
  const cases: Array<[string, Record<string, unknown>, string, string]> = [
    ['syscalls', { syscalls: { matchSyscalls: [{ syscall: ['unlink'] }] } }, 'spec.syscalls', 'not supported yet: syscalls'],
    ['apparmor', { apparmor: 'profile x {}', process: { matchPaths: [{ path: '/bin/x' }] } }, 'spec.apparmor', 'not supported: raw AppArmor profiles'],
    ['sctp', { network: { matchProtocols: [{ protocol: 'tcp,sctp', fromSource: [] }] } }, 'spec.network.matchProtocols[0].protocol', 'not supported yet: protocol sctp'],
  ];

  test.each(cases)('%s', (_title, spec, field, reason) => {
    const text = `${good}---\n${hsp('bad', { ...spec, process: { matchPaths: [{ path: '/bin/fine' }], ...((spec.process as object) ?? {}) } })}`;
    const r = compileText(text);
    expect(r.errors.length).toBeGreaterThanOrEqual(1);
    const e = r.errors.find((x) => x.field === field);
    if (!e) throw new Error(`no error on ${field}: ${r.errors.map((x) => x.message).join('; ')}`);
    expect(e.policyName).toBe('bad');
    expect(e.reason.startsWith(reason)).toBe(true);
    expect(e.message).toBe(`p.yaml: policy "bad": ${field}: ${e.reason} (policy refused)`);
    // The bad policy is refused as a whole; the good one keeps rule id 1.
    expect(r.set.pathRules.map((p) => (p.target as { path: string }).path)).toEqual(['/bin/good']);
    expect(r.set.networkRules).toEqual([]);
    expect([...r.set.meta.values()].map((m) => m.policyName)).toEqual(['good']);
  });
});

describe('nodeSelector', () => {
  const spec = { process: { matchPaths: [{ path: '/bin/x' }] } };
  const compiled = (labels: Record<string, string>, options: CompileOptions) => {
    const r = compileText(hsp('n', spec, labels), options);
    expect(r.errors).toEqual([]);
    return r;
  };

  test('kubearmor.io/hostname: exact, or "*" for any node', () => {
    expect(compiled({ 'kubearmor.io/hostname': 'edge-1' }, { hostname: 'edge-1' }).set.pathRules).toHaveLength(1);
    expect(compiled({ 'kubearmor.io/hostname': '*' }, { hostname: 'anything' }).set.pathRules).toHaveLength(1);
    const other = compiled({ 'kubearmor.io/hostname': 'edge-10' }, { hostname: 'edge-1' });
    expect(other.set.pathRules).toHaveLength(0);
    expect(other.skipped[0].reason).toBe('kubearmor.io/hostname is "edge-1", policy wants "edge-10"');
  });

  test('host names are compared exactly (no prefix or case folding)', () => {
    expect(nodeSelectorMismatch({ 'kubearmor.io/hostname': 'edge' }, { hostname: 'edge-1' })).toBeDefined();
    expect(nodeSelectorMismatch({ 'kubearmor.io/hostname': 'Edge-1' }, { hostname: 'edge-1' })).toBeDefined();
  });

  test('kubernetes.io/hostname names this host too, but "*" is only a wildcard for kubearmor.io/hostname', () => {
    expect(nodeSelectorMismatch({ 'kubernetes.io/hostname': 'edge-1' }, { hostname: 'edge-1' })).toBeUndefined();
    expect(nodeSelectorMismatch({ 'kubernetes.io/hostname': '*' }, { hostname: 'edge-1' })).toBe(
      'kubernetes.io/hostname is "edge-1", policy wants "*"',
    );
  });

  test('every label must match the node labels from the options', () => {
    const options = { hostname: 'edge-1', nodeLabels: { site: 'plant-3', 'openhorizon.org/arch': 'arm64' } };
    expect(compiled({ 'kubearmor.io/hostname': '*', site: 'plant-3' }, options).set.pathRules).toHaveLength(1);
    expect(compiled({ site: 'plant-3', 'openhorizon.org/arch': 'arm64' }, options).set.pathRules).toHaveLength(1);
    const wrong = compiled({ 'kubearmor.io/hostname': '*', site: 'plant-4' }, options);
    expect(wrong.set.pathRules).toHaveLength(0);
    expect(wrong.skipped[0].reason).toBe('site is "plant-3", policy wants "plant-4"');
    const missing = compiled({ 'kubearmor.io/hostname': '*', zone: 'a' }, options);
    expect(missing.skipped[0].reason).toBe('node has no label zone (wanted "a")');
  });

  test('labels set in the options override the derived host name labels', () => {
    const options = { hostname: 'edge-1', nodeLabels: { 'kubernetes.io/hostname': 'k8s-name' } };
    expect(nodeSelectorMismatch({ 'kubernetes.io/hostname': 'k8s-name' }, options)).toBeUndefined();
    expect(nodeSelectorMismatch({ 'kubernetes.io/hostname': 'edge-1' }, options)).toBeDefined();
  });

  test('a skipped policy takes no rule ids', () => {
    const text = `${hsp('a', spec, { 'kubearmor.io/hostname': 'other' })}---\n${hsp('b', spec)}`;
    const r = compileText(text);
    expect(r.set.pathRules.map((p) => p.ruleId)).toEqual([1]);
    expect(metaOf(r, 1).policyName).toBe('b');
    expect(r.skipped.map((s) => s.policyName)).toEqual(['a']);
  });
});

describe('stable rule ids', () => {
  const text = [
    hsp('one', { process: { matchPaths: [{ path: '/bin/a' }], matchDirectories: [{ dir: '/opt/' }] }, network: { matchProtocols: [{ protocol: 'all', fromSource: [] }] } }),
    hsp('two', { file: { matchPaths: [{ path: '/etc/a' }], matchDirectories: [{ dir: '/etc/b/', recursive: true }] } }),
    hsp('refused', { syscalls: { matchSyscalls: [{ syscall: ['unlink'] }] } }),
    hsp('three', { process: { matchPaths: [{ path: '/bin/c' }] } }),
  ].join('---\n');

  test('ids start at 1, follow policy/section/rule order and do not depend on earlier runs', () => {
    const first = compileText(text);
    const second = compileText(text);
    expect(second.set.pathRules).toEqual(first.set.pathRules);
    expect(second.set.networkRules).toEqual(first.set.networkRules);
    expect([...second.set.meta.entries()]).toEqual([...first.set.meta.entries()]);
    expect(first.set.pathRules.map((p) => [p.ruleId, (p.target as { path: string }).path])).toEqual([
      [1, '/bin/a'],
      [2, '/opt/'],
      [8, '/etc/a'],
      [9, '/etc/b/'],
      [10, '/bin/c'],
    ]);
    expect(first.set.networkRules.map((n) => n.ruleId)).toEqual([3, 4, 5, 6, 7]);
    expect([...first.set.meta.keys()]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test('compiling does not modify its input', () => {
    const policies = load(text);
    const before = JSON.stringify(policies);
    compilePolicies(policies, ANY_NODE);
    expect(JSON.stringify(policies)).toBe(before);
  });
});

describe('bundled default policies', () => {
  test('load and compile on any node without errors; the only Block is exec from /dev/shm', () => {
    const loaded = loadPolicyDirectory(path.join(__dirname, '..', '..', 'policies', 'default'));
    expect(loaded.errors.map(formatPolicyError)).toEqual([]);
    const r = compilePolicies(loaded.policies, { hostname: 'some-debian-node' });
    expect(r.errors.map(formatCompileError)).toEqual([]);
    expect(r.skipped).toEqual([]);
    const blocks = [...r.set.pathRules, ...r.set.networkRules].filter((x) => x.action === 'Block');
    expect(blocks).toEqual([
      expect.objectContaining({ operation: 'Process', target: { kind: 'dir', path: '/dev/shm/', recursive: true }, fromSource: [] }),
    ]);
    // Audit rules on system paths only audit writes, never reads.
    for (const p of r.set.pathRules.filter((x) => x.operation === 'File' && (x.target as { path: string }).path.startsWith('/usr/'))) {
      expect(p.readOnly).toBe(true);
    }
    expect([...r.set.meta.values()].every((m) => m.tags.includes('edgeward-default'))).toBe(true);
  });
});

describe('KubeArmorPolicy selectors', () => {
  const body = { process: { matchPaths: [{ path: '/bin/x' }] } };
  const ksp = (name: string, selector: unknown, extra: Record<string, unknown> = {}) =>
    yaml.dump({ apiVersion: 'security.kubearmor.com/v1', kind: 'KubeArmorPolicy', metadata: { name }, spec: { selector, ...body, ...extra } });

  test('container name, labels and expressions are kept; the name is not a label', () => {
    const r = compileText(
      ksp('s', {
        matchLabels: { 'kubearmor.io/container.name': 'web-[0-9]+$', app: 'web' },
        matchExpressions: [{ key: 'label', operator: 'NotIn', values: ['tier=db'] }],
      }),
    );
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules[0].scope).toEqual({
      kind: 'containers',
      selector: { matchLabels: { app: 'web' }, containerName: 'web-[0-9]+$', matchExpressions: [{ operator: 'NotIn', values: ['tier=db'] }] },
    });
    expect(metaOf(r, 1).policyType).toBe('MatchedPolicy');
  });

  test('rules of one policy do not share a selector object', () => {
    const r = compileText(ksp('two', { matchLabels: { app: 'web' } }, { process: { matchPaths: [{ path: '/bin/x' }, { path: '/bin/y' }] } }));
    const [a, b] = r.set.pathRules;
    expect(a.scope).toEqual(b.scope);
    expect(a.scope).not.toBe(b.scope);
  });

  test('host policies get the host scope next to container policies', () => {
    const r = compileText(`${hsp('h', body)}---\n${ksp('c', { matchLabels: { app: 'x' } })}`);
    expect(r.set.pathRules.map((p) => [p.ruleId, p.scope?.kind])).toEqual([
      [1, 'host'],
      [2, 'containers'],
    ]);
    expect([...r.set.meta.values()].map((m) => m.policyType)).toEqual(['MatchedHostPolicy', 'MatchedPolicy']);
  });

  test.each<[string, unknown, string, string]>([
    ['an empty selector', {}, 'spec.selector', 'selects no container: give matchLabels or matchExpressions'],
    ['empty matchLabels', { matchLabels: {} }, 'spec.selector', 'selects no container'],
    ['an invalid name pattern', { matchLabels: { 'kubearmor.io/container.name': 'web(' } }, 'spec.selector.matchLabels["kubearmor.io/container.name"]', 'invalid regular expression "web("'],
    [
      'an expression value that is no label',
      { matchExpressions: [{ key: 'label', operator: 'In', values: ['app=x', 'justaword'] }] },
      'spec.selector.matchExpressions[0].values[1]',
      'must be a label as key=value (got "justaword")',
    ],
  ])('%s is refused, naming the field; other policies still compile', (_title, selector, field, reason) => {
    const r = compileText(`${hsp('good', body)}---\n${ksp('bad', selector)}`);
    const e = r.errors.find((x) => x.field === field);
    if (!e) throw new Error(`no error on ${field}: ${r.errors.map((x) => x.message).join('; ')}`);
    expect(e.policyName).toBe('bad');
    expect(e.reason.startsWith(reason)).toBe(true);
    expect([...r.set.meta.values()].map((m) => m.policyName)).toEqual(['good']);
  });

  test('"*" as the container name selects every container (KubeArmor VM daemon)', () => {
    const r = compileText(ksp('all', { matchLabels: { 'kubearmor.io/container.name': '*' } }));
    expect(r.errors).toEqual([]);
    expect(r.set.pathRules[0].scope).toEqual({ kind: 'containers', selector: { matchLabels: {}, containerName: '*', matchExpressions: [] } });
  });

  test('status Inactive: skipped with a reason, no rule ids', () => {
    const r = compileText(`${ksp('off', { matchLabels: { app: 'x' } }, { status: 'Inactive' })}---\n${ksp('on', { matchLabels: { app: 'x' } })}`);
    expect(r.errors).toEqual([]);
    expect(r.skipped.map((s) => [s.policyName, s.reason])).toEqual([['off', 'spec.status is Inactive']]);
    expect(metaOf(r, 1).policyName).toBe('on');
  });

  test('metadata.namespace does not limit the selection (KubeArmor outside Kubernetes ignores it)', () => {
    const text = yaml.dump({
      apiVersion: 'security.kubearmor.com/v1',
      kind: 'KubeArmorPolicy',
      metadata: { name: 'ns', namespace: 'multiubuntu' },
      spec: { selector: { matchLabels: { app: 'x' } }, ...body },
    });
    const r = compileText(text);
    expect(r.set.pathRules[0].scope).toEqual({ kind: 'containers', selector: { matchLabels: { app: 'x' }, matchExpressions: [] } });
  });
});
