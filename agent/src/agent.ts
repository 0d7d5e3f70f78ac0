// The daemon: probe the kernel, start the event pipeline, load and compile
// the policy directory, hand the rules to the backend, and turn decisions
// into alerts. Runs until stop(); stop() detaches everything it attached.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type * as winston from 'winston';
import { EventKind, NetOp } from './abi';
import { AlertBuilder, BootClock, ContainerFacts, DecisionFacts, KubeArmorAlert } from './alerts';
import { AlertThrottle } from './alert_throttle';
import { AuditOnlyBackend } from './audit_only_backend';
import type { ApplyResult, EnforcementBackend } from './backend';
import { CompatBackend } from './compat_backend';
import { LsmBackend } from './lsm_backend';
import { PIN_ROOT } from './lsm_enforcer';
import { SelfProtection } from './lsm_self_protect';
import { ContainerRegistry, dockerSocketPath } from './containers';
import { hostRulesOnly, WorkloadBinding } from './workloads';
import type { AgentConfig } from './config';
import { AppliedPolicyStore, appliedPolicyDirectory } from './control/applied_store';
import { ControlHost, ControlServer } from './control/server';
import type { ContainerStartedResult, StartedContainer, StatusReport } from './control/protocol';
import type { EwEvent } from './events';
// not './hub': its index also loads the hub service's code (SQLite), which a node never runs
import { createHubClient, HubClient, HubClientStatus } from './hub/client';
import { hubPolicyDirectory } from './hub/options';
import { formatHubError } from './hub/result';
import { ensureKernelFilesystems } from './kernel_fs';
import { createAlertLogger, createLogger } from './logger';
import { acquireInstanceLock, InstanceLock } from './instance_lock';
import { EventPipeline } from './monitor';
import { loadNative, NativeAddon } from './native';
import { CompileOptions, compilePolicies, formatCompileError } from './policy/compiler';
import { mergeWithLastGood } from './policy/last_good';
import { formatPolicyError, isPolicyFileName, LoadedPolicy, loadPolicyDirectories, symlinkedPathWarnings } from './policy/loader';
import { renumberRules } from './policy/renumber';
import type { CompiledPolicySet, RuleMeta } from './policy/types';
import { probe, ProbeReport } from './probe';
import { ProcessTable } from './process_table';
import { KubeArmorLog, KubeArmorRecord, LogBuilder, LogThrottle, visibilityEnabled } from './visibility';
import { ContainerVisibility, VisibilityGroup } from './visibility_labels';

const HOUSEKEEPING_MS = 10_000;
const DOCKER_WAIT_MS = 3_000;

export interface PolicyLoadSummary {
  files: number;
  policies: number;
  rules: number;
  /** policies refused: formatted, one line each */
  errors: string[];
  /** rules accepted but not (yet) in force on this node, e.g. their file does not exist */
  warnings: string[];
}

export interface AgentStatus {
  backend: string;
  rulesInForce: number;
  alerts: number;
  processes: number;
  lastLoad: PolicyLoadSummary | undefined;
  /** absent: no hub configured */
  hub?: HubClientStatus;
  /** alerts counted into throttle summaries instead of written one by one */
  alertsSuppressed: number;
  /** telemetry log records (config visibility) since start, including those summarised */
  logs: number;
  logsSuppressed: number;
  /** visibility groups on */
  visibility: string[];
}

export interface AgentOptions {
  /**
   * bpf-lsm pins its programs and rules so that they keep enforcing after the
   * agent stops or crashes (a restart adopts them). With this, stop() removes
   * them instead: nothing is enforced once the agent is gone.
   */
  detachOnExit?: boolean;
}

