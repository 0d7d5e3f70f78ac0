import type { NativeProbe } from '../../agent/src/native';
import { chooseBackend, supportOf } from '../../agent/src/probe';

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

  test('bpf-lsm is preferred when an LSM program loads and attaches and bpf is an active LSM', () => {
    const c = chooseBackend(features({ bpfLsm: { ok: true } }), ['lockdown', 'capability', 'bpf'], 'auto');
    expect(c).toMatchObject({ backend: 'bpf-lsm' });
    expect(c.error).toBeUndefined();
    expect(c.reasons[0]).toMatch(/bpf-lsm: an LSM program loads and attaches/);
  });

  test('bpf-lsm is not chosen when bpf is not an active LSM even if the program attached', () => {
    expect(chooseBackend(features({ bpfLsm: { ok: true } }), ['capability'], 'auto').backend).toBe('compat');
  });

  test('forcing bpf-lsm where it works, or compat / audit-only where bpf-lsm would be preferred', () => {
    const lsm = features({ bpfLsm: { ok: true } });
    expect(chooseBackend(lsm, ['bpf'], 'bpf-lsm')).toMatchObject({ backend: 'bpf-lsm' });
    expect(chooseBackend(lsm, ['bpf'], 'bpf-lsm').error).toBeUndefined();
    expect(chooseBackend(lsm, ['bpf'], 'compat')).toMatchObject({ backend: 'compat' });
    expect(chooseBackend(lsm, ['bpf'], 'compat').error).toBeUndefined();
    expect(chooseBackend(lsm, ['bpf'], 'audit-only')).toMatchObject({ backend: 'audit-only' });
  });

  test('bpf-lsm enforces process, file, network and capability rules', () => {
    expect(supportOf('bpf-lsm')).toEqual({ process: 'enforce', file: 'enforce', network: 'enforce', capabilities: 'enforce' });
    expect(supportOf('compat').process).toBe('enforce');
    expect(supportOf('audit-only').process).toBe('audit');
  });
});
