// Types of the C++ addon (native/) and its loader. The addon is thin: it
// loads BPF objects, runs the ring-buffer and fanotify threads and hands raw
// ABI records to JS in batches. Everything else is TypeScript.
import * as path from 'path';

/** Counters of one EventSink. */
export interface EventSinkStats {
  delivered: number;
  batches: number;
  /** records dropped in userspace because JS fell behind */
  dropped: number;
}

export interface NativeEventSink {
  stats(): EventSinkStats;
  close(): void;
}

export interface EventRingOptions {
  /** ring buffer size in bytes (power of two, multiple of the page size) */
  ringBufferBytes: number;
  /** how often the consumer drains the ring buffer when no wake-up came (ms) */
  pollIntervalMs: number;
}

export interface EventRingStats {
  /** records read from the ring buffer */
  delivered: number;
  /** records the kernel could not reserve (ring buffer full) */
  kernelDropped: number;
}

/** The ring buffer every BPF object writes to, drained by one native thread into an EventSink. */
export interface NativeEventRing {
  stats(): EventRingStats;
  close(): void;
}

export interface MonitorOptions {
  /** attach the process lifecycle tracepoints (exec, fork, exit) */
  process: boolean;
  /** attach the open/openat/openat2 tracepoints */
  file: boolean;
  /** attach the socket/connect/bind/listen/accept tracepoints */
  network: boolean;
}

export interface NativeMonitor {
  /** names of the programs attached */
  attached(): string[];
  /** detaches the tracepoints */
  close(): void;
}

/**
 * A container the enforcers tell apart from the host: processes in its mount
 * namespace, or (having unshared that) under its pid namespace, are workload
 * `workload`; everything else is the host (0n).
 */
export interface NativeWorkload {
  /** what rules name: the container's mount namespace inode; never 0n */
  workload: bigint;
  mntNs: number;
  /** 0: none */
  pidNs: number;
}

/** A network rule as the kernel map holds it (ew_net_rule_key/value). */
export interface NativeNetRule {
  ruleId: number;
  action: number; // EW_ACTION_*
  protoClass: number; // EW_PROTO_*
  workload: bigint; // 0n: host; else a NativeWorkload's workload
  /** the source executable's inode, or 0n/0n for any source */
  srcDev: bigint;
  srcIno: bigint;
}

export interface NativeNetEnforcer {
  /** replaces the rule set: new keys are added before stale ones are removed */
  setRules(rules: NativeNetRule[]): void;
  /** replaces the containers (at most EW_MAX_WORKLOADS): new entries before stale ones are removed */
  setWorkloads(workloads: NativeWorkload[]): void;
  ruleCount(): number;
  /** detaches from the cgroup */
  close(): void;
}

/** A process or file rule for the fanotify enforcer. */
export interface NativeFileRule {
  ruleId: number;
  action: number; // EW_ACTION_*
  /** true: exec permission (process rule); false: open permission (file rule) */
  exec: boolean;
  /** absolute path of the file or directory */
  path: string;
  isDir: boolean;
  recursive: boolean;
  /** file rules: only opens for writing match */
  readOnly: boolean;
  /** absolute executable paths; empty: any process (unless sourceDirs is set) */
  sources: string[];
  /** matched unless the acting process's uid owns the file */
  ownerOnly?: boolean;
  /** fromSource directories: the acting executable's path under one of them */
  sourceDirs?: Array<{ path: string; recursive: boolean }>;
  /** the workloads whose processes it applies to; absent: [0n], the host */
  workloads?: bigint[];
  /**
   * a container rule: `path` and the sources are paths inside the root of
   * process `pid` (the container's init), which must be in mount namespace
   * `mntNs`; symlinks resolve inside that root
   */
  root?: { pid: number; mntNs: number };
}

export interface FileEnforcerStats {
  /** permission events answered */
  events: number;
  denied: number;
  /** inodes and directories marked */
  marks: number;
  /** events answered "allow" because of an internal failure (counted, never left hanging) */
  internalErrors: number;
  /** failures watching directories for new subdirectories or replaced targets */
  watchErrors: number;
  lastWatchError: string;
}

export interface NativeFileEnforcer {
  /** replaces the rule set; marks for new targets are added before old ones are removed */
  setRules(rules: NativeFileRule[]): { marks: number; errors: string[] };
  /** replaces the containers told apart from the host */
  setWorkloads(workloads: NativeWorkload[]): void;
  stats(): FileEnforcerStats;
  /** removes every mark and answers anything pending with allow */
  close(): void;
}

/** A path inside a container's root (NativeAddon.resolveInContainer). */
export interface ContainerPathInfo {
  /** canonical path inside the root */
  path: string;
  /** st_dev and st_ino as stat(2) gives them */
  dev: bigint;
  ino: bigint;
  mode: number;
  /** a regular file starting with "#!" */
  shebang: boolean;
}

export interface ProbeFeature {
  ok: boolean;
  /** why not, when !ok (e.g. "EPERM: Operation not permitted") */
  error?: string;
}

export interface NativeProbe {
  kernelRelease: string;
  btf: ProbeFeature;
  bpfLsm: ProbeFeature;
  ringbuf: ProbeFeature;
  tpBtf: ProbeFeature;
  cgroupSock: ProbeFeature;
  fanotifyPerm: ProbeFeature;
  /** cgroup v2 mount point found, or empty */
  cgroup2Path: string;
}