export class Agent {
  readonly log: winston.Logger;
  private readonly alertLog: winston.Logger;
  private readonly native: NativeAddon;
  private readonly processes = new ProcessTable();
  private pipeline: EventPipeline | undefined;
  private backend: EnforcementBackend | undefined;
  private selfProtection: SelfProtection | undefined;
  private instanceLock: InstanceLock | undefined;
  private meta = new Map<number, RuleMeta>();
  /** the previous rule set's metadata, for decisions taken just before a switch */
  private previousMeta = new Map<number, RuleMeta>();
  /** policies in force (the last good version of each) */
  private accepted: LoadedPolicy[] = [];
  private auditOnly: AuditOnlyBackend | undefined;
  private housekeeping: NodeJS.Timeout | undefined;
  private containers: ContainerRegistry | undefined;
  /** compat: rules resolved against the running containers, again when they change */
  private workloads: WorkloadBinding | undefined;
  private lostReported = 0;
  private dockerHostWarned = false;
  /** watches for dockerd's socket while it does not exist (dockerd starting after the agent, as at boot) */
  private dockerSocketWatch: fs.FSWatcher | undefined;
  private alertCount = 0;
  private generation = 0;
  private lastLoad: PolicyLoadSummary | undefined;
  private report: ProbeReport | undefined;
  private readonly onAlert: Array<(a: KubeArmorRecord) => void> = [];
  /** visibility: builds telemetry log records (node-wide config, or a container's kubearmor-visibility label) */
  private logBuilder: LogBuilder | undefined;
  /** which records are wanted: per container label, else the node-wide config */
  private visibility: ContainerVisibility | undefined;
  private readonly logThrottle: LogThrottle;
  /** visibility.logFile; absent: logs go to the alert outputs */
  private readonly logOutput: winston.Logger | undefined;
  private logCount = 0;
  /** log records the hub spool refused (full of alerts, too large): counted, said at debug level */
  private hubLogsRefused = 0;
  private hub: HubClient | undefined;
  /** alerts the hub spool refused since the last warning (the spool counts them too) */
  private hubRefused = 0;
  private hubRefusedWarnedAt = 0;
  private readonly throttle: AlertThrottle;
  /** policies applied through the control socket (<stateDirectory>/policies) */
  private readonly applied: AppliedPolicyStore;
  private control: ControlServer | undefined;
  private readonly startedAt = new Date();

  constructor(
    private readonly config: AgentConfig,
    private readonly options: AgentOptions = {},
  ) {
    this.log = createLogger({
      level: config.logging.level,
      format: config.logging.format,
      file: config.logging.file,
    });
    this.alertLog = createAlertLogger({
      stdout: config.alerts.stdout,
      format: config.logging.format,
      file: config.alerts.file,
    });
    this.native = loadNative();
    this.throttle = new AlertThrottle(config.alerts.throttle, (a) => this.deliver(a));
    this.logThrottle = new LogThrottle(config.alerts.throttle, (l) => this.deliverLog(l));
    if (config.visibility.logFile) {
      this.logOutput = createAlertLogger({ stdout: false, format: 'json', file: config.visibility.logFile });
    }
    this.applied = new AppliedPolicyStore(appliedPolicyDirectory(config.stateDirectory));
  }

