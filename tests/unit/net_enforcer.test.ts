// Pure parts of the compat network enforcer: device number conversion and
// NetworkRule -> kernel entry conversion.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Action, ProtoClass } from '../../agent/src/abi';
import {
  containerExecutableInode,
  ExecutableInode,
  MountEntry,
  mountOf,
  parseMountInfo,
  resolveExecutableInode,
  statDevToKernelDev,
  toNativeNetPostures,
  toNativeNetRules,
} from '../../agent/src/net_enforcer';
import type { NetworkRule, WorkloadTarget } from '../../agent/src/policy/types';

const mkdev = (major: bigint, minor: bigint): bigint => (major << 20n) | minor;
// glibc's makedev(): what st_dev holds
const glibcMakedev = (major: bigint, minor: bigint): bigint =>
  ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);

describe('statDevToKernelDev', () => {
  it.each([
    [254n, 0n],
    [8n, 1n],
    [0n, 21n],
    [0n, 0x12345n],
    [4095n, 0xfffffn],
    [259n, 300000n],
  ])('converts %d:%d from the st_dev form to major << 20 | minor', (major, minor) => {
    expect(statDevToKernelDev(glibcMakedev(major, minor))).toBe(mkdev(major, minor));
  });

  it('converts the small-number case the way new_encode_dev() lays it out', () => {
    expect(statDevToKernelDev(0xfe00n)).toBe(254n << 20n); // 254:0
    expect(statDevToKernelDev(0x801n)).toBe(0x800001n); // 8:1
  });

  it('refuses devices the kernel dev_t cannot hold and nonsense values', () => {
    expect(() => statDevToKernelDev(glibcMakedev(4096n, 0n))).toThrow(/does not fit/);
    expect(() => statDevToKernelDev(glibcMakedev(1n, 1n << 20n))).toThrow(/does not fit/);
    expect(() => statDevToKernelDev(-1n)).toThrow(RangeError);
    expect(() => statDevToKernelDev(1n << 64n)).toThrow(RangeError);
  });

  it("matches the kernel's s_dev that /proc/self/mountinfo shows for mount points", () => {
    // The last mount on a path is the one stat() sees; btrfs reports per-subvolume st_dev.
    const byMountPoint = new Map<string, { dev: string; fsType: string; root: string }>();
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      if (!line) continue;
      const [left, right] = line.split(' - ');
      const f = left.split(' ');
      byMountPoint.set(f[4], { dev: f[2], root: f[3], fsType: right.split(' ')[0] });
    }
    let compared = 0;
    for (const [mountPoint, m] of byMountPoint) {
      if (m.root !== '/' || m.fsType === 'btrfs' || m.fsType === 'autofs' || mountPoint.includes('\\')) continue;
      let dev: bigint;
      try {
        dev = fs.statSync(mountPoint, { bigint: true }).dev;
      } catch {
        continue;
      }
      const [major, minor] = m.dev.split(':').map((x) => BigInt(x));
      expect({ mountPoint, dev: statDevToKernelDev(dev) }).toEqual({ mountPoint, dev: mkdev(major, minor) });
      compared++;
    }
    expect(compared).toBeGreaterThan(2);
  });
});

