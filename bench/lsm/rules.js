'use strict';
// The rule sets of the bpf-lsm / AppArmor benchmark: the same rules for both
// mechanisms, none of which the measured loops touch.
//
// A set of size N holds
//   - N file rules: deny read/write of RULE_DIR/f<id>,
//   - N process rules: deny exec of RULE_DIR/x<id>,
//   - network: bpf-lsm gets N rules (one any-source "raw" block and N-1
//     "tcp" blocks from other executables); the AppArmor profile gets the
//     one any-source "deny network raw," (AppArmor has no per-source network
//     rule inside a profile: KubeArmor puts those in child profiles of the
//     source, which the loop never enters).
// The ids are pseudo-random hex, as real paths are: sequential names
// (f0..f9999) compile into a tiny AppArmor DFA, which would flatter it.
const crypto = require('crypto');

const ROOT = '/tmp/ewbench';
const RULE_DIR = `${ROOT}/rules`;
const LOOP_DIR = `${ROOT}/loop`;
/** rule counts measured with bpf-lsm */
const BPF_SIZES = [0, 100, 10000];
/**
 * rule counts measured with AppArmor: 10,000 (+10,000) such paths do not fit
 * one profile. apparmor_parser 3.0.8 refuses a DFA over 65,535 states ("Too
 * many states (73067) for type state_t" at 3,500+3,500 rules); 3,000+3,000
 * compile to 63,311 states, the largest round size that loads.
 */
const AA_SIZES = [0, 100, 3000];
const SIZES = [...new Set([...BPF_SIZES, ...AA_SIZES])].sort((a, b) => a - b);

/** 16 hex digits, fixed for index i */
function ruleId(i) {
  return crypto.createHash('sha256').update(`ewbench-${i}`).digest('hex').slice(0, 16);
}

function ids(n) {
  return Array.from({ length: n }, (_, i) => ruleId(i));
}

const filePath = (id) => `${RULE_DIR}/f${id}`;
const execPath = (id) => `${RULE_DIR}/x${id}`;
/** net rules' source executables: never resolved on disk (fake inodes) */
const sourcePath = (id) => `/ewbench-src/s${id}`;

const profileName = (n) => `ewbench-${n}`;

/**
 * The AppArmor profile of a set: everything an unconfined process may do
 * (so the loops run unchanged), minus the set's deny rules.
 */
function apparmorProfile(n) {
  const lines = [
    `profile ${profileName(n)} flags=(enforce) {`,
    '  capability,',
    '  network,',
    '  unix,',
    '  signal,',
    '  ptrace,',
    '  /{,**} mrwlkix,',
  ];
  for (const id of ids(n)) {
    lines.push(`  deny ${filePath(id)} rw,`);
    lines.push(`  deny ${execPath(id)} x,`);
  }
  if (n > 0) lines.push('  deny network raw,');
  lines.push('}', '');
  return lines.join('\n');
}

/** The bpf-lsm rules (agent/src/policy/types.ts PathRule / NetworkRule) of a set. */
function lsmRules(n) {
  const list = ids(n);
  let next = 1;
  const pathRules = [];
  for (const id of list) {
    pathRules.push({ ruleId: next++, action: 'Block', operation: 'File', target: { kind: 'path', path: filePath(id) }, readOnly: false, ownerOnly: false, fromSource: [] });
    pathRules.push({ ruleId: next++, action: 'Block', operation: 'Process', target: { kind: 'path', path: execPath(id) }, readOnly: false, ownerOnly: false, fromSource: [] });
  }
  const networkRules = list.map((id, i) =>
    i === 0
      ? { ruleId: next++, action: 'Block', operation: 'Network', protocol: 'raw', fromSource: [] }
      : { ruleId: next++, action: 'Block', operation: 'Network', protocol: 'tcp', fromSource: [{ kind: 'path', path: sourcePath(id) }] },
  );
  return { pathRules, networkRules };
}

module.exports = { ROOT, RULE_DIR, LOOP_DIR, SIZES, BPF_SIZES, AA_SIZES, ruleId, ids, filePath, execPath, sourcePath, profileName, apparmorProfile, lsmRules };

if (require.main === module) {
  // node bench/lsm/rules.js profile N   -> the AppArmor profile on stdout
  const [cmd, n] = process.argv.slice(2);
  if (cmd === 'profile' && /^\d+$/.test(n ?? '')) process.stdout.write(apparmorProfile(Number(n)));
  else {
    process.stderr.write('usage: node bench/lsm/rules.js profile N\n');
    process.exit(2);
  }
}