  /** Everything up to "enforcing". Throws when the agent cannot run at all. */
  async start(): Promise<void> {
    // one agent per state directory: two would fight over the applied store, the spool and the pins
    if (typeof this.native.tryLockFile !== 'function') throw new Error('the native addon has no tryLockFile (rebuild it: npm run build)');
    this.instanceLock = acquireInstanceLock(path.join(this.config.stateDirectory, 'agent.lock'), (fd) => this.native.tryLockFile!(fd));
    for (const problem of ensureKernelFilesystems()) this.log.warn(problem);
    const report = probe(this.native, this.config.backend);
    this.report = report;
    if ('error' in report && report.error) throw new Error(report.error);
    this.log.info(`kernel ${report.kernel}, backend ${report.backend}`, { reasons: report.reasons });

    const seeded = this.processes.seedFromProc();
    this.log.debug(`process table seeded with ${seeded} processes from /proc`);

    // audit-only sees violations only through the monitor: observe everything.
    const auditOnly = report.backend === 'audit-only';
    const clock = new BootClock(readUptime());
    const resolveContainer = (mntNs: number | undefined, pidNs: number | undefined, pid: number): ContainerFacts | undefined => {
      const containers = this.containers;
      if (!containers) return undefined;
      return (
        (mntNs !== undefined ? containers.byMountNamespace(mntNs, pidNs) : undefined) ??
        (pidNs !== undefined ? containers.byPidNamespace(pidNs) : undefined) ??
        containers.byPid(pid)
      );
    };
    const builder = new AlertBuilder(this.hostName(), clock, this.processes, (id) => this.lookupMeta(id), resolveContainer);
    const visibility = this.config.visibility;
    // visibility logs what the monitor sees: its groups on (fixed at start; a container label cannot add one)
    const monitored = {
      process: this.config.monitor.process || auditOnly || visibility.process,
      file: this.config.monitor.file || auditOnly || visibility.file,
      network: this.config.monitor.network || auditOnly || visibility.network,
    };
    this.logBuilder = new LogBuilder(this.hostName(), clock, this.processes, resolveContainer);
    this.visibility = new ContainerVisibility(visibility, monitored, (m) => this.log.warn(`visibility: ${m}`));
    if (visibilityEnabled(visibility)) {
      this.log.info(`visibility: telemetry logs of ${this.visibilityGroups().join(', ')} events (HostLog / ContainerLog)`);
    }
    this.pipeline = new EventPipeline(
      this.native,
      {
        ringBufferBytes: this.config.monitor.ringBufferBytes,
        pollIntervalMs: this.config.monitor.pollIntervalMs,
        ...monitored,
      },
      (events) => this.onEvents(events, builder),
      (err) => this.log.error(`event handling failed: ${(err as Error)?.stack ?? err}`),
    );

    if (report.backend === 'bpf-lsm') {
      const lsm = new LsmBackend(this.native, this.pipeline.ring, {
        // always pinned: a crash must not open a window; --detach-on-exit removes the pins at stop()
        pin: true,
        onReapply: (r) => {
          this.log.info(`bpf-lsm: rules resolved again (${r.trigger} changed)`);
          for (const e of r.errors) this.log.warn(e);
        },
      });
      this.backend = lsm;
      this.workloads = this.bindWorkloads((set) => lsm.apply(set));
      if (this.config.selfProtection.enabled) this.protectSelf(lsm);
      if (lsm.adopted()) {
        this.log.info('bpf-lsm: adopted the rules an earlier agent left pinned; they stay in force until the new set replaces them', { event: 'adopted' });
      }
    } else if (report.backend === 'compat') {
      const compat = new CompatBackend(this.native, this.pipeline.sink, this.pipeline.ring, report.features.cgroup2Path);
      this.backend = compat;
      this.workloads = this.bindWorkloads((set) => compat.apply(set));
    } else {
      this.auditOnly = new AuditOnlyBackend();
      this.backend = this.auditOnly;
      this.log.warn(`backend ${report.backend}: nothing is refused; rules are matched against monitored events and alerted`);
    }
    // Alerts name containers: know the running ones before saying "ready"
    // (bounded: a node without dockerd must not wait).
    if (this.followContainersIfDocker()) await this.containers!.waitConnected(DOCKER_WAIT_MS);
    // The hub's last good bundles come from disk: enforced from the first load, before any network.
    this.openHub();
    this.reload();
    await this.openControl();
    this.hub?.start();
    // The native threads do not keep node's event loop alive; this timer does,
    // and it makes lost events visible instead of silent.
    this.housekeeping = setInterval(() => this.checkPipeline(), HOUSEKEEPING_MS);
  }

  /** Container rules resolved against the running containers, and again whenever they change. */
  private bindWorkloads(apply: (set: CompiledPolicySet) => ApplyResult): WorkloadBinding {
    return new WorkloadBinding(
      apply,
      () => this.containers?.list() ?? [],
      (r) => {
        this.log.info(`containers changed: ${r.rules} rules in force`);
        for (const e of r.errors) this.log.warn(e);
      },
    );
  }

  /**
   * Creates the hub client when configured. A hub that cannot be set up
   * (e.g. its CA file is missing) is reported; the node still enforces its
   * own policies and the hub's last good ones, which are already on disk.
   */
  private openHub(): void {
    const config = this.config.hub;
    if (!config) return;
    const created = createHubClient({
      config,
      stateDirectory: this.config.stateDirectory,
      requestReload: () => this.reload({ fromHub: true }),
      currentLoad: () => this.lastLoad,
      log: {
        error: (m, meta) => this.log.error(m, meta),
        warn: (m, meta) => this.log.warn(m, meta),
        info: (m, meta) => this.log.info(m, meta),
        debug: (m, meta) => this.log.debug(m, meta),
      },
    });
    if (!created.ok) {
      for (const e of created.error) this.log.error(`hub: ${formatHubError(e)}; not syncing with the hub`);
      return;
    }
    this.hub = created.value;
    this.log.info(`hub: node ${this.hub.identity.org}/${this.hub.identity.node}, policies from ${this.hub.policyDirectory}`);
  }