export interface NativeAddon {
  abiVersion: number;
  /** byte offsets and sizes of the ABI structs, for tests/unit/abi.test.ts */
  abiLayout(): Record<string, number>;
  probe(): NativeProbe;
  EventSink: new (onBatch: (batch: Buffer) => void, options?: { maxPendingBytes?: number }) => NativeEventSink;
  EventRing: new (sink: NativeEventSink, options: EventRingOptions) => NativeEventRing;
  Monitor: new (ring: NativeEventRing, options: MonitorOptions) => NativeMonitor;
  /** attaches cgroup-bpf programs to the cgroup v2 directory; decisions go to the ring */
  NetEnforcer: new (ring: NativeEventRing, options: { cgroupPath: string }) => NativeNetEnforcer;
  FileEnforcer: new (sink: NativeEventSink) => NativeFileEnforcer;
  /**
   * What `path` is inside the root of process `pid` (which must be in mount
   * namespace `mntNs`), resolved as that process would: symlinks stay inside
   * the root. Throws an Error saying why not.
   */
  resolveInContainer(pid: number, mntNs: number, path: string): ContainerPathInfo;
  /**
   * Sends `message` as one datagram to the sd_notify(3) socket `socketPath`
   * ("/path" or "@abstract"), without blocking. Throws an Error saying why not.
   */
  sdNotify(socketPath: string, message: string): void;
}

let cached: NativeAddon | undefined;

/** Loads build/native/Release/edgeward.node; throws with a build hint when absent. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const root = path.resolve(__dirname, '..', '..', __dirname.includes(`${path.sep}dist${path.sep}`) ? '..' : '.');
  const file = path.join(root, 'build', 'native', 'Release', 'edgeward.node');
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    cached = require(file) as NativeAddon;
  } catch (err) {
    throw new Error(`cannot load the native addon ${file} (run \`npm run build\`): ${(err as Error).message}`);
  }
  return cached;
}

/** SO_PEERCRED of a connected unix socket (native/src/peer_cred.cc). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

// Declared apart (interfaces merge) so this part of the addon stays in one place.
export interface NativeAddon {
  /** the peer of connected unix socket `fd`; throws an Error naming the errno */
  peerCredentials(fd: number): PeerCredentials;
}

/** A capability rule as the kernel map holds it (bpf/include/ew_capable_abi.h ew_cap_key/value). */
export interface NativeCapRule {
  ruleId: number;
  /** EW_ACTION_AUDIT (1), EW_ACTION_BLOCK (2) or EW_ACTION_ALLOW (3); entries of one key merge (the lowest id per action) */
  action: number;
  /** the kernel's capability number (CAP_NET_RAW = 13) */
  cap: number;
  /** 0n: the host; else a NativeWorkload's workload */
  workload: bigint;
  /** the source executable's inode (kernel dev), or 0n/0n for any process */
  srcDev: bigint;
  srcIno: bigint;
}

/** A workload in allow-list mode for capabilities: what no Allow (or Block) rule matches gets `action`. */
export interface NativeCapPosture {
  /** 0n: the host; else a NativeWorkload's workload */
  workload: bigint;
  /** the posture's rule id (policy "DefaultPosture") */
  ruleId: number;
  /** EW_ACTION_AUDIT (1) or EW_ACTION_BLOCK (2) */
  action: number;
}

export interface NativeLsmCapableStats {
  /** rule entries of the set in force */
  entries: number;
  /** workloads in allow-list mode in the set in force */
  postures: number;
  /** rule sets switched to since load (or since the pinning process loaded them, when adopted) */
  generation: number;
  /** namespace keys of the containers told apart from the host */
  workloads: number;
}

/** lsm/capable (native/src/lsm_capable.cc): capability rules decided in the kernel. */
export interface NativeLsmCapable {
  /** replaces the rules and postures in one switch (the new set is written beside the old); throws with nothing changed */
  setRules(rules: NativeCapRule[], postures?: NativeCapPosture[]): void;
  /** replaces the containers told apart from the host */
  setWorkloads(workloads: NativeWorkload[]): void;
  stats(): NativeLsmCapableStats;
  /** ["capable"] while attached */
  attached(): string[];
  /** whether the constructor adopted rules an earlier process pinned (they are in force) */
  adopted(): boolean;
  /** why pinned state found in pinDir was replaced rather than adopted ('' when it was not) */
  replaced(): string;
  /** ids of its pinned maps (for self-protection) */
  mapIds(): number[];
  /** lets go: pinned, the program and rules keep enforcing; unpinned, it detaches */
  release(): void;
  /** detaches and removes the pins: no capability is refused any more */
  close(): void;
}

export interface NativeAddon {
  /**
   * loads and attaches lsm/capable; decisions go to `ring`; `agentPid` is never refused;
   * `pinDir` (on bpffs): pin the maps and the link there, adopting what an earlier process pinned
   */
  LsmCapable?: new (ring: NativeEventRing, options: { agentPid: number; pinDir?: string }) => NativeLsmCapable;
  /** the pinned layout's version (a pin directory per version) and the entries a set may hold */
  capableLimits?: { layoutVersion: number; maxEntries: number };
  /** flock(fd, LOCK_EX | LOCK_NB): true when taken, false when held elsewhere; throws naming the errno otherwise */
  tryLockFile?(fd: number): boolean;
}
