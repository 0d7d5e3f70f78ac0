// ns_pid / ns_ppid of the record header (ABI 2) filled by an LSM program:
// a bpf-lsm exec decision for a process in a pid namespace of its own
// (unshare --pid --fork) names the pids it had there. Runs in the BPF-LSM
// guest only:
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_ns_pid.test.ts
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { EventKind, OperationCode } from '../../agent/src/abi';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import { LsmEnforcer } from '../../agent/src/lsm_enforcer';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import type { PathRule } from '../../agent/src/policy/types';
import { probe } from '../../agent/src/probe';
import { ADDON, BUSYBOX, busyboxCopy, makeTempDir, waitFor } from '../helpers/system';

const UNSHARE = '/usr/bin/unshare';

describe('bpf-lsm decision records carry the pid namespace numbers', () => {
  let addon: NativeAddon;
  let sink: NativeEventSink;
  let ring: NativeEventRing;
  let enforcer: LsmEnforcer;
  let work: string;
  const decisions: DecisionEvent[] = [];
  let undecodable = 0;

  beforeAll(() => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    for (const f of [BUSYBOX, UNSHARE]) if (!fs.existsSync(f)) problems.push(`${f} missing`);
    if (problems.length) throw new Error(`lsm_ns_pid cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `lsm_ns_pid needs a kernel that runs BPF-LSM programs, and this one does not (${report.kernel}; probe: ${report.reasons.join('; ')}). ` +
          'Run it in the guest: tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_ns_pid.test.ts',
      );
    }
    work = makeTempDir('lsm-nspid');
    sink = new addon.EventSink((batch) => {
      const { events, errors } = decodeBatch(batch);
      undecodable += errors;
      for (const e of events) if (e.kind === EventKind.Decision) decisions.push(e);
    });
    ring = new addon.EventRing(sink, { ringBufferBytes: 1 << 20, pollIntervalMs: 20 });
    enforcer = new LsmEnforcer(addon, ring);
  });

  afterAll(async () => {
    enforcer?.close();
    ring?.close();
    await new Promise((r) => setTimeout(r, 200));
    sink?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('a blocked exec two processes into an unshared pid namespace: ns_pid 2, ns_ppid 1; the header pid is the host one', async () => {
    const blocked = busyboxCopy(work, 'blocked');
    const rule: PathRule = {
      ruleId: 41,
      action: 'Block',
      operation: 'Process',
      target: { kind: 'path', path: blocked },
      readOnly: false,
      ownerOnly: false,
      fromSource: [],
    };
    const r0 = enforcer.apply([rule], []);
    expect(r0.errors).toEqual([]);
    // pid 1 there ("outer") runs a shell ("inner", pid 2) whose exec is refused, then exits
    const script = `echo outer=$$; ${BUSYBOX} sh -c 'echo inner=$$ parent=$PPID; exec ${blocked} true'; exit 0`;
    const r = spawnSync(UNSHARE, ['--pid', '--fork', '--kill-child', BUSYBOX, 'sh', '-c', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/outer=1\s+inner=2 parent=1/);
    expect(r.stderr).toMatch(/Permission denied|Operation not permitted/);

    const d = await waitFor('the exec decision', () => decisions.find((x) => x.resource === blocked), 5000);
    expect(d).toMatchObject({ operation: OperationCode.Process, ruleId: 41, ret: -1, nsPid: 2, nsPpid: 1 });
    expect(d.pid).not.toBe(2);
    expect(d.ppid).not.toBe(1);
    expect(d.pidNs).not.toBe(fs.statSync('/proc/self/ns/pid').ino);
    expect(undecodable).toBe(0);
  });

  test('a host process: the namespace numbers are the host numbers', async () => {
    const blocked = busyboxCopy(work, 'blocked-host');
    const rule: PathRule = {
      ruleId: 42,
      action: 'Block',
      operation: 'Process',
      target: { kind: 'path', path: blocked },
      readOnly: false,
      ownerOnly: false,
      fromSource: [],
    };
    expect(enforcer.apply([rule], []).errors).toEqual([]);
    const r = spawnSync(BUSYBOX, ['sh', '-c', `echo $$; exec ${blocked} true`], { encoding: 'utf8', timeout: 60_000 });
    const pid = Number(r.stdout.trim());
    expect(r.status).not.toBe(0);
    const d = await waitFor('the host exec decision', () => decisions.find((x) => x.resource === blocked), 5000);
    expect(d).toMatchObject({ pid, nsPid: pid, ppid: process.pid, nsPpid: process.pid });
  });
});