  /**
   * Where policies come from: the operator's directory first (it wins a name
   * clash), then those applied through the control socket, then the hub's.
   */
  private policyDirectories(): string[] {
    const dirs = [this.config.policyDirectory, this.applied.directory];
    if (this.config.hub) dirs.push(hubPolicyDirectory(this.config.stateDirectory));
    return dirs;
  }

  private compileOptions(): CompileOptions {
    return { hostname: this.hostName(), nodeLabels: this.config.node.labels ?? {}, posture: this.config.defaultPosture };
  }

  /**
   * The operator's control socket (edgeward policy/logs/status). Without it
   * the agent still enforces: a socket that cannot be opened is an error in
   * the log, not a reason to stop protecting the node.
   */
  private async openControl(): Promise<void> {
    const socketPath = this.config.control.socket;
    const control = new ControlServer(this.controlHost(), this.applied, (fd) => this.native.peerCredentials(fd));
    try {
      await control.listen(socketPath);
      this.control = control;
      this.log.info(`control socket ${socketPath}`);
    } catch (e) {
      await control.close();
      this.log.error(`${(e as Error).message}; edgeward policy/logs/status cannot reach this agent`);
    }
  }

  private controlHost(): ControlHost {
    const operatorDir = path.resolve(this.config.policyDirectory);
    return {
      inForce: () => this.accepted,
      compileErrors: (policies) => compilePolicies(policies, this.compileOptions()).errors.map(formatCompileError),
      reload: () => this.reload(),
      originOf: (file) => (path.dirname(path.resolve(file)) === operatorDir ? 'operator' : this.applied.holds(file) ? 'applied' : 'hub'),
      status: () => this.statusReport(),
      subscribe: (listener) => this.subscribe(listener),
      log: { info: (m) => this.log.info(m), warn: (m) => this.log.warn(m) },
      containerStarted: (c) => this.containerStarted(c),
    };
  }

  /**
   * The runtime hook (scripts/edgeward-runc) reports a container at `runc
   * create`, its entrypoint not exec'd yet: add it, answer once its rules are
   * in force (the hook holds the container's start until then).
   */
  private async containerStarted(c: StartedContainer): Promise<ContainerStartedResult> {
    this.followContainersIfDocker();
    const containers = this.containers;
    if (!containers) throw new Error(`the agent follows no Docker daemon (nothing at ${dockerSocketPath().path})`);
    const added = containers.addStarted(c);
    // The 'added' listener had the binding re-resolve on the next check phase
    // (setImmediate, synchronous apply); an immediate queued now runs after it.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return { id: added.id, name: added.name, mntNs: added.mntNs, pidNs: added.pidNs };
  }

  private statusReport(): StatusReport {
    return {
      ...this.status(),
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      socket: this.config.control.socket,
      policyDirectories: this.policyDirectories(),
      kernel: this.report?.kernel,
      lsms: this.report?.lsms,
      ruleKinds: this.report ? { ...this.report.ruleKinds } : undefined,
      containers: (this.containers?.list() ?? []).map((c) => ({ id: c.id, name: c.name, image: c.image, labels: c.labels, namespaceName: c.namespaceName, pid: c.pid })),
      ...(this.containers ? { containersStartedWithoutHook: this.containers.unhookedStarts() } : {}),
      ...(this.selfProtection ? { selfProtection: { refused: { ...this.selfProtection.stats().refused } } } : {}),
    };
  }

  /** Starts following Docker once its socket exists (dockerd may start after the agent). */
  private followContainersIfDocker(): boolean {
    if (this.containers) return true;
    const socket = dockerSocketPath();
    if (socket.ignored && !this.dockerHostWarned) {
      this.log.warn(socket.ignored);
      this.dockerHostWarned = true;
    }
    if (!fs.existsSync(socket.path)) {
      this.watchForDockerSocket(socket.path);
      return false;
    }
    this.dockerSocketWatch?.close();
    this.dockerSocketWatch = undefined;
    this.containers = new ContainerRegistry({ socketPath: socket.path, log: (level, message) => this.log[level](message) });
    this.containers.on((event, c) => {
      if (event === 'removed') this.visibility?.containerRemoved(c.id);
      else this.visibility?.containerAdded(c);
      this.workloads?.containersChanged();
    });
    void this.containers.start();
    return true;
  }

