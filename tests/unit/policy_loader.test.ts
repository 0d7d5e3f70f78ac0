import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as yaml from 'js-yaml';
import {
  formatPolicyError,
  LoadResult,
  loadPolicyDirectory,
  loadPolicyFile,
  MAX_ERRORS_PER_FILE,
  MAX_POLICY_FILE_BYTES,
  parsePolicyText,
  PolicyError,
  resolveExistingPrefix,
  symlinkedPathWarnings,
} from '../../agent/src/policy/loader';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'kubearmor');

/** A valid host policy; tests mutate copies of it. */
function basePolicy(): Record<string, any> {
  return {
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorHostPolicy',
    metadata: { name: 'base' },
    spec: {
      nodeSelector: { matchLabels: { 'kubearmor.io/hostname': '*' } },
      severity: 5,
      process: { matchPaths: [{ path: '/usr/bin/sleep' }] },
      file: { matchPaths: [{ path: '/etc/shadow', readOnly: true }], matchDirectories: [{ dir: '/etc/ssh/', recursive: true }] },
      network: { matchProtocols: [{ protocol: 'tcp', fromSource: [{ path: '/usr/bin/curl' }] }] },
      action: 'Block',
    },
  };
}

function basePolicyText(): string {
  return yaml.dump(basePolicy());
}

const lines = (r: LoadResult): string[] => r.errors.map(formatPolicyError);

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-loader-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('KubeArmor published examples', () => {
  const files = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml'));

  test('the fixture set is there', () => {
    expect(files.length).toBeGreaterThanOrEqual(12);
  });

  test.each(files)('%s loads unchanged', (f) => {
    const r = loadPolicyFile(path.join(FIXTURES, f));
    expect(lines(r)).toEqual([]);
    expect(r.policies).toHaveLength(1);
    const doc = yaml.load(fs.readFileSync(path.join(FIXTURES, f), 'utf8')) as any;
    expect(r.policies[0].name).toBe(doc.metadata.name);
    expect(r.policies[0].kind).toBe(doc.kind);
    expect(r.policies[0].spec).toEqual(doc.spec);
    expect(r.policies[0].source).toBe(path.join(FIXTURES, f));
    expect(r.policies[0].documentIndex).toBe(0);
  });

  test('the directory loads in name order and refuses the two published duplicates', () => {
    const r = loadPolicyDirectory(FIXTURES);
    const names = files.slice().sort();
    expect(r.policies.map((p) => path.basename(p.source))).toEqual(
      names.filter((n) => n !== 'hsp-nonk8s-kubearmor-dev-file-dir-block-fromsource.yaml' && n !== 'hsp-tutorial-sleep-block-all-hosts.yaml'),
    );
    expect(lines(r)).toEqual([
      `${path.join(FIXTURES, 'hsp-nonk8s-kubearmor-dev-file-dir-block-fromsource.yaml')}: document 1: metadata.name: duplicate KubeArmorHostPolicy name "hsp-kubearmor-dev-file-dir-block-fromsource" (already defined in ${path.join(FIXTURES, 'hsp-kubearmor-dev-file-dir-block-fromSource.yaml')} document 1); this one is refused`,
      `${path.join(FIXTURES, 'hsp-tutorial-sleep-block-all-hosts.yaml')}: document 1: metadata.name: duplicate KubeArmorHostPolicy name "hsp-kubearmor-dev-proc-path-block" (already defined in ${path.join(FIXTURES, 'hsp-kubearmor-dev-proc-path-block.yaml')} document 1); this one is refused`,
    ]);
  });

  test('the bundled default policies load without errors', () => {
    const dir = path.join(__dirname, '..', '..', 'policies', 'default');
    const r = loadPolicyDirectory(dir);
    expect(lines(r)).toEqual([]);
    expect(r.policies.length).toBe(fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).length);
    expect(r.policies.every((p) => p.kind === 'KubeArmorHostPolicy')).toBe(true);
  });
});

describe('error lines', () => {
  test('exact shape: file, 1-based document, dotted field, message', () => {
    const bad = basePolicy();
    bad.spec.file.matchPaths[0].path = 'etc/shadow';
    const text = `${basePolicyText().replace('name: base', 'name: first')}---\n${yaml.dump(bad)}`;
    const r = parsePolicyText(text, 'policies/x.yaml');
    expect(lines(r)).toEqual(['policies/x.yaml: document 2: spec.file.matchPaths[0].path: must be an absolute path']);
    expect(r.errors[0]).toMatchObject({ file: 'policies/x.yaml', documentIndex: 1, path: 'spec.file.matchPaths[0].path' });
    expect(r.policies.map((p) => p.name)).toEqual(['first']);
  });

  test('file-level errors have no document part', () => {
    const e: PolicyError = { file: 'p/x.yaml', documentIndex: null, path: '', message: 'is too large' };
    expect(formatPolicyError(e)).toBe('p/x.yaml: is too large');
  });

  test('label keys with dots are quoted in field paths', () => {
    const bad = basePolicy();
    bad.spec.nodeSelector.matchLabels = { 'kubernetes.io/hostname': 1234 };
    expect(lines(parsePolicyText(yaml.dump(bad), 'x.yaml'))).toEqual([
      'x.yaml: document 1: spec.nodeSelector.matchLabels["kubernetes.io/hostname"]: must be a string, not an integer (quote the value in YAML)',
    ]);
  });

  test('all problems of a document are reported, each once', () => {
    const bad = basePolicy();
    bad.apiVersion = 'v1';
    bad.spec.severity = 0;
    bad.spec.process.matchPaths[0].path = 'sleep';
    const r = parsePolicyText(yaml.dump(bad), 'x.yaml');
    expect(lines(r).sort()).toEqual(
      [
        'x.yaml: document 1: apiVersion: must be "security.kubearmor.com/v1" (got "v1")',
        'x.yaml: document 1: spec.severity: must be an integer from 1 to 10 (got 0)',
        'x.yaml: document 1: spec.process.matchPaths[0].path: must be an absolute path',
      ].sort(),
    );
  });
});