describe('parseMountInfo / mountOf', () => {
  const text = [
    '22 27 0:21 / /proc rw,relatime - proc proc rw',
    '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
    '40 27 0:45 / /data rw,relatime - btrfs /dev/vdb rw,subvol=/',
    '41 27 0:46 / /my\\040dir rw - tmpfs tmpfs rw',
    '42 27 8:1 / /usr rw - ext4 /dev/sda1 rw',
    '43 42 8:17 / /usr rw - xfs /dev/sdb1 rw',
    'garbage line',
    '',
  ].join('\n');
  const mounts = parseMountInfo(text);

  it('reads mount point, fs type and the superblock dev in kernel form, unescaping octal', () => {
    expect(mounts).toHaveLength(6);
    expect(mounts[0]).toEqual({ mountPoint: '/proc', dev: 21n, fsType: 'proc' });
    expect(mounts[1]).toEqual({ mountPoint: '/', dev: 254n << 20n, fsType: 'ext4' });
    expect(mounts[3].mountPoint).toBe('/my dir');
  });

  it('picks the longest mount point that is a path prefix, the top of a stack, never a name prefix', () => {
    expect(mountOf('/data/bin/tool', mounts)?.fsType).toBe('btrfs');
    expect(mountOf('/datax/tool', mounts)?.mountPoint).toBe('/');
    expect(mountOf('/usr/bin/python3.11', mounts)).toEqual({ mountPoint: '/usr', dev: (8n << 20n) | 17n, fsType: 'xfs' });
    expect(mountOf('/usr2/x', mounts)?.mountPoint).toBe('/');
    expect(mountOf('/my dir/x', mounts)?.dev).toBe(46n);
    expect(mountOf('/x', [])).toBeUndefined();
  });
});

describe('resolveExecutableInode', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ew-net-unit-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives the kernel dev_t and inode of the file a symlink names', () => {
    const target = path.join(dir, 'prog');
    fs.writeFileSync(target, Buffer.from([0x7f, 0x45, 0x4c, 0x46]), { mode: 0o755 });
    const link = path.join(dir, 'link');
    fs.symlinkSync(target, link);
    const st = fs.statSync(target, { bigint: true });
    expect(resolveExecutableInode(link)).toEqual({ dev: statDevToKernelDev(st.dev), ino: st.ino });
  });

  it("takes the device from the mount's superblock (btrfs/overlayfs st_dev differ from s_dev)", () => {
    const target = path.join(dir, 'prog2');
    fs.writeFileSync(target, 'ELF', { mode: 0o755 });
    const st = fs.statSync(target, { bigint: true });
    const fake: MountEntry[] = [
      { mountPoint: '/', dev: 1n << 20n, fsType: 'ext4' },
      { mountPoint: fs.realpathSync(dir), dev: 77n, fsType: 'btrfs' },
    ];
    expect(resolveExecutableInode(target, fake)).toEqual({ dev: 77n, ino: st.ino });
    // no mount table entry covers it: st_dev converted
    expect(resolveExecutableInode(target, [])).toEqual({ dev: statDevToKernelDev(st.dev), ino: st.ino });
  });

  it('refuses a missing path, a directory and a script, saying which and why', () => {
    expect(() => resolveExecutableInode(path.join(dir, 'nope'))).toThrow(`cannot stat ${path.join(dir, 'nope')} (ENOENT)`);
    expect(() => resolveExecutableInode(dir)).toThrow(`${dir} is not a regular file`);
    const script = path.join(dir, 'run.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho hi\n', { mode: 0o755 });
    expect(() => resolveExecutableInode(script)).toThrow(/is a script: .*interpreter/);
  });
});