  /**
   * At boot the agent usually starts before dockerd: containers dockerd starts
   * (restart policies) must be followed as soon as its socket appears, not at
   * the next housekeeping round. Without the directory, housekeeping checks.
   */
  private watchForDockerSocket(socketPath: string): void {
    if (this.dockerSocketWatch) return;
    try {
      this.dockerSocketWatch = fs.watch(path.dirname(socketPath), { persistent: false }, (_event, name) => {
        if (name === null || name === path.basename(socketPath)) this.followContainersIfDocker();
      });
      this.dockerSocketWatch.on('error', () => {
        this.dockerSocketWatch?.close();
        this.dockerSocketWatch = undefined;
      });
    } catch {
      // e.g. the directory does not exist yet: the housekeeping round looks again
    }
  }

  /** Warns when the kernel or userspace dropped events since the last check. */
  private checkPipeline(): void {
    this.followContainersIfDocker();
    const s = this.pipeline?.stats();
    if (!s) return;
    const lost = s.kernelDropped + s.userspaceDropped + s.decodeErrors;
    if (lost > this.lostReported) {
      this.log.warn(
        `events lost since start: ${s.kernelDropped} (ring buffer full), ${s.userspaceDropped} (agent behind), ${s.decodeErrors} (undecodable); raise monitor.ringBufferBytes or observe fewer groups`,
        { event: 'events-lost', ...s },
      );
      this.lostReported = lost;
    }
  }

  /** Loads the policy directories again and replaces the rules in force. */
  reload(origin: { fromHub?: boolean } = {}): PolicyLoadSummary {
    const dirs = this.policyDirectories();
    // The hub's directory exists once a bundle arrived: before that it is simply empty.
    const loaded = loadPolicyDirectories(dirs.filter((d, i) => i === 0 || fs.existsSync(d)));
    const errors = loaded.errors.map(formatPolicyError);
    const options = this.compileOptions();

    // Compile; a policy refused now (load or compile error) keeps its last
    // good version, and the set is compiled again with it.
    let merged = mergeWithLastGood(loaded.policies, loaded.errors, new Set(), this.accepted, fs.existsSync);
    let compiled = compilePolicies(merged.policies, options);
    const refused = new Set(compiled.errors.map((e) => e.policyName));
    errors.push(...compiled.errors.map(formatCompileError));
    if (refused.size > 0) {
      merged = mergeWithLastGood(loaded.policies, loaded.errors, refused, this.accepted, fs.existsSync);
      compiled = compilePolicies(merged.policies, options);
      errors.push(...compiled.errors.map(formatCompileError).filter((e) => !errors.includes(e)));
    }
    for (const k of merged.kept) this.log.warn(k);
    // A rule on /bin/x never matches on merged-/usr systems: the kernel reports /usr/bin/x.
    for (const w of symlinkedPathWarnings(loaded.policies)) this.log.warn(formatPolicyError(w));
    for (const s of compiled.skipped) this.log.info(s.message);
    const stillRefused = new Set(compiled.errors.map((e) => e.policyName));
    this.accepted = merged.policies.filter((p) => !stillRefused.has(p.name));

    // Each load gets its own id range, so a decision taken under the previous
    // rule set is still reported with that set's policy, never a new one's.
    this.generation = (this.generation % 4095) + 1;
    const set = renumberRules(compiled.set, this.generation * 2 ** 20);
    let rules = set.pathRules.length + set.networkRules.length;
    const notInForce: string[] = [];
    if (this.backend) {
      let applied;
      if (this.workloads) {
        applied = this.workloads.apply(set);
      } else {
        // A backend that does not scope rules would apply container rules to every process.
        const host = hostRulesOnly(set, this.backend.name);
        applied = this.backend.apply(host.set);
        applied = { ...applied, errors: [...host.errors, ...applied.errors] };
      }
      // e.g. a rule's file does not exist (yet): the policy is valid, the node differs
      notInForce.push(...applied.errors);
      rules = applied.rules;
    }
    for (const w of notInForce) this.log.warn(w);
    this.previousMeta = this.meta;
    this.meta = set.meta;
    for (const e of errors) this.log.error(e);
    const files = dirs.reduce((n, d) => n + (fs.existsSync(d) ? fs.readdirSync(d).filter(isPolicyFileName).length : 0), 0);
    this.lastLoad = { files, policies: this.accepted.length, rules, errors, warnings: notInForce };
    // the hub client reports a reload it asked for itself
    if (!origin.fromHub) this.hub?.policyReloaded(this.lastLoad);
    this.log.info(`enforcing ${rules} rules from ${this.accepted.length} policies in ${dirs.join(', ')}`, {
      event: 'ready',
      backend: this.backend?.name,
      rules,
      errors: errors.length,
      warnings: notInForce.length,
    });
    return this.lastLoad;
  }

