// Docker identities: which container a process belongs to. Containers are
// listed at start and followed through dockerd's event stream; a process is
// mapped to its container by its mount namespace, which `docker exec`
// processes and every descendant share with the container's init (cgroup v2
// ids are not usable for this: dockerd may run with cgroup v1, as here).
import type Dockerode from 'dockerode';
import * as fs from 'fs';

export interface ContainerIdentity {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  /** KubeArmor's NamespaceName: label kubearmor.io/namespace, else "container_namespace" */
  namespaceName: string;
  /** host pid of the container's init process */
  pid: number;
  /** mount and pid namespace inode numbers of the container; pidNs 0: it shares the host's (--pid host) */
  mntNs: number;
  pidNs: number;
}

export interface ContainerRegistryOptions {
  socketPath?: string;
  /** first reconnect delay after dockerd goes away; doubles up to maxReconnectMs */
  reconnectMs?: number;
  maxReconnectMs?: number;
  /** how long an exited container stays resolvable, for alerts that arrive late */
  exitedGraceMs?: number;
  /** while dockerd is away: how often known containers are checked for an exited init */
  pruneIntervalMs?: number;
  log?: (level: 'info' | 'warn', message: string) => void;
  procRoot?: string;
  /** how long a container the runtime hook added may wait for dockerd to confirm it (start event or listing) before it is dropped */
  startGraceMs?: number;
  /**
   * A container dockerd started (its `start` event) that the runtime hook had
   * not reported first: its first program ran before its rules were in force
   * (`--runtime runc` on a node with the wrapper only in daemon.json, a
   * container created before the wrapper, the hook failing open). Also logged
   * (warn) and counted (unhookedStarts()).
   */
  onUnhookedStart?: (start: UnhookedStart) => void;
}

/** A container start that did not go through the runtime hook. */
export interface UnhookedStart {
  id: string;
  name: string;
  image: string;
  /** dockerd's HostConfig.Runtime of the container ("runc", "edgeward", ...); "" when unknown */
  runtime: string;
  /** ISO time the start event was handled */
  at: string;
}

/** How many container starts went around the runtime hook since the registry started, and the latest few. */
export interface UnhookedStartsSummary {
  count: number;
  recent: UnhookedStart[];
}

const RECENT_UNHOOKED = 20;

/** The warning for a start that went around the runtime hook (one line, for the agent's log). */
export function unhookedStartMessage(s: UnhookedStart): string {
  return (
    `docker: container ${s.name} (${s.id.slice(0, 12)}) started without the runtime hook ` +
    `(runtime ${JSON.stringify(s.runtime || 'unknown')}): its first program ran before its rules were in force`
  );
}

export const DOCKER_SOCKET = '/var/run/docker.sock';

/**
 * dockerd's socket: DOCKER_HOST when it names a unix socket (as the docker
 * CLI reads it), else the default. Other schemes (tcp://, ssh://) are refused
 * with the reason: container identities come from the local daemon only.
 */
export function dockerSocketPath(env: NodeJS.ProcessEnv = process.env): { path: string; ignored?: string } {
  const host = env.DOCKER_HOST;
  if (host === undefined || host === '') return { path: DOCKER_SOCKET };
  const m = /^unix:\/\/(\/.+)$/.exec(host);
  if (m) return { path: m[1]! };
  return { path: DOCKER_SOCKET, ignored: `DOCKER_HOST=${host} is not a unix:///absolute/path socket; using ${DOCKER_SOCKET}` };
}
export const NAMESPACE_LABEL = 'kubearmor.io/namespace';
export const DEFAULT_NAMESPACE = 'container_namespace';

/** The inode number in a /proc/<pid>/ns/<kind> link ("mnt:[4026532180]"). */
export function namespaceInode(link: string): number | undefined {
  const m = /^[a-z_]+:\[(\d+)\]$/.exec(link);
  return m ? Number(m[1]) : undefined;
}

/** /proc/<pid>/comm of runc's init until it execs the entrypoint */
export const RUNC_INIT_COMM = 'runc:[2:INIT]';

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function readNamespace(link: string): number | undefined {
  try {
    return namespaceInode(fs.readlinkSync(link));
  } catch {
    return undefined;
  }
}

function sameIdentity(a: ContainerIdentity, b: ContainerIdentity): boolean {
  const la = Object.entries(a.labels);
  return (
    a.pid === b.pid &&
    a.mntNs === b.mntNs &&
    a.pidNs === b.pidNs &&
    a.name === b.name &&
    a.image === b.image &&
    la.length === Object.keys(b.labels).length &&
    la.every(([k, v]) => b.labels[k] === v)
  );
}

type ContainerListener = (event: 'added' | 'removed' | 'renamed', c: ContainerIdentity) => void;

