// Reads KubeArmor policy YAML (KubeArmorHostPolicy / KubeArmorPolicy,
// security.kubearmor.com/v1) and returns validated policy objects.
//
// Bad input never throws: every problem becomes a PolicyError naming the
// file, the document and the field. A document that fails is refused as a
// whole; the other documents and files still load.

import * as fs from 'fs';
import * as path from 'path';
import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import * as yaml from 'js-yaml';
import policySchema from '../../../policies/kubearmor-policy.schema.json';
import { globProblem } from './glob';

// ---------------------------------------------------------------------------
// Document shapes (what the schema admits)

export type PolicyKind = 'KubeArmorHostPolicy' | 'KubeArmorPolicy';
export type PolicyAction = 'Allow' | 'Audit' | 'Block';

/** severity/tags/message/action: allowed on the spec, a section and a rule. */
export interface RuleMetaFields {
  severity?: number;
  tags?: string[];
  message?: string;
  action?: PolicyAction;
}

export interface SourceSpec {
  path?: string;
  dir?: string;
  recursive?: boolean;
}

export interface ProcessPathSpec extends RuleMetaFields {
  path?: string;
  execname?: string;
  ownerOnly?: boolean;
  fromSource?: SourceSpec[];
}

export interface ProcessDirectorySpec extends RuleMetaFields {
  dir: string;
  recursive?: boolean;
  ownerOnly?: boolean;
  fromSource?: SourceSpec[];
}

export interface PatternSpec extends RuleMetaFields {
  pattern: string;
  ownerOnly?: boolean;
  readOnly?: boolean;
}

export interface ProcessSpec extends RuleMetaFields {
  matchPaths?: ProcessPathSpec[];
  matchDirectories?: ProcessDirectorySpec[];
  matchPatterns?: PatternSpec[];
}

export interface FilePathSpec extends RuleMetaFields {
  path: string;
  readOnly?: boolean;
  ownerOnly?: boolean;
  fromSource?: SourceSpec[];
}

export interface FileDirectorySpec extends RuleMetaFields {
  dir: string;
  recursive?: boolean;
  readOnly?: boolean;
  ownerOnly?: boolean;
  fromSource?: SourceSpec[];
}

export interface FileSpec extends RuleMetaFields {
  matchPaths?: FilePathSpec[];
  matchDirectories?: FileDirectorySpec[];
  matchPatterns?: PatternSpec[];
}

export interface ProtocolSpec extends RuleMetaFields {
  /** one protocol or a comma-separated list, any case */
  protocol: string;
  fromSource?: SourceSpec[];
}

export interface NetworkSpec extends RuleMetaFields {
  matchProtocols?: ProtocolSpec[];
}

export interface CapabilitySpec extends RuleMetaFields {
  capability: string;
  fromSource?: SourceSpec[];
}

export interface CapabilitiesSpec extends RuleMetaFields {
  matchCapabilities?: CapabilitySpec[];
}

export interface SyscallMatchSpec {
  syscall: string[];
  fromSource?: SourceSpec[];
  severity?: number;
  tags?: string[];
  message?: string;
}

export interface SyscallPathSpec extends SyscallMatchSpec {
  path: string;
  recursive?: boolean;
}

export interface SyscallsSpec {
  matchSyscalls?: SyscallMatchSpec[];
  matchPaths?: SyscallPathSpec[];
  severity?: number;
  tags?: string[];
  message?: string;
}

export interface MatchExpressionSpec {
  key: 'label';
  operator: 'In' | 'NotIn';
  values: string[];
}

export interface PolicySpec extends RuleMetaFields {
  /** KubeArmorHostPolicy only */
  nodeSelector?: { matchLabels: Record<string, string> };
  /** KubeArmorPolicy only */
  selector?: { matchLabels?: Record<string, string>; matchExpressions?: MatchExpressionSpec[] };
  process?: ProcessSpec;
  file?: FileSpec;
  network?: NetworkSpec;
  capabilities?: CapabilitiesSpec;
  syscalls?: SyscallsSpec;
  apparmor?: string;
  /** KubeArmorPolicy only */
  status?: 'Active' | 'Inactive';
}