  status(): AgentStatus {
    return {
      backend: this.backend?.name ?? this.report?.backend ?? 'none',
      rulesInForce: this.lastLoad?.rules ?? 0,
      alerts: this.alertCount,
      processes: this.processes.size(),
      lastLoad: this.lastLoad,
      ...(this.hub ? { hub: this.hub.status() } : {}),
      alertsSuppressed: this.throttle.stats().suppressed,
      logs: this.logCount,
      logsSuppressed: this.logThrottle.stats().suppressed,
      visibility: this.visibilityGroups(),
    };
  }

  private visibilityGroups(): string[] {
    const v = this.config.visibility;
    return (['process', 'file', 'network'] as const).filter((g) => v[g]);
  }

  /** Every alert and telemetry log record as the outputs get them (after throttling). Returns the unsubscribe function. */
  subscribe(listener: (a: KubeArmorRecord) => void): () => void {
    this.onAlert.push(listener);
    return () => {
      const i = this.onAlert.indexOf(listener);
      if (i !== -1) this.onAlert.splice(i, 1);
    };
  }

  /** bpf-lsm self-protection (agent/src/lsm_self_protect.ts); a failure is a warning, never a stop. */
  private protectSelf(lsm: LsmBackend): void {
    try {
      this.selfProtection = new SelfProtection(this.native, { stopperPid: this.config.selfProtection.stopperPid });
      const install = path.resolve(__dirname, '..', '..', '..'); // dist/agent/src -> the installation
      fs.mkdirSync(this.config.stateDirectory, { recursive: true, mode: 0o700 });
      const r = this.selfProtection.protect({
        directories: [this.config.stateDirectory, PIN_ROOT, install],
        files: [process.execPath],
        keepMounted: [PIN_ROOT],
        mapIds: lsm.mapIds(),
      });
      for (const e of r.errors) this.log.warn(e);
      this.log.info(`self-protection in force: only pid ${this.config.selfProtection.stopperPid} may signal the agent`, { event: 'self-protected' });
    } catch (err) {
      this.selfProtection?.close();
      this.selfProtection = undefined;
      this.log.warn(`self-protection not in force: ${(err as Error).message}`);
    }
  }

  /**
   * Stops. compat and audit-only detach everything; bpf-lsm leaves its pinned
   * rules in force unless the agent was started with detachOnExit.
   */
  async stop(): Promise<void> {
    if (this.housekeeping) clearInterval(this.housekeeping);
    // first: from here on edgeward unload and edits of the state directory are not refused
    this.selfProtection?.close();
    this.selfProtection = undefined;
    await this.control?.close();
    this.control = undefined;
    // pending throttle summaries go out before the outputs close
    this.throttle.flush();
    this.logThrottle.flush();
    // alerts not yet delivered stay in the spool for the next start
    await this.hub?.stop().catch((e: unknown) => this.log.warn(`hub: stop: ${(e as Error)?.message ?? e}`));
    this.hub = undefined;
    this.dockerSocketWatch?.close();
    this.dockerSocketWatch = undefined;
    this.containers?.stop();
    this.workloads?.close();
    this.workloads = undefined;
    this.housekeeping = undefined;
    if (this.backend instanceof LsmBackend && !this.options.detachOnExit) {
      // the pinned programs and rules keep enforcing; `edgeward unload` removes them
      this.backend.release();
      this.log.info('bpf-lsm: rules stay in force after exit (pinned); edgeward unload removes them');
    } else {
      this.backend?.close();
    }
    this.backend = undefined;
    this.pipeline?.close();
    this.pipeline = undefined;
    this.instanceLock?.release();
    this.instanceLock = undefined;
    await Promise.all(
      [this.alertLog, this.logOutput].map(
        (out) =>
          out &&
          new Promise<void>((resolve) => {
            out.on('finish', () => resolve());
            out.end();
            setTimeout(resolve, 1000).unref();
          }),
      ),
    );
  }

  private hostName(): string {
    return this.config.node.hostname ?? os.hostname();
  }

  private lookupMeta(ruleId: number): RuleMeta | undefined {
    return this.meta.get(ruleId) ?? this.previousMeta.get(ruleId);
  }