describe('multi-document YAML', () => {
  const doc = (name: string) => basePolicyText().replace('name: base', `name: ${name}`);

  test('documents load in order with 0-based indexes and start lines', () => {
    const r = parsePolicyText(`${doc('a')}---\n${doc('b')}---\n${doc('c')}`, 'm.yaml');
    expect(lines(r)).toEqual([]);
    expect(r.policies.map((p) => [p.name, p.documentIndex])).toEqual([
      ['a', 0],
      ['b', 1],
      ['c', 2],
    ]);
    const firstLen = doc('a').split('\n').length;
    expect(r.policies[1].line).toBe(firstLen);
  });

  test('leading and trailing separators are not documents', () => {
    const r = parsePolicyText(`# header\n---\n${doc('a')}---\n`, 'm.yaml');
    expect(lines(r)).toEqual([]);
    expect(r.policies).toHaveLength(1);
  });

  test('an empty document between two separators is refused, the others load', () => {
    const r = parsePolicyText(`${doc('a')}---\n# nothing here\n---\n${doc('b')}`, 'm.yaml');
    expect(lines(r)).toEqual(['m.yaml: document 2: empty document']);
    expect(r.policies.map((p) => p.name)).toEqual(['a', 'b']);
  });

  test('invalid YAML names the line and column in the whole file; other documents load', () => {
    const text = `${doc('a')}---\napiVersion: security.kubearmor.com/v1\nkind: [KubeArmorHostPolicy\n---\n${doc('c')}`;
    const badLine = doc('a').split('\n').length + 2; // 1-based line after "kind: [..."
    const r = parsePolicyText(text, 'm.yaml');
    expect(r.policies.map((p) => p.name)).toEqual(['a', 'c']);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0].documentIndex).toBe(1);
    expect(formatPolicyError(r.errors[0])).toMatch(/^m\.yaml: document 2: invalid YAML at line \d+, column \d+: /);
    expect(r.errors[0].line).toBeGreaterThanOrEqual(badLine);
  });

  test('a syntax error points at the right line', () => {
    const text = 'apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: x\n\tbad: tab\n';
    expect(lines(parsePolicyText(text, 't.yaml'))[0]).toMatch(/^t\.yaml: document 1: invalid YAML at line 5, column \d+: /);
  });

  test('a duplicated mapping key is invalid YAML, not silently last-wins', () => {
    const text = basePolicyText() + 'kind: KubeArmorPolicy\n';
    expect(lines(parsePolicyText(text, 'd.yaml'))[0]).toMatch(/invalid YAML at line \d+, column 1: duplicated mapping key/);
  });

  test('CRLF line ends and a byte order mark are accepted', () => {
    const r = parsePolicyText('\uFEFF' + basePolicyText().replace(/\n/g, '\r\n'), 'w.yaml');
    expect(lines(r)).toEqual([]);
    expect(r.policies).toHaveLength(1);
  });

  test('duplicate names within one text: the second is refused', () => {
    const r = parsePolicyText(`${doc('a')}---\n${doc('a')}`, 'd.yaml');
    expect(r.policies).toHaveLength(1);
    expect(lines(r)).toEqual([
      'd.yaml: document 2: metadata.name: duplicate KubeArmorHostPolicy name "a" (already defined in document 1); this one is refused',
    ]);
  });

  test('same name in different kinds or namespaces is not a duplicate', () => {
    const ksp = (ns: string) =>
      yaml.dump({
        apiVersion: 'security.kubearmor.com/v1',
        kind: 'KubeArmorPolicy',
        metadata: { name: 'a', namespace: ns },
        spec: { selector: { matchLabels: { app: 'x' } }, process: { matchPaths: [{ path: '/bin/sh' }] } },
      });
    const r = parsePolicyText(`${doc('a')}---\n${ksp('one')}---\n${ksp('two')}---\n${ksp('one')}`, 'k.yaml');
    expect(r.policies).toHaveLength(3);
    expect(lines(r)).toEqual([
      'k.yaml: document 4: metadata.name: duplicate KubeArmorPolicy name "a" (already defined in document 2); this one is refused',
    ]);
  });

  test('a text without documents is reported', () => {
    expect(lines(parsePolicyText('', 'e.yaml'))).toEqual(['e.yaml: contains no policy documents']);
    expect(lines(parsePolicyText('# only a comment\n', 'e.yaml'))).toEqual(['e.yaml: contains no policy documents']);
  });

  test('a flood of bad documents is reported as the first 100 errors and a count', () => {
    const r = parsePolicyText('---\n' + '[]\n---\n'.repeat(250) + basePolicyText(), 'flood.yaml');
    expect(r.policies).toHaveLength(1);
    expect(r.errors).toHaveLength(MAX_ERRORS_PER_FILE + 1);
    expect(lines(r)[0]).toBe('flood.yaml: document 1: must be a mapping (a policy object), not a list');
    expect(lines(r)[MAX_ERRORS_PER_FILE]).toBe('flood.yaml: 150 more errors not shown');
  });

  test('an alias bomb is refused without expanding it', () => {
    let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
    for (let i = 1; i < 9; i++) text += `a${i}: &a${i} [*a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}]\n`;
    const started = Date.now();
    const r = parsePolicyText(text, 'bomb.yaml');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(lines(r)).toEqual(['bomb.yaml: document 1: is too large: more than 200000 values (counting YAML alias expansions)']);
  });

  test('hostile nesting is refused, not a crash', () => {
    const text = basePolicyText() + 'extra: ' + '['.repeat(5000) + ']'.repeat(5000) + '\n';
    const r = parsePolicyText(text, 'deep.yaml');
    expect(r.policies).toEqual([]);
    expect(lines(r)[0]).toMatch(/^deep\.yaml: document 1: invalid YAML at line \d+, column \d+: nesting exceeded maxDepth/);
  });
});