export class ContainerRegistry {
  private readonly docker: Dockerode;
  private readonly byId = new Map<string, ContainerIdentity>();
  private readonly byMnt = new Map<number, ContainerIdentity>();
  /** added by the runtime hook, dockerd's start event for that run not seen yet */
  private readonly awaitingStart = new Set<string>();
  private unhookedCount = 0;
  private readonly recentUnhooked: UnhookedStart[] = [];
  private readonly listeners: ContainerListener[] = [];
  private stream: NodeJS.ReadableStream | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private reconnectDelay: number;
  private stopped = false;
  private connected = false;
  private unreachableReported = false;
  private readonly procRoot: string;
  private readonly hostPidNs: number | undefined;
  private readonly hostMntNs: number | undefined;

  constructor(private readonly opts: ContainerRegistryOptions = {}) {
    // Loaded here, not at import: dockerode (through ssh2) costs ~23 MiB of RSS,
    // which a node without Docker should not pay.
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const DockerodeClass = require('dockerode') as typeof Dockerode;
    this.docker = new DockerodeClass({ socketPath: opts.socketPath ?? DOCKER_SOCKET });
    this.reconnectDelay = opts.reconnectMs ?? 500;
    this.procRoot = opts.procRoot ?? '/proc';
    this.hostPidNs = readNamespace(`${this.procRoot}/self/ns/pid`);
    this.hostMntNs = readNamespace(`${this.procRoot}/self/ns/mnt`);
  }

  /** Connects, lists running containers, follows events; never throws: retries while dockerd is away. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.stopPruning();
    const s = this.stream as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
    s?.destroy?.();
    this.stream = undefined;
  }

  isConnected(): boolean {
    return this.connected;
  }

  on(listener: ContainerListener): void {
    this.listeners.push(listener);
  }

  list(): ContainerIdentity[] {
    return [...this.byId.values()];
  }

  /** Container starts dockerd reported that the runtime hook had not (see onUnhookedStart). */
  unhookedStarts(): UnhookedStartsSummary {
    return { count: this.unhookedCount, recent: this.recentUnhooked.map((s) => ({ ...s })) };
  }

  /**
   * The container of a mount namespace. An exited one stays here for late
   * alerts (exitedGraceMs), but only for a process in its pid namespace too:
   * the kernel hands a freed namespace number out again at once, e.g. to a
   * host process's `unshare -m`, which must not be named as that container.
   */
  byMountNamespace(mntNs: number, pidNs?: number): ContainerIdentity | undefined {
    const c = this.byMnt.get(mntNs);
    if (!c || this.isLive(c)) return c;
    return pidNs === undefined || (c.pidNs !== 0 && c.pidNs === pidNs) ? c : undefined;
  }

  private isLive(c: ContainerIdentity): boolean {
    return this.byId.get(c.id) === c;
  }

  /** By pid namespace: a container process that unshared its mount namespace keeps its pid namespace. */
  byPidNamespace(pidNs: number): ContainerIdentity | undefined {
    // --pid=host containers share the host's pid namespace: it names no container.
    if (pidNs === this.hostPidNs) return undefined;
    for (const c of this.byId.values()) if (c.pidNs === pidNs) return c;
    return undefined;
  }

  /** The container of a running host pid, via its mount namespace; undefined for host processes. */
  byPid(pid: number): ContainerIdentity | undefined {
    try {
      const ns = namespaceInode(fs.readlinkSync(`${this.procRoot}/${pid}/ns/mnt`));
      const c = ns === undefined ? undefined : this.byMnt.get(ns);
      // a running process: an exited container's namespace number is someone else's now
      return c && this.isLive(c) ? c : undefined;
    } catch {
      return undefined;
    }
  }