  private onEvents(events: EwEvent[], builder: AlertBuilder): void {
    const matcher = this.auditOnly?.matcher();
    // visibility off everywhere: one check per event and group, nothing else
    const logs = this.logBuilder;
    const visible = this.visibility;
    const self = process.pid;
    for (const ev of events) {
      switch (ev.kind) {
        case EventKind.Exec:
          // the table still holds the caller's image: KubeArmor's fromSource for an exec
          if (matcher) this.emit(builder, matcher.matchExec(ev, ev.path, this.processes.get(ev.pid)?.exe));
          if (logs && visible?.anyWants('process') && ev.pid !== self) this.emitVisible('process', logs.exec(ev, this.processes.get(ev.pid)?.exe));
          this.processes.onExec(ev.pid, ev.ppid, ev.uid, ev.path, ev.comm);
          break;
        case EventKind.Fork:
          this.processes.onFork(ev.pid, ev.childPid);
          break;
        case EventKind.Exit:
          this.processes.onExit(ev.pid);
          logs?.forget(ev.pid);
          break;
        case EventKind.FileOpen:
          if (matcher && ev.ret >= 0) this.emit(builder, matcher.matchOpen(ev, ev.path, ev.flags, this.processes.get(ev.pid)?.exe));
          // not the agent's own opens: each log it writes would log again
          if (logs && visible?.anyWants('file') && ev.pid !== self) this.emitVisible('file', logs.open(ev));
          break;
        case EventKind.Net:
          if (matcher && ev.op === NetOp.Socket) {
            this.emit(builder, matcher.matchSocket(ev, ev.family, ev.sockType, ev.protocol, this.processes.get(ev.pid)?.exe));
          }
          if (logs && visible?.anyWants('network') && ev.pid !== self) this.emitVisible('network', logs.net(ev));
          break;
        case EventKind.Decision:
          this.emit(builder, ev);
          break;
        default:
          break;
      }
    }
  }

  /** The spool refused an alert (full, too large): counted there; said here at most once a minute. */
  private hubRefusedAlert(reason: string): void {
    this.hubRefused++;
    const now = Date.now();
    if (now - this.hubRefusedWarnedAt < 60_000) return;
    this.log.warn(`hub: ${this.hubRefused} alert(s) not spooled for the hub (${reason}); they are in the local alert log`);
    this.hubRefused = 0;
    this.hubRefusedWarnedAt = now;
  }

  private emit(builder: AlertBuilder, decision: DecisionFacts | undefined): void {
    if (!decision) return;
    const alert = builder.build(decision);
    if (!alert) {
      this.log.warn(`decision for unknown rule ${decision.ruleId} (pid ${decision.pid}, ${decision.resource})`);
      return;
    }
    this.alertCount++;
    this.throttle.offer(alert);
  }

  /** A log record of `group`, when the node (host, unlabelled containers) or the container's label wants that group. */
  private emitVisible(group: VisibilityGroup, log: KubeArmorLog): void {
    if (this.visibility?.wants(group, log.ContainerID)) this.emitLog(log);
  }

  private emitLog(log: KubeArmorLog): void {
    this.logCount++;
    this.logThrottle.offer(log);
  }

  /** A telemetry log record (or a throttle summary of them): its output, the hub as telemetry, the control socket. */
  private deliverLog(log: KubeArmorLog): void {
    (this.logOutput ?? this.alertLog).info('alert', { alert: log });
    if (this.hub) {
      const queued = this.hub.enqueueTelemetry(log as unknown as Record<string, unknown>);
      // telemetry gives way to alerts in the spool by design: counted, not warned about
      if (!queued.ok && ++this.hubLogsRefused % 1000 === 1) {
        this.log.debug(`hub: ${this.hubLogsRefused} log record(s) not spooled (${formatHubError(queued.error)})`);
      }
    }
    for (const l of this.onAlert) l(log);
  }

  /** An alert (or a throttle summary) to every output. */
  private deliver(alert: KubeArmorAlert): void {
    this.alertLog.info('alert', { alert });
    if (this.hub) {
      const queued = this.hub.enqueueAlert(alert);
      if (!queued.ok) this.hubRefusedAlert(formatHubError(queued.error));
    }
    for (const l of this.onAlert) l(alert);
  }
}

function readUptime(): number {
  return Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
}