describe('files and directories', () => {
  const write = (name: string, text: string | Buffer) => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, text);
    return p;
  };

  test('only *.yaml / *.yml files directly in the directory are read', () => {
    write('a.yaml', basePolicyText().replace('name: base', 'name: a'));
    write('b.yml', basePolicyText().replace('name: base', 'name: b'));
    write('README.md', 'not yaml: [');
    write('c.json', '{');
    write('d.yaml.bak', 'not: [valid');
    write('.hidden.yaml', 'not: [valid');
    fs.mkdirSync(path.join(tmp, 'sub'));
    fs.writeFileSync(path.join(tmp, 'sub', 'e.yaml'), 'not: [valid');
    fs.mkdirSync(path.join(tmp, 'dir.yaml'));
    const r = loadPolicyDirectory(tmp);
    expect(lines(r)).toEqual([]);
    expect(r.policies.map((p) => p.name)).toEqual(['a', 'b']);
  });

  test('Kubernetes ConfigMap layout (..data symlinks) loads each policy once', () => {
    fs.mkdirSync(path.join(tmp, '..2024_01_01'));
    fs.writeFileSync(path.join(tmp, '..2024_01_01', 'p.yaml'), basePolicyText());
    fs.symlinkSync('..2024_01_01', path.join(tmp, '..data'));
    fs.symlinkSync(path.join('..data', 'p.yaml'), path.join(tmp, 'p.yaml'));
    const r = loadPolicyDirectory(tmp);
    expect(lines(r)).toEqual([]);
    expect(r.policies).toHaveLength(1);
  });

  test('one bad file does not stop the others', () => {
    write('1.yaml', 'kind: [');
    write('2.yaml', basePolicyText());
    const r = loadPolicyDirectory(tmp);
    expect(r.policies.map((p) => p.name)).toEqual(['base']);
    expect(lines(r)[0]).toMatch(new RegExp(`^${path.join(tmp, '1.yaml')}: document 1: invalid YAML at line 2, column 1: `));
  });

  test('duplicate names across files: the later file (by name) is refused, the first loads', () => {
    const a = write('a.yaml', basePolicyText());
    const b = write('b.yaml', basePolicyText());
    const r = loadPolicyDirectory(tmp);
    expect(r.policies.map((p) => p.source)).toEqual([a]);
    expect(lines(r)).toEqual([
      `${b}: document 1: metadata.name: duplicate KubeArmorHostPolicy name "base" (already defined in ${a} document 1); this one is refused`,
    ]);
  });

  test('a file over the size limit is refused unread', () => {
    const big = write('big.yaml', Buffer.alloc(MAX_POLICY_FILE_BYTES + 1, 0x20));
    expect(lines(loadPolicyFile(big))).toEqual([
      `${big}: is too large (${MAX_POLICY_FILE_BYTES + 1} bytes; the limit is ${MAX_POLICY_FILE_BYTES} bytes)`,
    ]);
    write('ok.yaml', basePolicyText());
    const r = loadPolicyDirectory(tmp);
    expect(r.policies).toHaveLength(1);
    expect(r.errors).toHaveLength(1);
  });

  test('a file of exactly the limit is read', () => {
    const text = basePolicyText();
    const p = write('edge.yaml', text + ' '.repeat(MAX_POLICY_FILE_BYTES - Buffer.byteLength(text)));
    const r = loadPolicyFile(p);
    expect(lines(r)).toEqual([]);
    expect(r.policies).toHaveLength(1);
  });

  test('a missing file, a broken symlink, a FIFO and a directory are reported, not thrown', () => {
    const missing = path.join(tmp, 'missing.yaml');
    expect(lines(loadPolicyFile(missing))).toEqual([`${missing}: cannot read file (ENOENT: no such file or directory, open '${missing}')`]);
    fs.symlinkSync(path.join(tmp, 'nowhere'), path.join(tmp, 'broken.yaml'));
    execFileSync('mkfifo', [path.join(tmp, 'fifo.yaml')]);
    const r = loadPolicyDirectory(tmp);
    expect(lines(r)).toEqual([
      `${path.join(tmp, 'broken.yaml')}: cannot read file (ENOENT: no such file or directory, open '${path.join(tmp, 'broken.yaml')}')`,
      `${path.join(tmp, 'fifo.yaml')}: is not a regular file`,
    ]);
    expect(lines(loadPolicyFile(tmp))).toEqual([`${tmp}: is a directory, not a file`]);
  });

  test('an unreadable file is reported (EACCES)', () => {
    const p = write('secret.yaml', basePolicyText());
    fs.chmodSync(p, 0o000);
    const expected = [{ file: p, documentIndex: null, path: '', message: `cannot read file (EACCES: permission denied, open '${p}')` }];
    if (process.getuid && process.getuid() !== 0) {
      expect(loadPolicyFile(p).errors).toEqual(expected);
      return;
    }
    // Root reads anything: load the file in a child without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH.
    const repo = path.join(__dirname, '..', '..');
    const script = [
      "const ts=require('typescript'),fs=require('fs');",
      "require.extensions['.ts']=(m,f)=>m._compile(ts.transpileModule(fs.readFileSync(f,'utf8'),{compilerOptions:{module:ts.ModuleKind.CommonJS,esModuleInterop:true,target:ts.ScriptTarget.ES2022}}).outputText,f);",
      `const l=require('./agent/src/policy/loader.ts');process.stdout.write(JSON.stringify(l.loadPolicyFile(${JSON.stringify(p)}).errors));`,
    ].join('');
    const drop = '-dac_override,-dac_read_search';
    const out = execFileSync('setpriv', ['--bounding-set', drop, '--inh-caps', drop, process.execPath, '-e', script], {
      cwd: repo,
      encoding: 'utf8',
    });
    expect(JSON.parse(out)).toEqual(expected);
  });

  test('a missing directory is reported', () => {
    const d = path.join(tmp, 'nope');
    expect(lines(loadPolicyDirectory(d))).toEqual([`${d}: cannot read policy directory (ENOENT: no such file or directory, scandir '${d}')`]);
  });

  test('a file that is not UTF-8 is refused', () => {
    const p = write('latin1.yaml', Buffer.from([0x6b, 0x3a, 0x20, 0xe9, 0x0a]));
    expect(lines(loadPolicyFile(p))).toEqual([`${p}: is not valid UTF-8 text`]);
  });
});

