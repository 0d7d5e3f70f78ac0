// Generated malformed KubeArmor policies (issue 4: "≥ 200 malformed
// policies ... each refused with a clear message"). Each case is a file's
// text plus what its error must say. Used by tests/unit/policy_malformed
// (the loader alone) and tests/integration/allow_list (dropped into a
// running agent's policy directory).
import * as yaml from 'js-yaml';

export interface MalformedCase {
  /** short unique name, safe as a file name */
  name: string;
  /** the file's text (or bytes, for encoding cases) */
  text: string | Buffer;
  /** what at least one error line must contain */
  expect: RegExp;
}

const HOST_META = { apiVersion: 'security.kubearmor.com/v1', kind: 'KubeArmorHostPolicy' };
const NODE = { nodeSelector: { matchLabels: { 'kubearmor.io/hostname': '*' } } };

/** A valid host policy with one file rule, for mutating. */
function base(name: string): Record<string, unknown> {
  return {
    ...HOST_META,
    metadata: { name },
    spec: { ...NODE, file: { matchPaths: [{ path: '/etc/ew-malformed-target' }] }, action: 'Block' },
  };
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** Sets `value` at the dotted path (numbers index lists), creating mappings on the way. */
function setAt(doc: Record<string, unknown>, path: Array<string | number>, value: unknown): Record<string, unknown> {
  const out = clone(doc);
  let node = out as Record<string | number, unknown>;
  path.slice(0, -1).forEach((seg, i) => {
    if (node[seg] === undefined || node[seg] === null || typeof node[seg] !== 'object') node[seg] = typeof path[i + 1] === 'number' ? [] : {};
    node = node[seg] as Record<string | number, unknown>;
  });
  node[path[path.length - 1]] = value;
  return out;
}

function deleteAt(doc: Record<string, unknown>, path: Array<string | number>): Record<string, unknown> {
  const out = clone(doc);
  let node = out as Record<string | number, unknown>;
  for (const seg of path.slice(0, -1)) node = node[seg] as Record<string | number, unknown>;
  delete node[path[path.length - 1]];
  return out;
}

const dump = (d: unknown) => yaml.dump(d, { lineWidth: -1, noRefs: true });

/** Rule templates: every rule kind, valid, to mutate field by field. */
const RULES: Array<{ section: string; list: string; rule: Record<string, unknown> }> = [
  { section: 'process', list: 'matchPaths', rule: { path: '/usr/bin/ew-x', fromSource: [{ path: '/usr/bin/bash' }] } },
  { section: 'process', list: 'matchDirectories', rule: { dir: '/opt/ew/', recursive: true } },
  { section: 'process', list: 'matchPatterns', rule: { pattern: '/tmp/**' } },
  { section: 'file', list: 'matchPaths', rule: { path: '/etc/ew-x', readOnly: true, ownerOnly: false } },
  { section: 'file', list: 'matchDirectories', rule: { dir: '/etc/ew/', recursive: false, readOnly: true } },
  { section: 'file', list: 'matchPatterns', rule: { pattern: '/etc/*ew*', readOnly: true } },
  { section: 'network', list: 'matchProtocols', rule: { protocol: 'tcp', fromSource: [{ path: '/usr/bin/curl' }] } },
  { section: 'capabilities', list: 'matchCapabilities', rule: { capability: 'net_raw', fromSource: [{ path: '/usr/bin/ping' }] } },
];

function withRule(name: string, t: (typeof RULES)[number], rule: Record<string, unknown>): Record<string, unknown> {
  const d = base(name);
  const spec = d.spec as Record<string, unknown>;
  delete spec.file;
  spec[t.section] = { [t.list]: [rule] };
  return d;
}

/** Values of the wrong type for a field of the given kind. */
const WRONG: Record<string, Array<[string, unknown, RegExp]>> = {
  string: [
    ['int', 42, /must be a string, not an integer/],
    ['list', ['a'], /must be a string, not a list/],
    ['map', { a: 1 }, /must be a string, not a mapping/],
    ['bool', true, /must be a string, not a boolean/],
  ],
  bool: [
    ['str', 'yes', /must be a boolean, not a string/],
    ['int', 1, /must be a boolean, not an integer/],
  ],
  list: [
    ['str', '/usr/bin/x', /must be a list, not a string/],
    ['map', { path: '/usr/bin/x' }, /must be a list, not a mapping/],
  ],
};

/**
 * At least 200 malformed policy files: wrong types, unknown fields, empty
 * rules, relative paths, huge files and values, deep nesting, invalid YAML,
 * bad encodings, wrong kinds. Deterministic.
 */
export function malformedPolicies(): MalformedCase[] {
  const out: MalformedCase[] = [];
  const add = (name: string, text: string | Buffer, expect: RegExp) => out.push({ name: `${String(out.length).padStart(3, '0')}-${name}`, text, expect });

  // 1. Wrong types, field by field, in every rule kind.
  RULES.forEach((t, ti) => {
    const fields: Array<[string, keyof typeof WRONG]> = Object.entries(t.rule).map(([k, v]) => [
      k,
      typeof v === 'boolean' ? 'bool' : Array.isArray(v) ? 'list' : 'string',
    ]);
    fields.push(['message', 'string']);
    for (const [field, kind] of fields) {
      for (const [label, value, re] of WRONG[kind]) {
        const d = withRule(`wt-${ti}-${field.toLowerCase()}-${label}`, t, { ...t.rule, [field]: value });
        add(`wrong-type-${t.section}-${t.list}-${field}-${label}`, dump(d), re);
      }
    }
    // severity out of range / not an integer, action unknown, tags not a list
    add(`severity-high-${ti}`, dump(withRule(`sev-${ti}`, t, { ...t.rule, severity: 11 })), /must be an integer from 1 to 10 \(got 11\)/);
    add(`severity-zero-${ti}`, dump(withRule(`sev0-${ti}`, t, { ...t.rule, severity: 0 })), /must be an integer from 1 to 10 \(got 0\)/);
    add(`severity-str-${ti}`, dump(withRule(`sevs-${ti}`, t, { ...t.rule, severity: 'high' })), /must be an integer, not a string/);
    add(`action-deny-${ti}`, dump(withRule(`act-${ti}`, t, { ...t.rule, action: 'Deny' })), /must be one of "Allow", "Audit", "Block" \(got "Deny"\)/);
    add(`tags-str-${ti}`, dump(withRule(`tag-${ti}`, t, { ...t.rule, tags: 'pci' })), /must be a list, not a string/);
    // 2. Unknown fields (typos) in the rule
    add(`unknown-${ti}`, dump(withRule(`unk-${ti}`, t, { ...t.rule, fromSorce: [{ path: '/bin/x' }] })), /unknown field/);
    // 3. Empty rules: an empty list, a rule that is an empty mapping, a section with no list
    add(`empty-list-${ti}`, dump(setAt(withRule(`el-${ti}`, t, t.rule), ['spec', t.section, t.list], [])), /must not be an empty list/);
    add(`empty-rule-${ti}`, dump(withRule(`er-${ti}`, t, {})), /is required|must have/);
    add(`empty-section-${ti}`, dump(setAt(withRule(`es-${ti}`, t, t.rule), ['spec', t.section], {})), /must contain at least one of/);
    add(`null-section-${ti}`, dump(setAt(withRule(`ns-${ti}`, t, t.rule), ['spec', t.section], null)), /must be a mapping, not null/);
  });

  // 4. Relative / malformed paths in every path-like field.
  const pathFields: Array<[string, Array<string | number>, string]> = [
    ['process-path', ['spec', 'process', 'matchPaths', 0, 'path'], 'usr/bin/x'],
    ['process-dir', ['spec', 'process', 'matchDirectories', 0, 'dir'], 'opt/ew/'],
    ['file-path', ['spec', 'file', 'matchPaths', 0, 'path'], 'etc/passwd'],
    ['file-dir', ['spec', 'file', 'matchDirectories', 0, 'dir'], 'etc/'],
    ['file-pattern', ['spec', 'file', 'matchPatterns', 0, 'pattern'], 'etc/*'],
    ['process-pattern', ['spec', 'process', 'matchPatterns', 0, 'pattern'], 'tmp/**'],
    ['source-path', ['spec', 'file', 'matchPaths', 0, 'fromSource', 0, 'path'], 'bin/cat'],
    ['source-dir', ['spec', 'file', 'matchPaths', 0, 'fromSource', 0, 'dir'], 'bin/'],
  ];
  for (const [label, p, rel] of pathFields) {
    // source cases keep the rule's own path; the others start from an empty spec
    const d = p.includes('fromSource') ? base(`rel-${label}`) : deleteAt(base(`rel-${label}`), ['spec', 'file']);
    const withPath = setAt(d, p, rel);
    add(`relative-${label}`, dump(withPath), /must be an absolute path/);
    add(`dotdot-${label}`, dump(setAt(d, p, `/etc/../${rel}`)), /normalized path|must end with|must not end|invalid/);
    add(`ctrl-${label}`, dump(setAt(d, p, `/etc/a\u0007b${p[p.length - 1] === 'dir' ? '/' : ''}`)), /control character/);
    add(`pathmax-${label}`, dump(setAt(d, p, '/' + 'a'.repeat(4100) + (p[p.length - 1] === 'dir' ? '/' : ''))), /PATH_MAX/);
  }
  add('dir-without-slash', dump(setAt(deleteAt(base('dns'), ['spec', 'file']), ['spec', 'file', 'matchDirectories', 0, 'dir'], '/etc')), /must end with '\/'/);
  add('path-with-slash', dump(setAt(base('pws'), ['spec', 'file', 'matchPaths', 0, 'path'], '/etc/')), /must not end with '\/'/);
  add('both-path-execname', dump(setAt(deleteAt(base('bpe'), ['spec', 'file']), ['spec', 'process', 'matchPaths', 0], { path: '/bin/a', execname: 'a' })), /either path or execname/);
  add('execname-slash', dump(setAt(deleteAt(base('exs'), ['spec', 'file']), ['spec', 'process', 'matchPaths', 0], { execname: 'bin/a' })), /executable name without/);
  add('source-both', dump(setAt(base('sb'), ['spec', 'file', 'matchPaths', 0, 'fromSource'], [{ path: '/bin/a', dir: '/bin/' }])), /either path or dir/);
  add('source-empty', dump(setAt(base('se'), ['spec', 'file', 'matchPaths', 0, 'fromSource'], [{}])), /must have path or dir/);
  add('recursive-on-path-source', dump(setAt(base('rps'), ['spec', 'file', 'matchPaths', 0, 'fromSource'], [{ path: '/bin/a', recursive: true }])), /only applies to dir/);
  for (const [label, pattern, re] of [
    ['bracket', '/etc/[abc', /without "\]"/],
    ['brace', '/etc/{a,b', /without "\}"/],
    ['nested', '/etc/{a,{b}}', /nested/],
    ['escape', '/etc/a\\', /unfinished escape/],
    ['slash-class', '/etc/[/]', /inside a character class/],
    ['range', '/etc/[z-a]', /empty range/],
    ['explode', '/' + '{a,b}'.repeat(8), /more than 64 alternatives/],
  ] as Array<[string, string, RegExp]>) {
    add(`pattern-${label}`, dump(setAt(deleteAt(base(`pat-${label}`), ['spec', 'file']), ['spec', 'file', 'matchPatterns', 0, 'pattern'], pattern)), re);
  }
  for (const [label, proto] of [['word', 'http'], ['empty', ''], ['semi', 'tcp;udp'], ['num', '6']]) {
    add(`protocol-${label}`, dump(setAt(deleteAt(base(`proto-${label}`), ['spec', 'file']), ['spec', 'network', 'matchProtocols', 0], { protocol: proto, fromSource: [] })), /protocol|must/);
  }
  for (const [label, cap] of [['word', 'root'], ['prefix', 'cap_'], ['space', 'net raw']]) {
    add(`capability-${label}`, dump(setAt(deleteAt(base(`cap-${label}`), ['spec', 'file']), ['spec', 'capabilities', 'matchCapabilities', 0], { capability: cap, fromSource: [] })), /capability/);
  }
  add('host-network-no-fromsource', dump(setAt(deleteAt(base('hnf'), ['spec', 'file']), ['spec', 'network', 'matchProtocols', 0], { protocol: 'tcp' })), /fromSource: is required/);

  // 5. Document-level problems.
  add('no-apiversion', dump(deleteAt(base('na'), ['apiVersion'])), /apiVersion: is required/);
  add('wrong-apiversion', dump(setAt(base('wa'), ['apiVersion'], 'security.kubearmor.com/v2')), /must be "security.kubearmor.com\/v1"/);
  add('wrong-kind', dump(setAt(base('wk'), ['kind'], 'KubeArmorClusterPolicy')), /must be one of/);
  add('no-kind', dump(deleteAt(base('nk'), ['kind'])), /kind: is required/);
  add('no-metadata', dump(deleteAt(base('nm'), ['metadata'])), /metadata: is required/);
  add('no-name', dump(setAt(base('nn'), ['metadata'], {})), /metadata.name: is required/);
  add('bad-name', dump(setAt(base('bn'), ['metadata', 'name'], 'Bad_Name')), /DNS-1123/);
  add('long-name', dump(setAt(base('ln'), ['metadata', 'name'], 'a'.repeat(254))), /at most 253 characters/);
  add('no-spec', dump(deleteAt(base('nsp'), ['spec'])), /spec: is required/);
  add('spec-list', dump(setAt(base('sl'), ['spec'], [1, 2])), /must be a mapping, not a list/);
  add('spec-empty', dump(setAt(base('sem'), ['spec'], { ...NODE })), /defines no rules/);
  add('no-nodeselector', dump(deleteAt(base('nns'), ['spec', 'nodeSelector'])), /nodeSelector: is required/);
  add('empty-matchlabels', dump(setAt(base('eml'), ['spec', 'nodeSelector', 'matchLabels'], {})), /must not be empty/);
  add('unknown-top', dump(setAt(base('ut'), ['specs'], {})), /unknown field/);
  add('unknown-spec', dump(setAt(base('us'), ['spec', 'proccess'], {})), /unknown field \(did you mean "process"\?\)/);
  add('unknown-section', dump(setAt(base('usec'), ['spec', 'file', 'matchPath'], [])), /unknown field/);
  add('ksp-no-selector', dump({ ...setAt(base('kns'), ['kind'], 'KubeArmorPolicy'), spec: { file: { matchPaths: [{ path: '/etc/x' }] } } }), /selector: is required/);
  add('ksp-bad-status', dump({ ...base('kbs'), kind: 'KubeArmorPolicy', spec: { selector: { matchLabels: { a: 'b' } }, status: 'On', file: { matchPaths: [{ path: '/etc/x' }] } } }), /must be one of "Active", "Inactive"/);
  add('syscalls-action', dump(setAt(deleteAt(base('sya'), ['spec', 'file']), ['spec', 'syscalls'], { matchSyscalls: [{ syscall: ['unlink'], action: 'Block' }] })), /unknown field/);

  // 6. Not a policy document at all.
  add('scalar', 'just a string\n', /must be a mapping \(a policy object\), not a string/);
  add('list-doc', '- a\n- b\n', /must be a mapping \(a policy object\), not a list/);
  add('number-doc', '42\n', /not an integer/);
  add('only-comments', '# nothing here\n', /contains no policy documents/);
  add('empty-file', '', /contains no policy documents/);
  add('empty-documents', '---\n# a\n---\n# b\n---\nx: 1\n', /empty document/);

  // 7. Invalid YAML.
  const yamlBroken: Array<[string, string]> = [
    ['tab-indent', 'apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nspec:\n\tfile: {}\n'],
    ['unclosed-quote', 'apiVersion: "security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\n'],
    ['unclosed-flow', 'spec: {file: {matchPaths: [{path: /etc/x}\n'],
    ['bad-indent', 'spec:\n  file:\n matchPaths: []\n'],
    ['dup-key', 'kind: a\nkind: b\n'],
    ['colon', 'a: b: c\n'],
    ['anchor-missing', 'a: *nothing\n'],
    ['bad-tag', 'a: !!binary "%%%"\n'],
    ['stray-dash', 'apiVersion: security.kubearmor.com/v1\n- x\n'],
    ['unclosed-block', 'a: [\n'],
    ['control-char', 'a: "\u0001"\nb: \u0002\n'],
    ['directive', '%YAML 9.9\n---\na: 1\n'],
  ];
  for (const [label, text] of yamlBroken) add(`yaml-${label}`, text, /invalid YAML|duplicat|must be|unknown|required/);

  // 8. Deep nesting and expansion bombs.
  add('deep-nesting', `${'a:\n'.split('').join('')}${Array.from({ length: 200 }, (_, i) => `${'  '.repeat(i)}k${i}:`).join('\n')} x\n`, /invalid YAML|nest|depth|unknown field|required/);
  add('deep-flow', `spec: ${'['.repeat(500)}${']'.repeat(500)}\n`, /invalid YAML|nest|depth|must be/);
  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
  for (let i = 1; i < 8; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
  add('alias-bomb', `${bomb.join('\n')}\n`, /too large|more than 200000 values/);

  // 9. Huge files and values.
  add('huge-file', `# ${'x'.repeat(1024 * 1024 + 10)}\n${dump(base('huge'))}`, /is too large/);
  add('huge-message', dump(setAt(base('hm'), ['spec', 'message'], 'm'.repeat(1024 * 1024 - 200))), /is too large|invalid|must/);
  add('many-rules-one-bad', dump(setAt(base('mr'), ['spec', 'file', 'matchPaths'], [...Array.from({ length: 500 }, (_, i) => ({ path: `/etc/ew-${i}` })), { path: 'rel' }])), /matchPaths\[500\].path: must be an absolute path/);

  // 10. Encoding.
  add('not-utf8', Buffer.from([0x6b, 0x69, 0x6e, 0x64, 0x3a, 0x20, 0xff, 0xfe, 0x0a]), /not valid UTF-8/);
  add('nul-bytes', Buffer.from('kind: \u0000\u0000\n', 'utf8'), /invalid YAML|must be/);
  add('utf16', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(dump(base('u16')), 'utf16le')]), /not valid UTF-8|invalid YAML/);

  return out;
}