export interface PolicyDocument {
  apiVersion: 'security.kubearmor.com/v1';
  kind: PolicyKind;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: PolicySpec;
}

/** A policy that passed validation. */
export interface LoadedPolicy {
  kind: PolicyKind;
  name: string;
  namespace?: string;
  spec: PolicySpec;
  /** the file (or source name) it came from */
  source: string;
  /** 0-based index of the document in that file */
  documentIndex: number;
  /** 1-based line where the document starts */
  line: number;
}

export interface PolicyError {
  file: string;
  /** 0-based document index; null when the error concerns the whole file */
  documentIndex: number | null;
  /** dotted field path (spec.file.matchPaths[0].path); '' for the whole document or file */
  path: string;
  message: string;
  /** 1-based line, when known (YAML syntax errors, document start) */
  line?: number;
}

export interface LoadResult {
  policies: LoadedPolicy[];
  errors: PolicyError[];
}

// ---------------------------------------------------------------------------
// Limits

/** Files above this size are refused unread. */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024;
/** Linux PATH_MAX is 4096 including the terminating NUL. */
export const MAX_PATH_BYTES = 4095;
/** YAML nesting depth; policies need about 8. */
const MAX_YAML_DEPTH = 64;
/** Values visited per document, counting each alias use again (alias bombs). */
const MAX_DOCUMENT_NODES = 200_000;
/** Errors reported per file; the rest are counted. */
export const MAX_ERRORS_PER_FILE = 100;

// ---------------------------------------------------------------------------
// Formatting

/** One line: `file: document 2: spec.file.matchPaths[0].path: must be an absolute path`. */
export function formatPolicyError(e: PolicyError): string {
  const parts = [e.file];
  if (e.documentIndex !== null) parts.push(`document ${e.documentIndex + 1}`);
  if (e.path) parts.push(e.path);
  parts.push(e.message);
  return parts.join(': ');
}

/** Dotted path from JSON-pointer segments: spec.file.matchPaths[0].path, matchLabels["kubernetes.io/hostname"]. */
export function fieldPath(segments: ReadonlyArray<string | number>): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(s)) out += out ? `.${s}` : s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Schema validation

let validator: ValidateFunction | undefined;
function validate(): ValidateFunction {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, strict: true, verbose: true });
    validator = ajv.compile(policySchema);
  }
  return validator;
}