// ---------------------------------------------------------------------------
// Malformed policies: each is refused with a message naming the field.

type Mutation = (p: Record<string, any>) => void;
type Case = [string, Mutation | string, string, string | RegExp];

const longName = 'a'.repeat(254);
const containerPolicy = (): Record<string, any> => ({
  apiVersion: 'security.kubearmor.com/v1',
  kind: 'KubeArmorPolicy',
  metadata: { name: 'ksp', namespace: 'default' },
  spec: { selector: { matchLabels: { app: 'x' } }, process: { matchPaths: [{ path: '/bin/sh' }] } },
});

const MALFORMED: Case[] = [
  ['wrong apiVersion', (p) => (p.apiVersion = 'security.kubearmor.com/v2'), 'apiVersion', 'must be "security.kubearmor.com/v1" (got "security.kubearmor.com/v2")'],
  ['old accuknox apiVersion', (p) => (p.apiVersion = 'security.accuknox.com/v1'), 'apiVersion', 'must be "security.kubearmor.com/v1"'],
  ['missing apiVersion', (p) => delete p.apiVersion, 'apiVersion', 'is required'],
  ['wrong kind', (p) => (p.kind = 'KubeArmorHostPolicyy'), 'kind', 'must be one of "KubeArmorHostPolicy", "KubeArmorPolicy" (got "KubeArmorHostPolicyy")'],
  ['cluster policy kind', (p) => (p.kind = 'KubeArmorClusterPolicy'), 'kind', 'must be one of'],
  ['missing kind', (p) => delete p.kind, 'kind', 'is required'],
  ['missing metadata', (p) => delete p.metadata, 'metadata', 'is required'],
  ['missing name', (p) => (p.metadata = {}), 'metadata.name', 'is required'],
  ['uppercase name', (p) => (p.metadata.name = 'Block-Sleep'), 'metadata.name', 'must be a DNS-1123 name'],
  ['name with underscore', (p) => (p.metadata.name = 'block_sleep'), 'metadata.name', 'must be a DNS-1123 name'],
  ['name too long', (p) => (p.metadata.name = longName), 'metadata.name', 'must be at most 253 characters'],
  ['numeric name', (p) => (p.metadata.name = 42), 'metadata.name', 'must be a string, not an integer (quote the value in YAML)'],
  ['typo in metadata', (p) => (p.metadata = { nmae: 'x' }), 'metadata.nmae', 'unknown field (did you mean "name"?)'],
  ['invalid namespace', (p) => (p.metadata.namespace = 'Bad_NS'), 'metadata.namespace', 'must be a DNS-1123 label'],
  ['missing spec', (p) => delete p.spec, 'spec', 'is required'],
  ['spec is a list', (p) => (p.spec = [1]), 'spec', 'must be a mapping, not a list'],
  ['missing nodeSelector', (p) => delete p.spec.nodeSelector, 'spec.nodeSelector', 'is required'],
  ['nodeSelector without matchLabels', (p) => (p.spec.nodeSelector = {}), 'spec.nodeSelector.matchLabels', 'is required'],
  ['empty matchLabels', (p) => (p.spec.nodeSelector.matchLabels = {}), 'spec.nodeSelector.matchLabels', 'must not be empty'],
  ['unquoted numeric label', (p) => (p.spec.nodeSelector.matchLabels = { rack: 7 }), 'spec.nodeSelector.matchLabels.rack', 'must be a string, not an integer (quote the value in YAML)'],
  ['container selector on a host policy', (p) => (p.spec.selector = { matchLabels: { a: 'b' } }), 'spec.selector', 'unknown field'],
  ['severity 0', (p) => (p.spec.severity = 0), 'spec.severity', 'must be an integer from 1 to 10 (got 0)'],
  ['severity 11', (p) => (p.spec.severity = 11), 'spec.severity', 'must be an integer from 1 to 10 (got 11)'],
  ['severity as string', (p) => (p.spec.severity = '5'), 'spec.severity', 'must be an integer, not a string'],
  ['fractional severity', (p) => (p.spec.severity = 2.5), 'spec.severity', 'must be an integer, not a number'],
  ['tags as string', (p) => (p.spec.tags = 'MITRE'), 'spec.tags', 'must be a list, not a string'],
  ['numeric tag', (p) => (p.spec.tags = [1]), 'spec.tags[0]', 'must be a string, not an integer'],
  ['message as list', (p) => (p.spec.message = ['a']), 'spec.message', 'must be a string, not a list'],
  ['unknown action', (p) => (p.spec.action = 'Deny'), 'spec.action', 'must be one of "Allow", "Audit", "Block" (got "Deny")'],
  ['lowercase action', (p) => (p.spec.action = 'block'), 'spec.action', 'must be one of "Allow", "Audit", "Block" (got "block")'],
  ['unknown top-level field', (p) => (p.specs = p.spec), 'specs', 'unknown field (did you mean "spec"?)'],
  ['typo in spec', (p) => (p.spec.proccess = p.spec.process), 'spec.proccess', 'unknown field (did you mean "process"?)'],
  ['typo matchPath', (p) => (p.spec.file = { matchPath: [{ path: '/etc/x' }] }), 'spec.file.matchPath', 'unknown field (did you mean "matchPaths"?)'],
  ['process is a string', (p) => (p.spec.process = '/bin/sh'), 'spec.process', 'must be a mapping, not a string'],
  ['empty process section', (p) => (p.spec.process = {}), 'spec.process', 'must contain at least one of matchPaths, matchDirectories, matchPatterns'],
  ['empty matchPaths list', (p) => (p.spec.process.matchPaths = []), 'spec.process.matchPaths', 'must not be an empty list'],
  ['process rule without path', (p) => (p.spec.process.matchPaths = [{ ownerOnly: true }]), 'spec.process.matchPaths[0].path', 'is required (or execname)'],
  ['relative process path', (p) => (p.spec.process.matchPaths[0].path = 'bin/sleep'), 'spec.process.matchPaths[0].path', 'must be an absolute path'],
  ['process path ending in /', (p) => (p.spec.process.matchPaths[0].path = '/usr/bin/'), 'spec.process.matchPaths[0].path', "must not end with '/'"],
  ['path and execname', (p) => (p.spec.process.matchPaths[0].execname = 'sleep'), 'spec.process.matchPaths[0]', 'must have either path or execname, not both'],
  ['execname with a slash', (p) => (p.spec.process.matchPaths = [{ execname: 'bin/sleep' }]), 'spec.process.matchPaths[0].execname', "must be an executable name without '/'"],
  ['readOnly on a process rule', (p) => (p.spec.process.matchPaths[0].readOnly = true), 'spec.process.matchPaths[0].readOnly', 'unknown field'],
  ['ownerOnly as "yes"', (p) => (p.spec.process.matchPaths[0].ownerOnly = 'yes'), 'spec.process.matchPaths[0].ownerOnly', 'must be a boolean, not a string'],
  ['process dir without trailing /', (p) => (p.spec.process.matchDirectories = [{ dir: '/tmp' }]), 'spec.process.matchDirectories[0].dir', "must end with '/'"],
  ['relative process dir', (p) => (p.spec.process.matchDirectories = [{ dir: 'tmp/' }]), 'spec.process.matchDirectories[0].dir', 'must be an absolute path'],
  ['process dir rule without dir', (p) => (p.spec.process.matchDirectories = [{ recursive: true }]), 'spec.process.matchDirectories[0].dir', 'is required'],
  ['recursive as string', (p) => (p.spec.process.matchDirectories = [{ dir: '/tmp/', recursive: 'true' }]), 'spec.process.matchDirectories[0].recursive', 'must be a boolean, not a string'],
  ['relative file path', (p) => (p.spec.file.matchPaths[0].path = 'etc/shadow'), 'spec.file.matchPaths[0].path', 'must be an absolute path'],
  ['readOnly as number', (p) => (p.spec.file.matchPaths[0].readOnly = 1), 'spec.file.matchPaths[0].readOnly', 'must be a boolean, not an integer'],
  ['file dir without trailing /', (p) => (p.spec.file.matchDirectories[0].dir = '/etc'), 'spec.file.matchDirectories[0].dir', "must end with '/' (it names a directory)"],
  ['path with ..', (p) => (p.spec.file.matchPaths[0].path = '/etc/../etc/shadow'), 'spec.file.matchPaths[0].path', "must be a normalized path (no '//', '.' or '..' components)"],
  ['path with //', (p) => (p.spec.file.matchPaths[0].path = '/etc//shadow'), 'spec.file.matchPaths[0].path', 'must be a normalized path'],
  ['dir with /./', (p) => (p.spec.file.matchDirectories[0].dir = '/etc/./ssh/'), 'spec.file.matchDirectories[0].dir', 'must be a normalized path'],
  ['path with a newline', (p) => (p.spec.file.matchPaths[0].path = '/etc/sha\ndow'), 'spec.file.matchPaths[0].path', 'contains a control character at position 8'],
  ['path longer than PATH_MAX', (p) => (p.spec.file.matchPaths[0].path = '/' + 'a/'.repeat(2048) + 'b'), 'spec.file.matchPaths[0].path', 'is longer than PATH_MAX (4095 bytes)'],
  ['empty fromSource', (p) => (p.spec.file.matchPaths[0].fromSource = []), 'spec.file.matchPaths[0].fromSource', 'must not be an empty list'],
  ['fromSource entry without path or dir', (p) => (p.spec.file.matchPaths[0].fromSource = [{}]), 'spec.file.matchPaths[0].fromSource[0]', 'must have path or dir'],
  ['fromSource with path and dir', (p) => (p.spec.file.matchPaths[0].fromSource = [{ path: '/bin/a', dir: '/bin/' }]), 'spec.file.matchPaths[0].fromSource[0]', 'must have either path or dir, not both'],
  ['relative fromSource path', (p) => (p.spec.file.matchPaths[0].fromSource = [{ path: 'bash' }]), 'spec.file.matchPaths[0].fromSource[0].path', 'must be an absolute path'],
  ['recursive without dir in fromSource', (p) => (p.spec.file.matchPaths[0].fromSource = [{ path: '/bin/a', recursive: true }]), 'spec.file.matchPaths[0].fromSource[0].recursive', 'only applies to dir'],
  ['fromSource as a mapping', (p) => (p.spec.file.matchPaths[0].fromSource = { path: '/bin/bash' }), 'spec.file.matchPaths[0].fromSource', 'must be a list, not a mapping'],
  ['typo in fromSource entry', (p) => (p.spec.file.matchPaths[0].fromSource = [{ pth: '/bin/bash' }]), 'spec.file.matchPaths[0].fromSource[0].pth', 'unknown field (did you mean "path"?)'],
  ['empty pattern', (p) => (p.spec.file.matchPatterns = [{ pattern: '' }]), 'spec.file.matchPatterns[0].pattern', 'must not be empty'],
  ['unknown protocol', (p) => (p.spec.network.matchProtocols[0].protocol = 'tcpx'), 'spec.network.matchProtocols[0].protocol', 'unknown protocol "tcpx"'],
  ['protocol list with a bad entry', (p) => (p.spec.network.matchProtocols[0].protocol = 'tcp,http'), 'spec.network.matchProtocols[0].protocol', 'unknown protocol "tcp,http"'],
  ['host network rule without fromSource', (p) => delete p.spec.network.matchProtocols[0].fromSource, 'spec.network.matchProtocols[0].fromSource', 'is required'],
  ['network rule without protocol', (p) => delete p.spec.network.matchProtocols[0].protocol, 'spec.network.matchProtocols[0].protocol', 'is required'],
  ['matchProtocols as a string', (p) => (p.spec.network.matchProtocols = 'tcp'), 'spec.network.matchProtocols', 'must be a list, not a string'],
  ['unknown capability', (p) => (p.spec.capabilities = { matchCapabilities: [{ capability: 'net_rawx', fromSource: [] }] }), 'spec.capabilities.matchCapabilities[0].capability', 'unknown capability "net_rawx"'],
  ['bad syscall name', (p) => (p.spec.syscalls = { matchSyscalls: [{ syscall: ['Open!'] }] }), 'spec.syscalls.matchSyscalls[0].syscall[0]', 'invalid system call name "Open!"'],
  ['action on syscalls (KubeArmor only audits them)', (p) => (p.spec.syscalls = { action: 'Block', matchSyscalls: [{ syscall: ['unlink'] }] }), 'spec.syscalls.action', 'unknown field'],
  ['no rules at all', (p) => (p.spec = { nodeSelector: p.spec.nodeSelector, severity: 3 }), 'spec', 'defines no rules: add process, file, network, capabilities or syscalls'],
  ['rule severity 0', (p) => (p.spec.file.matchPaths[0].severity = 0), 'spec.file.matchPaths[0].severity', 'must be an integer from 1 to 10 (got 0)'],
  ['rule action typo', (p) => (p.spec.file.matchPaths[0].action = 'Allowed'), 'spec.file.matchPaths[0].action', 'must be one of "Allow", "Audit", "Block" (got "Allowed")'],
  ['section tags not a list', (p) => (p.spec.process.tags = 'x'), 'spec.process.tags', 'must be a list, not a string'],
  ['section action typo', (p) => (p.spec.network.action = 'audit'), 'spec.network.action', 'must be one of'],
  ['invalid YAML', 'apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata: {name: x\n', '', /invalid YAML at line \d+, column \d+: /],
  ['tab indentation', 'apiVersion: v1\nspec:\n\tprocess: {}\n', '', /invalid YAML at line 3, column \d+: /],
  ['empty document', '---\n---\n', '', 'empty document'],
  ['document of comments only between separators', '---\n# nothing\n---\n', '', 'empty document'],
  ['a list document', '- apiVersion: security.kubearmor.com/v1\n', '', 'must be a mapping (a policy object), not a list'],
  ['a scalar document', 'KubeArmorHostPolicy\n', '', 'must be a mapping (a policy object), not a string'],
  ['a number document', '42\n', '', 'must be a mapping (a policy object), not an integer'],
  ['deep nesting', 'spec: ' + '{a: '.repeat(200) + '1' + '}'.repeat(200) + '\n', '', /nesting exceeded maxDepth/],
  ['KubeArmorPolicy without selector', containerPolicyText((p) => delete p.spec.selector), 'spec.selector', 'is required'],
  ['KubeArmorPolicy with nodeSelector', containerPolicyText((p) => (p.spec.nodeSelector = { matchLabels: { a: 'b' } })), 'spec.nodeSelector', 'unknown field'],
  ['KubeArmorPolicy with a bad operator', containerPolicyText((p) => (p.spec.selector = { matchExpressions: [{ key: 'label', operator: 'Exists', values: ['a=b'] }] })), 'spec.selector.matchExpressions[0].operator', 'must be one of "In", "NotIn" (got "Exists")'],
  ['KubeArmorPolicy with a bad status', containerPolicyText((p) => (p.spec.status = 'On')), 'spec.status', 'must be one of "Active", "Inactive" (got "On")'],
];