  /** Waits until the registry has listed containers (tests, probe). */
  async waitConnected(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.connected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    return this.connected;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    try {
      // Subscribe first, then list: a container started in between is seen by one or both.
      const stream = (await this.docker.getEvents({ filters: { type: ['container'] } })) as NodeJS.ReadableStream;
      this.stream = stream;
      let buffered = '';
      stream.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) void this.onEvent(line);
        }
      });
      const lost = () => this.onDisconnect();
      stream.on('end', lost);
      stream.on('error', lost);
      const running = await this.docker.listContainers();
      const seen = new Set<string>();
      for (const c of running) {
        seen.add(c.Id);
        await this.inspectAndAdd(c.Id);
      }
      // containers that stopped while we were disconnected
      // (one the runtime hook added while dockerd starts it is not listed yet: kept)
      for (const id of [...this.byId.keys()]) if (!seen.has(id) && !this.awaitingStart.has(id)) this.remove(id);
      this.connected = true;
      this.stopPruning();
      this.reconnectDelay = this.opts.reconnectMs ?? 500;
      this.opts.log?.('info', `docker: following ${this.byId.size} running containers`);
    } catch (err) {
      // Said once per outage: a node without Docker should not fill the log.
      if (!this.unreachableReported) {
        this.opts.log?.('warn', `docker: not reachable (${(err as Error).message}); retrying in the background`);
        this.unreachableReported = true;
      }
      this.scheduleReconnect();
      return;
    }
    this.unreachableReported = false;
  }

  private onDisconnect(): void {
    if (this.stopped || !this.connected) return;
    this.connected = false;
    this.stream = undefined;
    this.opts.log?.('warn', 'docker: event stream lost; keeping known containers and reconnecting');
    this.scheduleReconnect();
    if (!this.pruneTimer) {
      this.pruneTimer = setInterval(() => this.pruneExited(), this.opts.pruneIntervalMs ?? 1000);
      this.pruneTimer.unref();
    }
  }

  private stopPruning(): void {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.pruneTimer = undefined;
  }

  /**
   * While dockerd is away no "die" arrives (with --live-restore containers
   * run and exit on their own). A container whose init is gone, or no longer
   * in the container's mount namespace, is dropped: the kernel hands freed
   * namespace inode numbers out again at once, and a host process that
   * unshares into a recycled one must not be taken for the dead container
   * (host policies would stop applying to it).
   */
  pruneExited(): void {
    for (const c of [...this.byId.values()]) {
      if (readNamespace(`${this.procRoot}/${c.pid}/ns/mnt`) === c.mntNs) continue;
      this.opts.log?.('info', `docker: container ${c.name} (${c.id.slice(0, 12)}) exited while dockerd is away; no longer followed`);
      this.remove(c.id);
      // the namespace is gone: its number may already name another
      if (this.byMnt.get(c.mntNs) === c) this.byMnt.delete(c.mntNs);
    }
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, this.opts.maxReconnectMs ?? 10_000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private async onEvent(line: string): Promise<void> {
    let ev: { status?: string; Action?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } };
    try {
      ev = JSON.parse(line);
    } catch {
      return;
    }
    const action = ev.Action ?? ev.status ?? '';
    const id = ev.Actor?.ID ?? ev.id;
    if (!id) return;
    if (action === 'start') {
      // the hook reports every run at `runc create`, before this event: a start
      // it did not report ran its first program before the rules were in force
      // (also one that exited before the inspect: its program ran all the same)
      const hooked = this.awaitingStart.delete(id);
      const seen = await this.inspectAndAdd(id);
      if (!hooked) {
        const attrs = ev.Actor?.Attributes ?? {};
        this.reportUnhooked({
          id,
          name: (seen?.name || attrs.name || id.slice(0, 12)).replace(/^\//, ''),
          image: seen?.image || attrs.image || '',
          runtime: seen?.runtime ?? '',
          at: new Date().toISOString(),
        });
      }
    } else if (action === 'restart' || action === 'unpause') {
      // `restart` follows that run's `start` (already judged); unpause runs no new program
      this.awaitingStart.delete(id);
      await this.inspectAndAdd(id);
    } else if (action === 'die') {
      // `docker restart`: the runtime hook may add the new run before the old
      // run's die arrives here; a die before the new run's start is the old run's
      if (this.awaitingStart.has(id)) return;
      this.remove(id);
    } else if (action === 'destroy') {
      this.awaitingStart.delete(id);
      this.remove(id);
    } else if (action === 'rename') {
      const c = this.byId.get(id);
      const name = ev.Actor?.Attributes?.name;
      if (c && name) {
        c.name = name.replace(/^\//, '');
        for (const l of this.listeners) l('renamed', c);
      }
    }
  }

  private reportUnhooked(s: UnhookedStart): void {
    this.unhookedCount++;
    this.recentUnhooked.push(s);
    if (this.recentUnhooked.length > RECENT_UNHOOKED) this.recentUnhooked.shift();
    this.opts.log?.('warn', unhookedStartMessage(s));
    try {
      this.opts.onUnhookedStart?.({ ...s });
    } catch (err) {
      this.opts.log?.('warn', `docker: reporting the start of ${s.name} without the runtime hook failed: ${(err as Error).message}`);
    }
  }

  /** Inspects a container and follows it when running; what dockerd says of it (also when exited), undefined when the inspect failed. */
  private async inspectAndAdd(id: string): Promise<{ name: string; image: string; runtime: string } | undefined> {
    let info: Dockerode.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(id).inspect();
    } catch (err) {
      // removed between the event and the inspect: nothing to follow
      this.opts.log?.('warn', `docker: cannot inspect ${id.slice(0, 12)}: ${(err as Error).message}`);
      return undefined;
    }
    const seen = { name: info.Name ?? '', image: info.Config?.Image ?? '', runtime: info.HostConfig?.Runtime ?? '' };
    const pid = info.State?.Pid ?? 0;
    if (!info.State?.Running || pid <= 0) return seen;
    // exited since the inspect: its namespaces are gone, nothing to follow
    const mntNs = readNamespace(`${this.procRoot}/${pid}/ns/mnt`);
    const pidNs = readNamespace(`${this.procRoot}/${pid}/ns/pid`);
    if (mntNs === undefined || pidNs === undefined) return seen;
    this.add({ id: info.Id, name: info.Name, image: info.Config?.Image ?? '', labels: info.Config?.Labels ?? {}, pid }, mntNs, pidNs);
    this.awaitingStart.delete(info.Id); // dockerd confirms it (start event, or listed after a reconnect)
    return seen;
  }

  /**
   * A container the runtime hook reports at `runc create` (its init blocked
   * before exec'ing the entrypoint), before dockerd's `start` event: from
   * its identity as read from the bundle and dockerd's config.v2.json, no
   * Docker API (dockerd holds the container's lock then). The namespaces are
   * read here from /proc/<pid>, not taken from the caller. Throws saying why
   * when the pid cannot be a container's init. Idempotent with the later
   * `start` event: the same identity is not added twice.
   */
  addStarted(c: { id: string; name: string; image: string; labels: Record<string, string>; pid: number }): ContainerIdentity {
    const mntNs = readNamespace(`${this.procRoot}/${c.pid}/ns/mnt`);
    const pidNs = readNamespace(`${this.procRoot}/${c.pid}/ns/pid`);
    if (mntNs === undefined || pidNs === undefined) throw new Error(`pid ${c.pid} of container ${c.id.slice(0, 12)} is not running`);
    // A container in the host's mount namespace would make every host process
    // "this container" for the enforcers: host policies would stop applying.
    if (mntNs === this.hostMntNs) throw new Error(`pid ${c.pid} is in the host's mount namespace: not a container's init`);
    // runc's init waits in its exec fifo until `runc start`: a sanity check that
    // this is the container's init (not a proof: root can name a process anything)
    const comm = readText(`${this.procRoot}/${c.pid}/comm`);
    if (comm !== RUNC_INIT_COMM) throw new Error(`pid ${c.pid} is ${JSON.stringify(comm ?? 'gone')}, not runc's init waiting for start (${RUNC_INIT_COMM})`);
    const added = this.add(c, mntNs, pidNs);
    this.awaitingStart.add(c.id);
    // Kept only until dockerd confirms it: without a start event or a listing
    // within the grace (a start that failed, or a claim dockerd knows nothing
    // of), it is dropped; host policies apply to those processes again.
    const t = setTimeout(() => {
      if (!this.awaitingStart.delete(c.id) || this.byId.get(c.id) !== added) return;
      this.opts.log?.('warn', `docker: container ${added.name} (${c.id.slice(0, 12)}) from the runtime hook was not confirmed by dockerd within ${this.opts.startGraceMs ?? 30_000} ms; no longer followed`);
      this.remove(c.id);
    }, this.opts.startGraceMs ?? 30_000);
    t.unref();
    return added;
  }

  /** Adds (or replaces) container `c` with its namespaces; nothing when the same identity is known already. */
  private add(
    c: { id: string; name: string; image: string; labels: Record<string, string>; pid: number },
    mntNs: number,
    pidNs: number,
  ): ContainerIdentity {
    const labels = c.labels;
    const next: ContainerIdentity = {
      id: c.id,
      name: c.name.replace(/^\//, ''),
      image: c.image,
      labels,
      namespaceName: labels[NAMESPACE_LABEL] ?? DEFAULT_NAMESPACE,
      pid: c.pid,
      mntNs,
      // --pid host: the host's pid namespace is not the container's; naming it would make
      // every host process "this container" for the enforcers (host policies would stop applying)
      pidNs: pidNs === this.hostPidNs ? 0 : pidNs,
    };
    const previous = this.byId.get(c.id);
    // the hook added it, then dockerd's start event: same container, nothing to re-bind
    if (previous && sameIdentity(previous, next)) return previous;
    if (previous && this.byMnt.get(previous.mntNs) === previous) this.byMnt.delete(previous.mntNs);
    this.byId.set(next.id, next);
    this.byMnt.set(mntNs, next);
    for (const l of this.listeners) l('added', next);
    return next;
  }

  private remove(id: string): void {
    const c = this.byId.get(id);
    if (!c) return;
    this.byId.delete(id);
    for (const l of this.listeners) l('removed', c);
    // Late alerts (decided just before the exit) still resolve for a while.
    const t = setTimeout(() => {
      if (this.byMnt.get(c.mntNs) === c) this.byMnt.delete(c.mntNs);
    }, this.opts.exitedGraceMs ?? 30_000);
    t.unref();
  }
}
