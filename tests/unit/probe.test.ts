import type { NativeProbe } from '../../agent/src/native';
import { chooseBackend } from '../../agent/src/probe';

function features(over: Partial<NativeProbe> = {}): NativeProbe {
  const ok = { ok: true };
  return {
    kernelRelease: '6.18.0',
    btf: ok,
    bpfLsm: { ok: false, error: 'EPERM: Operation not permitted' },
    ringbuf: ok,
    tpBtf: ok,
    cgroupSock: ok,
    fanotifyPerm: ok,
    cgroup2Path: '/sys/fs/cgroup',
    ...over,
  };
}

describe('chooseBackend', () => {
  test('compat when BPF-LSM is refused and fanotify + cgroup-bpf work, with the reason', () => {
    const c = chooseBackend(features(), ['lockdown', 'capability', 'bpf'], 'auto');
    expect(c.backend).toBe('compat');
    expect(c.error).toBeUndefined();
    expect(c.reasons.join('\n')).toMatch(/bpf-lsm: loading an LSM program failed \(EPERM/);
  });

  test('bpf missing from the LSM list is named', () => {
    expect(chooseBackend(features(), ['capability'], 'auto').reasons[0]).toMatch(/not in the active LSM list/);
  });

  test('audit-only when neither works, saying why', () => {
    const c = chooseBackend(features({ fanotifyPerm: { ok: false, error: 'EINVAL' }, cgroup2Path: '' }), [], 'auto');
    expect(c.backend).toBe('audit-only');
    expect(c.reasons.join('\n')).toMatch(/fanotify permission events: EINVAL; no cgroup v2 mount/);
  });

  test('a forced backend that is not available is an error', () => {
    expect(chooseBackend(features({ cgroupSock: { ok: false, error: 'EPERM' } }), [], 'compat').error).toMatch(/compat was requested/);
    expect(chooseBackend(features(), ['bpf'], 'bpf-lsm').error).toMatch(/bpf-lsm was requested/);
    expect(chooseBackend(features(), [], 'audit-only')).toMatchObject({ backend: 'audit-only' });
  });
});