function containerPolicyText(mutate: Mutation): string {
  const p = containerPolicy();
  mutate(p);
  return yaml.dump(p);
}

describe('malformed policies are refused with the field named', () => {
  test('there are at least 50 cases', () => {
    expect(MALFORMED.length).toBeGreaterThanOrEqual(50);
  });

  test.each(MALFORMED)('%s', (_title, mutate, field, message) => {
    let text: string;
    if (typeof mutate === 'string') {
      text = mutate;
    } else {
      const p = basePolicy();
      mutate(p);
      text = yaml.dump(p);
    }
    const r = parsePolicyText(text, 'bad.yaml');
    expect(r.policies).toEqual([]);
    expect(r.errors.length).toBeGreaterThan(0);
    const hit = r.errors.find(
      (e) => e.path === field && (typeof message === 'string' ? e.message.startsWith(message) : message.test(e.message)),
    );
    if (!hit) throw new Error(`no error for ${field || '(document)'} matching ${message}; got:\n${lines(r).join('\n')}`);
    expect(formatPolicyError(hit)).toBe(`bad.yaml: document ${hit.documentIndex! + 1}: ${field ? `${field}: ` : ''}${hit.message}`);
  });
});

describe('accepted variants', () => {
  const ok = (mutate: Mutation) => {
    const p = basePolicy();
    mutate(p);
    const r = parsePolicyText(yaml.dump(p), 'ok.yaml');
    expect(lines(r)).toEqual([]);
    return r.policies[0];
  };

  test('protocols in any case and as comma-separated lists', () => {
    for (const protocol of ['TCP', 'Udp', 'icmpv6', 'ICMPv6', 'raw', 'all', 'ALL', 'tcp,udp', 'tcp, UDP ,icmp']) {
      ok((p) => (p.spec.network.matchProtocols[0].protocol = protocol));
    }
  });

  test('the root directory, fromSource dir entries and execname are valid KubeArmor', () => {
    ok((p) => (p.spec.file.matchDirectories[0].dir = '/'));
    ok((p) => (p.spec.file.matchPaths[0].fromSource = [{ dir: '/usr/bin/', recursive: true }, { path: '/bin/cat' }]));
    ok((p) => (p.spec.process.matchPaths = [{ execname: 'apt' }]));
  });

  test('a path of exactly PATH_MAX bytes (4095) is accepted', () => {
    const long = '/' + 'a'.repeat(4094);
    expect(Buffer.byteLength(long)).toBe(4095);
    ok((p) => (p.spec.file.matchPaths[0].path = long));
  });

  test('host network rules may name an empty fromSource (any process), as the KubeArmor CRD allows', () => {
    ok((p) => (p.spec.network.matchProtocols[0].fromSource = []));
  });

  test('metadata labels, annotations and a namespace are accepted', () => {
    const pol = ok((p) => (p.metadata = { name: 'x', namespace: 'ns', labels: { a: 'b' }, annotations: { c: 'd' } }));
    expect(pol.namespace).toBe('ns');
  });

  test('capabilities and syscalls sections load (the compiler decides what it supports)', () => {
    ok((p) => (p.spec.capabilities = { matchCapabilities: [{ capability: 'net_raw, sys_admin', fromSource: [{ path: '/bin/ping' }] }] }));
    ok((p) => (p.spec.syscalls = { severity: 2, matchSyscalls: [{ syscall: ['unlink', 'rmdir'], fromSource: [{ dir: '/tmp/', recursive: true }] }], matchPaths: [{ path: '/etc/', recursive: true, syscall: ['unlink'] }] }));
  });
});