describe('toNativeNetRules', () => {
  const inodes: Record<string, ExecutableInode> = {
    '/usr/bin/a': { dev: 0x800001n, ino: 11n },
    '/usr/bin/b': { dev: 0x800001n, ino: 12n },
  };
  const fakeResolve = (p: string): ExecutableInode => {
    const found = inodes[p];
    if (!found) throw new Error(`cannot stat ${p} (ENOENT)`);
    return found;
  };
  const rule = (over: Partial<NetworkRule>): NetworkRule => ({
    ruleId: 1,
    action: 'Block',
    operation: 'Network',
    protocol: 'udp',
    fromSource: [],
    ...over,
  });

  it('makes one any-source entry for a rule without fromSource, with the ABI numbers', () => {
    const out = toNativeNetRules(
      [rule({ ruleId: 5, action: 'Block', protocol: 'udp' }), rule({ ruleId: 6, action: 'Audit', protocol: 'icmpv6' })],
      fakeResolve,
    );
    expect(out.errors).toEqual([]);
    expect(out.rules).toEqual([
      { ruleId: 5, action: Action.Block, protoClass: ProtoClass.Udp, workload: 0n, srcDev: 0n, srcIno: 0n },
      { ruleId: 6, action: Action.Audit, protoClass: ProtoClass.Icmpv6, workload: 0n, srcDev: 0n, srcIno: 0n },
    ]);
    expect([Action.Audit, Action.Block]).toEqual([1, 2]);
  });

  it('maps every protocol to its class', () => {
    const protocols = ['tcp', 'udp', 'icmp', 'icmpv6', 'raw'] as const;
    const out = toNativeNetRules(protocols.map((protocol, i) => rule({ ruleId: i, protocol })), fakeResolve);
    expect(out.rules.map((r) => r.protoClass)).toEqual([1, 2, 3, 4, 5]);
  });

  it('makes one entry per source executable', () => {
    const out = toNativeNetRules(
      [
        rule({
          ruleId: 9,
          protocol: 'tcp',
          fromSource: [
            { kind: 'path', path: '/usr/bin/a' },
            { kind: 'path', path: '/usr/bin/b' },
          ],
        }),
      ],
      fakeResolve,
    );
    expect(out.errors).toEqual([]);
    expect(out.rules.map((r) => [r.ruleId, r.protoClass, r.srcDev, r.srcIno])).toEqual([
      [9, ProtoClass.Tcp, 0x800001n, 11n],
      [9, ProtoClass.Tcp, 0x800001n, 12n],
    ]);
  });

  it('reports a dir source and a missing source by rule id and path, keeping the sources it can enforce', () => {
    const out = toNativeNetRules(
      [
        rule({
          ruleId: 42,
          fromSource: [
            { kind: 'dir', path: '/opt/tools/', recursive: true },
            { kind: 'path', path: '/usr/bin/missing' },
            { kind: 'path', path: '/usr/bin/b' },
          ],
        }),
      ],
      fakeResolve,
    );
    expect(out.rules).toHaveLength(1);
    expect(out.rules[0].srcIno).toBe(12n);
    expect(out.errors).toHaveLength(2);
    expect(out.errors[0]).toMatch(/network rule 42 .*fromSource dir \/opt\/tools\/ cannot be enforced/);
    expect(out.errors[1]).toMatch(/network rule 42 .*fromSource \/usr\/bin\/missing is not enforced: cannot stat \/usr\/bin\/missing \(ENOENT\)/);
  });

  it('reports bad actions, protocols and rule ids instead of guessing', () => {
    const out = toNativeNetRules(
      [
        rule({ ruleId: 1, action: 'Deny' as never }),
        rule({ ruleId: 2, protocol: 'sctp' as never }),
        rule({ ruleId: -3 }),
        rule({ ruleId: 4, protocol: 'toString' as never }),
      ],
      fakeResolve,
    );
    expect(out.rules).toEqual([]);
    expect(out.errors).toEqual([
      'network rule 1 (#0): action must be Block, Audit or Allow, got Deny',
      'network rule 2 (#1): protocol must be one of tcp, udp, icmp, icmpv6, raw, got sctp',
      'network rule #2: ruleId must be an integer in 0..4294967295, got -3',
      'network rule 4 (#3): protocol must be one of tcp, udp, icmp, icmpv6, raw, got toString',
    ]);
  });

  it('Allow rules become EW_ACTION_ALLOW entries; postures one entry per workload on protocol class 0', () => {
    const out = toNativeNetRules([rule({ ruleId: 5, action: 'Allow' })], fakeResolve);
    expect(out.errors).toEqual([]);
    expect(out.rules.map((r) => [r.ruleId, r.action])).toEqual([[5, 3]]);
    const w: WorkloadTarget = { mntNs: 77, pidNs: 78, pid: 79, containerId: 'c', containerName: 'c' };
    expect(
      toNativeNetPostures([
        { postures: { network: { ruleId: 9, category: 'network', action: 'Block', scopeKind: 'host' } } },
        { workload: w, postures: { network: { ruleId: 10, category: 'network', action: 'Audit', scopeKind: 'containers' } } },
        { postures: { file: { ruleId: 11, category: 'file', action: 'Block', scopeKind: 'host' } } },
      ]),
    ).toEqual([
      { ruleId: 9, action: 2, protoClass: 0, workload: 0n, srcDev: 0n, srcIno: 0n },
      { ruleId: 10, action: 1, protoClass: 0, workload: 77n, srcDev: 0n, srcIno: 0n },
    ]);
  });

  const box: WorkloadTarget = { mntNs: 4026532100, pidNs: 4026532101, pid: 4242, containerId: 'c0ffee', containerName: 'box' };

  it('keys a resolved container rule by its workload and finds its sources inside that container', () => {
    const asked: Array<[string, string | undefined]> = [];
    const resolve = (p: string, w?: WorkloadTarget): ExecutableInode => {
      asked.push([p, w?.containerName]);
      return w ? { dev: 40n, ino: 77n } : fakeResolve(p);
    };
    const out = toNativeNetRules(
      [
        rule({ ruleId: 1, protocol: 'udp', scope: { kind: 'host' } }),
        rule({ ruleId: 2, protocol: 'tcp', workload: box, fromSource: [{ kind: 'path', path: '/usr/bin/a' }] }),
      ],
      resolve,
    );
    expect(out.errors).toEqual([]);
    expect(out.rules).toEqual([
      { ruleId: 1, action: Action.Block, protoClass: ProtoClass.Udp, workload: 0n, srcDev: 0n, srcIno: 0n },
      { ruleId: 2, action: Action.Block, protoClass: ProtoClass.Tcp, workload: 4026532100n, srcDev: 40n, srcIno: 77n },
    ]);
    expect(asked).toEqual([['/usr/bin/a', 'box']]);
  });

  it('refuses a container rule that was not resolved (it would apply to the host) and names the container in errors', () => {
    const out = toNativeNetRules(
      [
        rule({ ruleId: 3, scope: { kind: 'containers', selector: { matchLabels: { app: 'x' }, matchExpressions: [] } } }),
        rule({ ruleId: 4, workload: box, fromSource: [{ kind: 'path', path: '/missing' }] }),
        rule({ ruleId: 5, workload: { ...box, mntNs: 0 } }),
      ],
      (p, w) => {
        throw new Error(`cannot find ${p} in ${w?.containerName}`);
      },
    );
    expect(out.rules).toEqual([]);
    expect(out.errors).toEqual([
      'network rule 3 (#0): a container rule not resolved to a container; not enforced',
      'network rule 4 (#1, container box): fromSource /missing is not enforced: cannot find /missing in box',
      'network rule 5 (#2, container box): container box has no usable mount namespace; not enforced',
    ]);
  });
});

describe('containerExecutableInode', () => {
  const mounts = parseMountInfo(
    [
      '80 52 0:40 / / rw,relatime master:2 - overlay overlay rw,lowerdir=/l',
      '81 80 0:43 / /proc rw - proc proc rw',
      '90 80 254:0 /srv/tools /opt/tools rw - ext4 /dev/vda rw',
    ].join('\n'),
  );
  const info = (path: string, over: object = {}) => ({ path, dev: 40n, ino: 9n, mode: 0o100755, shebang: false, ...over });

  it('takes the device of the container mount the file is on', () => {
    expect(containerExecutableInode('/bin/x', info('/bin/x'), mounts)).toEqual({ dev: 40n, ino: 9n });
    expect(containerExecutableInode('/opt/tools/t', info('/opt/tools/t', { dev: 65024n }), mounts)).toEqual({ dev: mkdev(254n, 0n), ino: 9n });
  });

  it('refuses scripts and non-files', () => {
    expect(() => containerExecutableInode('/bin/s', info('/bin/s', { shebang: true }), mounts)).toThrow(/is a script/);
    expect(() => containerExecutableInode('/bin', info('/bin', { mode: 0o40755 }), mounts)).toThrow(/not a regular file in the container/);
  });
});