function pointerSegments(pointer: string, root: unknown): Array<string | number> {
  if (!pointer) return [];
  const out: Array<string | number> = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      const i = Number(seg);
      out.push(i);
      node = node[i];
    } else {
      out.push(seg);
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

/** How a YAML value's type reads in an error message ("a list", "an integer"). */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  return `a ${typeof v}`;
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

/** "did you mean" for an unknown key, from the keys the schema allows there. */
export function suggestKey(key: string, allowed: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  const prefixed = allowed.filter((k) => lower.length >= 3 && k.toLowerCase().startsWith(lower));
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestDist = Infinity;
  for (const k of allowed) {
    const d = levenshtein(key, k);
    if (d < bestDist) {
      best = k;
      bestDist = d;
    }
  }
  return best !== undefined && bestDist <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

const PROTOCOL_NAMES = 'tcp, udp, icmp, icmpv6, raw, all (KubeArmor also names sctp, stream, dgram, rdm, seqpacket, dccp, packet)';

/**
 * Which named schema an error comes from, found by object identity (ajv
 * inlines small $refs, so schemaPath alone does not tell).
 */
let schemaNames: Map<unknown, string> | undefined;
function schemaName(e: ErrorObject): string | undefined {
  if (!schemaNames) {
    schemaNames = new Map();
    const defs = (policySchema as { definitions: Record<string, { properties?: Record<string, unknown> }> }).definitions;
    for (const [name, def] of Object.entries(defs)) schemaNames.set(def, name);
    schemaNames.set(defs.metadata.properties?.name, 'metadataName');
    schemaNames.set(defs.metadata.properties?.namespace, 'metadataNamespace');
  }
  return schemaNames.get(e.parentSchema) ?? /#\/definitions\/([A-Za-z]+)\/[a-zA-Z]+$/.exec(e.schemaPath)?.[1];
}

function describeAjvError(e: ErrorObject): string {
  const def = schemaName(e);
  const value = e.data;
  switch (e.keyword) {
    case 'type': {
      const want = String(e.params.type);
      const article = /^[aeiou]/.test(want) ? 'an' : 'a';
      const wanted = want === 'object' ? 'a mapping' : want === 'array' ? 'a list' : `${article} ${want}`;
      const hint = want === 'string' && value !== null && typeof value !== 'object' ? ' (quote the value in YAML)' : '';
      return `must be ${wanted}, not ${typeName(value)}${hint}`;
    }
    case 'const':
      return `must be ${JSON.stringify(e.params.allowedValue)}${value !== undefined ? ` (got ${JSON.stringify(value)})` : ''}`;
    case 'enum':
      return `must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')} (got ${JSON.stringify(value)})`;
    case 'minimum':
    case 'maximum':
      return def === 'severity' ? `must be an integer from 1 to 10 (got ${value})` : `must be ${e.params.comparison} ${e.params.limit}`;
    case 'minItems':
      return 'must not be an empty list';
    case 'minProperties':
      return 'must not be empty';
    case 'minLength':
      return 'must not be empty';
    case 'maxLength':
      return `must be at most ${e.params.limit} characters`;
    case 'pattern':
      return describePattern(def, value);
    default:
      return e.message ?? 'is invalid';
  }
}

function describePattern(def: string | undefined, value: unknown): string {
  const v = String(value);
  switch (def) {
    case 'filePath':
      if (!v.startsWith('/')) return 'must be an absolute path';
      if (v.endsWith('/')) return "must not end with '/' (directories belong in matchDirectories or dir:)";
      return "must be an absolute path that does not end with '/'";
    case 'dirPath':
      if (!v.startsWith('/')) return 'must be an absolute path';
      if (!v.endsWith('/')) return "must end with '/' (it names a directory)";
      return "must be an absolute directory path ending with '/'";
    case 'anyPath':
      return 'must be an absolute path';
    case 'execName':
      return "must be an executable name without '/' (use path: for a full path)";
    case 'protocol':
      return `unknown protocol ${JSON.stringify(v)}: expected ${PROTOCOL_NAMES}, or a comma-separated list of them`;
    case 'capability':
      return `unknown capability ${JSON.stringify(v)}: expected a Linux capability name such as net_raw or sys_admin`;
    case 'syscallName':
      return `invalid system call name ${JSON.stringify(v)}`;
    case 'metadataName':
      return `must be a DNS-1123 name: lowercase letters, digits, "-" and ".", starting and ending with a letter or digit (got ${JSON.stringify(v)})`;
    case 'metadataNamespace':
      return `must be a DNS-1123 label: lowercase letters, digits and "-", starting and ending with a letter or digit (got ${JSON.stringify(v)})`;
    default:
      return 'has an invalid format';
  }
}

/** Keys the schema allows at the object where an additionalProperties error happened. */
function allowedKeys(e: ErrorObject): string[] {
  const props = (e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties;
  return props ? Object.keys(props) : [];
}

function schemaErrors(doc: unknown, file: string, documentIndex: number, line: number): PolicyError[] {
  const v = validate();
  if (v(doc)) return [];
  const seen = new Set<string>();
  const out: PolicyError[] = [];
  for (const e of v.errors ?? []) {
    if (e.keyword === 'if') continue; // the branch's own errors say what is wrong
    const segs = pointerSegments(e.instancePath, doc);
    let message: string;
    if (e.keyword === 'additionalProperties') {
      const key = String(e.params.additionalProperty);
      segs.push(key);
      const hint = suggestKey(key, allowedKeys(e));
      message = hint ? `unknown field (did you mean "${hint}"?)` : 'unknown field';
    } else if (e.keyword === 'required') {
      segs.push(String(e.params.missingProperty));
      message = 'is required';
    } else {
      message = describeAjvError(e);
    }
    const p = fieldPath(segs);
    const key = `${p}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ file, documentIndex, path: p, message, line });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Checks JSON Schema cannot express

type Issue = { segs: Array<string | number>; message: string };

function checkPath(value: string, segs: Array<string | number>, issues: Issue[]): void {
  if (Buffer.byteLength(value, 'utf8') > MAX_PATH_BYTES) {
    issues.push({ segs, message: `is longer than PATH_MAX (${MAX_PATH_BYTES} bytes)` });
  }
  // eslint-disable-next-line no-control-regex
  const ctrl = /[\x00-\x1f\x7f]/.exec(value);
  if (ctrl) issues.push({ segs, message: `contains a control character at position ${ctrl.index}` });
  // The kernel reports canonical paths, so "/etc/../etc/shadow" would never match: refuse it.
  const parts = value.split('/').slice(1);
  if (value.endsWith('/')) parts.pop();
  if (parts.some((p) => p === '' || p === '.' || p === '..')) {
    issues.push({ segs, message: "must be a normalized path (no '//', '.' or '..' components)" });
  }
}

/** NAME_MAX: an executable name is one directory entry. */
export const MAX_NAME_BYTES = 255;

function checkPattern(value: string, segs: Array<string | number>, issues: Issue[]): void {
  if (Buffer.byteLength(value, 'utf8') > MAX_PATH_BYTES) {
    issues.push({ segs, message: `is longer than PATH_MAX (${MAX_PATH_BYTES} bytes)` });
    return;
  }
  // eslint-disable-next-line no-control-regex
  const ctrl = /[\x00-\x1f\x7f]/.exec(value);
  if (ctrl) {
    issues.push({ segs, message: `contains a control character at position ${ctrl.index}` });
    return;
  }
  const problem = globProblem(value);
  if (problem) {
    issues.push({ segs, message: problem });
    return;
  }
  // As for paths: the kernel reports canonical paths, so "/etc/../x*" would never match.
  if (value.split('/').slice(1, -1).some((p) => p === '' || p === '.' || p === '..') || /\/\.\.?$/.test(value)) {
    issues.push({ segs, message: "must be a normalized path pattern (no '//', '.' or '..' components)" });
  }
}

function checkExecName(value: string, segs: Array<string | number>, issues: Issue[]): void {
  if (Buffer.byteLength(value, 'utf8') > MAX_NAME_BYTES) {
    issues.push({ segs, message: `is longer than NAME_MAX (${MAX_NAME_BYTES} bytes)` });
  }
  // eslint-disable-next-line no-control-regex
  const ctrl = /[\x00-\x1f\x7f]/.exec(value);
  if (ctrl) issues.push({ segs, message: `contains a control character at position ${ctrl.index}` });
  if (value === '.' || value === '..') issues.push({ segs, message: 'must be a file name, not "." or ".."' });
}

function checkSources(list: SourceSpec[] | undefined, base: Array<string | number>, issues: Issue[]): void {
  (list ?? []).forEach((s, i) => {
    const segs = [...base, 'fromSource', i];
    if (s.path !== undefined && s.dir !== undefined) {
      issues.push({ segs, message: 'must have either path or dir, not both' });
    } else if (s.path === undefined && s.dir === undefined) {
      issues.push({ segs, message: 'must have path or dir' });
    }
    if (s.recursive !== undefined && s.dir === undefined) {
      issues.push({ segs: [...segs, 'recursive'], message: 'only applies to dir' });
    }
    if (s.path !== undefined) checkPath(s.path, [...segs, 'path'], issues);
    if (s.dir !== undefined) checkPath(s.dir, [...segs, 'dir'], issues);
  });
}

const SECTION_LISTS: Record<string, string[]> = {
  process: ['matchPaths', 'matchDirectories', 'matchPatterns'],
  file: ['matchPaths', 'matchDirectories', 'matchPatterns'],
  network: ['matchProtocols'],
  capabilities: ['matchCapabilities'],
  syscalls: ['matchSyscalls', 'matchPaths'],
};

function semanticIssues(doc: PolicyDocument): Issue[] {
  const issues: Issue[] = [];
  const spec = doc.spec;
  const record = spec as unknown as Record<string, Record<string, unknown> | undefined>;
  let ruleSections = 0;
  for (const [section, lists] of Object.entries(SECTION_LISTS)) {
    const s = record[section];
    if (s === undefined) continue;
    if (!lists.some((l) => Array.isArray(s[l]) && (s[l] as unknown[]).length > 0)) {
      issues.push({ segs: ['spec', section], message: `must contain at least one of ${lists.join(', ')}` });
    } else {
      ruleSections++;
    }
  }
  if (ruleSections === 0 && spec.apparmor === undefined && !issues.length) {
    issues.push({ segs: ['spec'], message: 'defines no rules: add process, file, network, capabilities or syscalls' });
  }

  spec.process?.matchPaths?.forEach((r, i) => {
    const segs = ['spec', 'process', 'matchPaths', i];
    if (r.path !== undefined && r.execname !== undefined) {
      issues.push({ segs, message: 'must have either path or execname, not both' });
    } else if (r.path === undefined && r.execname === undefined) {
      issues.push({ segs: [...segs, 'path'], message: 'is required (or execname)' });
    }
    if (r.path !== undefined) checkPath(r.path, [...segs, 'path'], issues);
    if (r.execname !== undefined) checkExecName(r.execname, [...segs, 'execname'], issues);
    checkSources(r.fromSource, segs, issues);
  });
  spec.process?.matchPatterns?.forEach((r, i) => checkPattern(r.pattern, ['spec', 'process', 'matchPatterns', i, 'pattern'], issues));
  spec.file?.matchPatterns?.forEach((r, i) => checkPattern(r.pattern, ['spec', 'file', 'matchPatterns', i, 'pattern'], issues));
  spec.process?.matchDirectories?.forEach((r, i) => {
    const segs = ['spec', 'process', 'matchDirectories', i];
    checkPath(r.dir, [...segs, 'dir'], issues);
    checkSources(r.fromSource, segs, issues);
  });
  spec.file?.matchPaths?.forEach((r, i) => {
    const segs = ['spec', 'file', 'matchPaths', i];
    checkPath(r.path, [...segs, 'path'], issues);
    checkSources(r.fromSource, segs, issues);
  });
  spec.file?.matchDirectories?.forEach((r, i) => {
    const segs = ['spec', 'file', 'matchDirectories', i];
    checkPath(r.dir, [...segs, 'dir'], issues);
    checkSources(r.fromSource, segs, issues);
  });
  spec.network?.matchProtocols?.forEach((r, i) => checkSources(r.fromSource, ['spec', 'network', 'matchProtocols', i], issues));
  spec.capabilities?.matchCapabilities?.forEach((r, i) =>
    checkSources(r.fromSource, ['spec', 'capabilities', 'matchCapabilities', i], issues),
  );
  spec.syscalls?.matchSyscalls?.forEach((r, i) => checkSources(r.fromSource, ['spec', 'syscalls', 'matchSyscalls', i], issues));
  spec.syscalls?.matchPaths?.forEach((r, i) => {
    const segs = ['spec', 'syscalls', 'matchPaths', i];
    checkPath(r.path, [...segs, 'path'], issues);
    checkSources(r.fromSource, segs, issues);
  });
  return issues;
}

// ---------------------------------------------------------------------------
// YAML documents

interface RawDocument {
  /** text of this document, with the `---` marker blanked out */
  text: string;
  /** 0-based line in the file where `text` starts */
  startLine: number;
}

const DOC_START = /^---(?=\s|$)/;

function isBlank(text: string): boolean {
  return text.split('\n').every((l) => /^\s*(#.*)?$/.test(l) || /^%/.test(l) || /^\.\.\.(\s|$)/.test(l));
}

/**
 * Splits a multi-document YAML stream at `---` lines so a syntax error in one
 * document does not hide the others. A blank part before the first `---` or
 * after the last one is not a document; a blank part between two is.
 */
function splitDocuments(text: string): Array<RawDocument | null> {
  const lines = text.split('\n');
  const parts: RawDocument[] = [];
  let current: string[] = [];
  let start = 0;
  let separators = 0;
  lines.forEach((line, i) => {
    if (DOC_START.test(line)) {
      parts.push({ text: current.join('\n'), startLine: start });
      current = ['   ' + line.slice(3)];
      start = i;
      separators++;
    } else {
      current.push(line);
    }
  });
  parts.push({ text: current.join('\n'), startLine: start });
  const docs: Array<RawDocument | null> = parts.map((p) => (isBlank(p.text) ? null : p));
  if (separators > 0 && docs[0] === null) docs.shift();
  if (separators > 0 && docs.length > 0 && docs[docs.length - 1] === null) docs.pop();
  if (separators === 0 && docs[0] === null) return [];
  return docs;
}

/** Counts values reachable from a parsed document, aliases included, up to a limit. */
function tooManyNodes(value: unknown, limit: number): boolean {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (++count > limit) return true;
    if (Array.isArray(v)) stack.push(...v);
    else if (v && typeof v === 'object') stack.push(...Object.values(v as Record<string, unknown>));
  }
  return false;
}

/** Outcome of looking at one document: a policy or its errors. */
function checkDocument(raw: RawDocument | null, file: string, documentIndex: number): LoadedPolicy | PolicyError[] {
  if (raw === null) return [{ file, documentIndex, path: '', message: 'empty document' }];
  const line = raw.startLine + 1;
  let doc: unknown;
  try {
    doc = yaml.load(raw.text, { schema: yaml.CORE_SCHEMA, filename: file, maxDepth: MAX_YAML_DEPTH } as yaml.LoadOptions);
  } catch (err) {
    const e = err as yaml.YAMLException & { mark?: { line: number; column: number } };
    if (e && e.name === 'YAMLException') {
      const at = e.mark ? raw.startLine + e.mark.line + 1 : line;
      const col = e.mark ? e.mark.column + 1 : 1;
      return [{ file, documentIndex, path: '', line: at, message: `invalid YAML at line ${at}, column ${col}: ${e.reason}` }];
    }
    // A stack overflow or similar on hostile input: still a value, not a throw.
    return [{ file, documentIndex, path: '', line, message: `invalid YAML: ${(err as Error)?.message ?? String(err)}` }];
  }
  if (doc === null || doc === undefined) return [{ file, documentIndex, path: '', line, message: 'empty document' }];
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    return [{ file, documentIndex, path: '', line, message: `must be a mapping (a policy object), not ${typeName(doc)}` }];
  }
  if (tooManyNodes(doc, MAX_DOCUMENT_NODES)) {
    return [{ file, documentIndex, path: '', line, message: `is too large: more than ${MAX_DOCUMENT_NODES} values (counting YAML alias expansions)` }];
  }
  const errors = schemaErrors(doc, file, documentIndex, line);
  if (errors.length) return errors;
  const policy = doc as PolicyDocument;
  const issues = semanticIssues(policy);
  if (issues.length) {
    return issues.map((i) => ({ file, documentIndex, path: fieldPath(i.segs), message: i.message, line }));
  }
  return {
    kind: policy.kind,
    name: policy.metadata.name,
    ...(policy.metadata.namespace !== undefined ? { namespace: policy.metadata.namespace } : {}),
    spec: policy.spec,
    source: file,
    documentIndex,
    line,
  };
}

/** Refuses a second policy with the same identity (kind, namespace for KubeArmorPolicy, name). */
class DuplicateGuard {
  private readonly seen = new Map<string, LoadedPolicy>();

  admit(p: LoadedPolicy): PolicyError | undefined {
    const key = p.kind === 'KubeArmorHostPolicy' ? `${p.kind}/${p.name}` : `${p.kind}/${p.namespace ?? ''}/${p.name}`;
    const first = this.seen.get(key);
    if (!first) {
      this.seen.set(key, p);
      return undefined;
    }
    const where = first.source === p.source ? `document ${first.documentIndex + 1}` : `${first.source} document ${first.documentIndex + 1}`;
    return {
      file: p.source,
      documentIndex: p.documentIndex,
      path: 'metadata.name',
      line: p.line,
      message: `duplicate ${p.kind} name "${p.name}" (already defined in ${where}); this one is refused`,
    };
  }
}

function parseInto(text: string, sourceName: string, guard: DuplicateGuard, out: LoadResult): void {
  const docs = splitDocuments(text.replace(/^\uFEFF/, '').replace(/\r\n/g, '\n'));
  if (docs.length === 0) {
    out.errors.push({ file: sourceName, documentIndex: null, path: '', message: 'contains no policy documents' });
    return;
  }
  const errors: PolicyError[] = [];
  docs.forEach((raw, i) => {
    const r = checkDocument(raw, sourceName, i);
    if (Array.isArray(r)) {
      errors.push(...r);
      return;
    }
    const dup = guard.admit(r);
    if (dup) errors.push(dup);
    else out.policies.push(r);
  });
  // A broken or hostile file must not flood the log.
  if (errors.length > MAX_ERRORS_PER_FILE) {
    const more = errors.length - MAX_ERRORS_PER_FILE;
    errors.length = MAX_ERRORS_PER_FILE;
    errors.push({ file: sourceName, documentIndex: null, path: '', message: `${more} more errors not shown` });
  }
  out.errors.push(...errors);
}

/** Validates YAML text holding one or more policy documents. */
export function parsePolicyText(text: string, sourceName: string): LoadResult {
  const out: LoadResult = { policies: [], errors: [] };
  parseInto(text, sourceName, new DuplicateGuard(), out);
  return out;
}

function fileError(file: string, message: string): PolicyError {
  return { file, documentIndex: null, path: '', message };
}

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e && e.code ? `${e.code}: ${e.message.replace(/^[A-Z]+: /, '')}` : String(err);
}

/**
 * Reads a text file safely: regular files only, at most maxBytes, UTF-8.
 * Returns the text or a message ("is too large (...)", "cannot read file (ENOENT: ...)").
 */
export function readLimitedTextFile(file: string, maxBytes: number): { text: string } | { error: string } {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not hang the agent.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    return { error: `cannot read file (${errnoText(err)})` };
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) return { error: 'is a directory, not a file' };
    if (!st.isFile()) return { error: 'is not a regular file' };
    if (st.size > maxBytes) return { error: `is too large (${st.size} bytes; the limit is ${maxBytes} bytes)` };
    // Sized from fstat (a policy is usually a few kB; a 1 MiB buffer per file was most of a
    // reload's garbage), grown while the file grows, never past limit+1 bytes: a file growing
    // after fstat is still caught.
    let buf = Buffer.allocUnsafe(Math.min(st.size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        if (buf.length > maxBytes) break;
        const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, maxBytes + 1));
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
      const r = fs.readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
    }
    if (n > maxBytes) return { error: `is too large (more than ${maxBytes} bytes)` };
    try {
      return { text: new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, n)) };
    } catch {
      return { error: 'is not valid UTF-8 text' };
    }
  } catch (err) {
    return { error: `cannot read file (${errnoText(err)})` };
  } finally {
    fs.closeSync(fd);
  }
}

function readPolicyFile(file: string): { text: string } | { error: PolicyError } {
  const r = readLimitedTextFile(file, MAX_POLICY_FILE_BYTES);
  return 'error' in r ? { error: fileError(file, r.error) } : r;
}

/** Loads one policy file (any name). */
export function loadPolicyFile(file: string): LoadResult {
  const out: LoadResult = { policies: [], errors: [] };
  const r = readPolicyFile(file);
  if ('error' in r) out.errors.push(r.error);
  else parseInto(r.text, file, new DuplicateGuard(), out);
  return out;
}

/** Names the directory loader reads: *.yaml / *.yml, not hidden (ConfigMap mounts keep ..data etc. hidden). */
export function isPolicyFileName(name: string): boolean {
  return !name.startsWith('.') && /\.ya?ml$/i.test(name);
}

/**
 * Loads every *.yaml / *.yml file directly in `dir` (not subdirectories), in
 * byte order of their names so rule ids are stable. Policy names must be
 * unique across all files; a later duplicate is refused.
 */
export function loadPolicyDirectory(dir: string): LoadResult {
  return loadPolicyDirectories([dir]);
}

/**
 * Loads several policy directories as one set (e.g. the operator's, the
 * hub's): a name defined twice is refused where it appears second, so the
 * earlier directory wins.
 */
export function loadPolicyDirectories(dirs: string[]): LoadResult {
  const out: LoadResult = { policies: [], errors: [] };
  const guard = new DuplicateGuard();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch (err) {
      out.errors.push(fileError(dir, `cannot read policy directory (${errnoText(err)})`));
      continue;
    }
    for (const name of names.filter(isPolicyFileName).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      const file = path.join(dir, name);
      const r = readPolicyFile(file);
      if ('error' in r) {
        // A subdirectory named x.yaml is not a policy: skip it quietly.
        if (r.error.message.startsWith('is a directory')) continue;
        out.errors.push(r.error);
      } else {
        parseInto(r.text, file, guard, out);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Symlinked paths

/**
 * Resolves a path through symlinks as far as it exists: the longest existing
 * ancestor is resolved and the rest appended ("/bin/nothing" ->
 * "/usr/bin/nothing" on a merged-/usr system).
 */
export function resolveExistingPrefix(p: string, realpath: (p: string) => string = fs.realpathSync): string {
  const isDir = p.endsWith('/') && p.length > 1;
  const parts = p.split('/').filter(Boolean);
  for (let keep = parts.length; keep >= 0; keep--) {
    const head = '/' + parts.slice(0, keep).join('/');
    let real: string;
    try {
      real = realpath(head);
    } catch {
      continue;
    }
    const rest = parts.slice(keep);
    const joined = rest.length ? path.posix.join(real, ...rest) : real;
    return isDir && !joined.endsWith('/') ? joined + '/' : joined;
  }
  return p;
}

/**
 * Warnings (not errors) for policy paths that go through a symlink on this
 * node. The kernel reports resolved paths, so such a rule never matches as
 * written: on Debian 12 /bin, /sbin and /lib are symlinks into /usr, and
 * many published KubeArmor examples name /bin/... paths.
 */
export function symlinkedPathWarnings(
  policies: readonly LoadedPolicy[],
  realpath: (p: string) => string = fs.realpathSync,
): PolicyError[] {
  const out: PolicyError[] = [];
  for (const p of policies) {
    const check = (value: string | undefined, segs: Array<string | number>) => {
      if (value === undefined) return;
      const resolved = resolveExistingPrefix(value, realpath);
      if (resolved !== value) {
        out.push({
          file: p.source,
          documentIndex: p.documentIndex,
          path: fieldPath(segs),
          line: p.line,
          message: `${value} resolves to ${resolved} on this node; the kernel reports resolved paths, so this rule never matches as written (use ${resolved})`,
        });
      }
    };
    const sources = (list: SourceSpec[] | undefined, base: Array<string | number>) =>
      (list ?? []).forEach((s, i) => {
        check(s.path, [...base, 'fromSource', i, 'path']);
        check(s.dir, [...base, 'fromSource', i, 'dir']);
      });
    const spec = p.spec;
    spec.process?.matchPaths?.forEach((r, i) => {
      check(r.path, ['spec', 'process', 'matchPaths', i, 'path']);
      sources(r.fromSource, ['spec', 'process', 'matchPaths', i]);
    });
    spec.process?.matchDirectories?.forEach((r, i) => {
      check(r.dir, ['spec', 'process', 'matchDirectories', i, 'dir']);
      sources(r.fromSource, ['spec', 'process', 'matchDirectories', i]);
    });
    spec.file?.matchPaths?.forEach((r, i) => {
      check(r.path, ['spec', 'file', 'matchPaths', i, 'path']);
      sources(r.fromSource, ['spec', 'file', 'matchPaths', i]);
    });
    spec.file?.matchDirectories?.forEach((r, i) => {
      check(r.dir, ['spec', 'file', 'matchDirectories', i, 'dir']);
      sources(r.fromSource, ['spec', 'file', 'matchDirectories', i]);
    });
    spec.network?.matchProtocols?.forEach((r, i) => sources(r.fromSource, ['spec', 'network', 'matchProtocols', i]));
  }
  return out;
}