describe('symlinked policy paths (warnings)', () => {
  const fakeRealpath = (links: Record<string, string>, existing: string[]) => (p: string) => {
    for (const [from, to] of Object.entries(links)) {
      if (p === from || p.startsWith(from + '/')) p = to + p.slice(from.length);
    }
    if (p !== '/' && !existing.some((e) => e === p || e.startsWith(p + '/'))) {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    }
    return p;
  };

  test('resolveExistingPrefix resolves the existing ancestor and keeps the rest', () => {
    const rp = fakeRealpath({ '/bin': '/usr/bin', '/lib': '/usr/lib' }, ['/usr/bin/sleep', '/usr/lib/x86_64-linux-gnu', '/etc']);
    expect(resolveExistingPrefix('/bin/sleep', rp)).toBe('/usr/bin/sleep');
    expect(resolveExistingPrefix('/bin/not-installed', rp)).toBe('/usr/bin/not-installed');
    expect(resolveExistingPrefix('/lib/x86_64-linux-gnu/', rp)).toBe('/usr/lib/x86_64-linux-gnu/');
    expect(resolveExistingPrefix('/etc/ld.so.preload', rp)).toBe('/etc/ld.so.preload');
    expect(resolveExistingPrefix('/nowhere/at/all', rp)).toBe('/nowhere/at/all');
    expect(resolveExistingPrefix('/', rp)).toBe('/');
  });

  test('rules and fromSource entries through a symlink are reported with the field', () => {
    const rp = fakeRealpath({ '/bin': '/usr/bin' }, ['/usr/bin/bash', '/usr/bin/date', '/etc/x']);
    const r = loadPolicyFile(path.join(FIXTURES, 'hsp-kubearmor-dev-proc-path-allow-fromSource.yaml'));
    const w = symlinkedPathWarnings(r.policies, rp).map(formatPolicyError);
    const f = path.join(FIXTURES, 'hsp-kubearmor-dev-proc-path-allow-fromSource.yaml');
    expect(w).toEqual([
      `${f}: document 1: spec.process.matchPaths[0].path: /bin/date resolves to /usr/bin/date on this node; the kernel reports resolved paths, so this rule never matches as written (use /usr/bin/date)`,
      `${f}: document 1: spec.process.matchPaths[0].fromSource[0].path: /bin/bash resolves to /usr/bin/bash on this node; the kernel reports resolved paths, so this rule never matches as written (use /usr/bin/bash)`,
    ]);
  });

  test('real symlinks on disk are found', () => {
    fs.mkdirSync(path.join(tmp, 'real'));
    fs.writeFileSync(path.join(tmp, 'real', 'tool'), '');
    fs.symlinkSync(path.join(tmp, 'real'), path.join(tmp, 'link'));
    const realTmp = fs.realpathSync(tmp);
    const p = basePolicy();
    p.spec.process.matchPaths[0].path = path.join(realTmp, 'link', 'tool');
    p.spec.file.matchDirectories[0].dir = path.join(realTmp, 'link') + '/';
    p.spec.file.matchPaths[0].path = path.join(realTmp, 'real', 'tool');
    const r = parsePolicyText(yaml.dump(p), 's.yaml');
    expect(r.errors).toEqual([]);
    expect(symlinkedPathWarnings(r.policies).map((e) => [e.path, e.message.split(' on this node')[0]])).toEqual([
      ['spec.process.matchPaths[0].path', `${path.join(realTmp, 'link', 'tool')} resolves to ${path.join(realTmp, 'real', 'tool')}`],
      ['spec.file.matchDirectories[0].dir', `${path.join(realTmp, 'link')}/ resolves to ${path.join(realTmp, 'real')}/`],
    ]);
  });

  test('the bundled defaults name no symlinked paths on this Debian node', () => {
    const r = loadPolicyDirectory(path.join(__dirname, '..', '..', 'policies', 'default'));
    expect(symlinkedPathWarnings(r.policies).map(formatPolicyError)).toEqual([]);
  });
});
