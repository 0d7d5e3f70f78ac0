// The runtime hook: run by scripts/edgeward-runc (Docker's runtime, a runc
// wrapper) after `runc create` succeeded, while the container's init waits in
// runc's exec fifo and has not exec'd the entrypoint yet. It reads the
// container's identity without the Docker API (dockerd holds the container's
// lock during start: an inspect would deadlock) and sends it to the agent as
// `container.started`; the agent answers once the container's rules are in
// force. Only then does the wrapper return to containerd, which then runs
// `runc start`. Fail-open by choice: no agent, no answer within the timeout,
// or a container it cannot read are said on stderr and exit 1; the wrapper
// lets the container start anyway unless told to fail closed.
//
// Restart window: an absent socket while the agent is expected (its systemd
// unit starting, restarting or running; or the marker file exists) is waited
// for within the same timeout, not taken as "no agent" at once: a container
// created while the agent restarts would otherwise run its entrypoint
// unrestricted. Trade-off: a unit stopped for good but still "deactivating",
// or a stale marker, costs each container create up to the timeout.
//
//   node runtime_hook.js --bundle DIR --pid-file FILE --id ID [--socket PATH] [--timeout-ms MS]
// Environment: EDGEWARD_CONTROL_SOCKET, EDGEWARD_RUNTIME_HOOK_TIMEOUT_MS,
// EDGEWARD_AGENT_UNIT (default edgeward.service), EDGEWARD_AGENT_EXPECTED_FILE.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { containerStarted, ControlUnavailable } from './control/client';
import type { StartedContainer } from './control/protocol';

export const DEFAULT_HOOK_TIMEOUT_MS = 5000;
const DEFAULT_SOCKET = '/run/edgeward/control.sock';
/** the files dockerd bind-mounts from <docker root>/containers/<id>/ into every container */
const DOCKER_CONTAINER_FILES = new Set(['hostname', 'hosts', 'resolv.conf']);
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export interface HookArgs {
  bundle: string;
  pidFile: string;
  id: string;
  socket: string;
  timeoutMs: number;
  /** the agent's systemd unit: while it is starting, restarting or running, an absent socket is waited for */
  agentUnit: string;
  /** a file whose presence says the agent is expected (supervisors other than systemd); undefined: none */
  expectedFile: string | undefined;
}

export const DEFAULT_AGENT_UNIT = 'edgeward.service';
/** `systemctl is-active` states in which the agent's socket will be (back) soon */
export const AGENT_EXPECTED_STATES: ReadonlySet<string> = new Set(['active', 'activating', 'deactivating', 'reloading', 'refreshing']);
const SOCKET_POLL_MS = 50;

/** Parses the hook's arguments; throws naming the bad one. Environment: EDGEWARD_CONTROL_SOCKET, EDGEWARD_RUNTIME_HOOK_TIMEOUT_MS. */
export function parseHookArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): HookArgs {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--(bundle|pid-file|id|socket|timeout-ms)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`runtime hook: unknown argument ${JSON.stringify(a)}`);
    const v = m[2] ?? argv[++i];
    if (v === undefined || v === '') throw new Error(`runtime hook: --${m[1]} needs a value`);
    values.set(m[1]!, v);
  }
  for (const k of ['pid-file', 'id']) if (!values.has(k)) throw new Error(`runtime hook: --${k} is required`);
  const rawTimeout = values.get('timeout-ms') ?? env.EDGEWARD_RUNTIME_HOOK_TIMEOUT_MS;
  let timeoutMs = DEFAULT_HOOK_TIMEOUT_MS;
  if (rawTimeout !== undefined && rawTimeout !== '') {
    timeoutMs = Number(rawTimeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new Error(`runtime hook: timeout must be a positive integer (ms), got ${JSON.stringify(rawTimeout)}`);
  }
  return {
    bundle: path.resolve(values.get('bundle') ?? '.'),
    pidFile: path.resolve(values.get('pid-file')!),
    id: values.get('id')!,
    socket: values.get('socket') ?? (env.EDGEWARD_CONTROL_SOCKET || DEFAULT_SOCKET),
    timeoutMs,
    agentUnit: env.EDGEWARD_AGENT_UNIT || DEFAULT_AGENT_UNIT,
    expectedFile: env.EDGEWARD_AGENT_EXPECTED_FILE || undefined,
  };
}

/** The unit's `systemctl is-active` state; undefined without systemd (or systemctl). */
export function systemdUnitState(unit: string): string | undefined {
  if (!fs.existsSync('/run/systemd/system')) return undefined;
  const r = spawnSync('systemctl', ['is-active', unit], { encoding: 'utf8', timeout: 2000 });
  if (r.error || typeof r.stdout !== 'string') return undefined;
  return r.stdout.split('\n')[0]!.trim() || undefined;
}

/**
 * Why the agent is expected to be listening soon, or undefined when it is
 * not (stopped, failed, never installed): then an absent socket fails open at once.
 */
export function agentExpected(
  args: Pick<HookArgs, 'agentUnit' | 'expectedFile'>,
  unitState: (unit: string) => string | undefined = systemdUnitState,
  exists: (file: string) => boolean = fs.existsSync,
): string | undefined {
  if (args.expectedFile && exists(args.expectedFile)) return `${args.expectedFile} exists`;
  const state = unitState(args.agentUnit);
  if (state !== undefined && AGENT_EXPECTED_STATES.has(state)) return `${args.agentUnit} is ${state}`;
  return undefined;
}

/**
 * container.started, retried while nobody listens and the agent is expected,
 * until timeoutMs from now in all: the answer, or the last error (its message
 * saying the agent was expected when it was waited for).
 */
export async function reportWithRestartWait(
  args: Pick<HookArgs, 'socket' | 'timeoutMs' | 'agentUnit' | 'expectedFile'>,
  container: StartedContainer,
  expected: () => string | undefined = () => agentExpected(args),
  send: typeof containerStarted = containerStarted,
): Promise<void> {
  const deadline = Date.now() + args.timeoutMs;
  let why: string | undefined | null = null; // null: not asked yet
  for (;;) {
    const left = deadline - Date.now();
    try {
      await send(args.socket, container, Math.max(1, left));
      return;
    } catch (e) {
      if (!(e instanceof ControlUnavailable) || !e.notRunning) throw e;
      if (why === null) why = expected();
      if (why === undefined) throw e;
      if (Date.now() + SOCKET_POLL_MS >= deadline) {
        throw new Error(`the agent is expected (${why}) but nothing listened on ${args.socket} within ${args.timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, SOCKET_POLL_MS));
    }
  }
}

function readJson(file: string, what: string): unknown {
  const st = fs.statSync(file);
  if (st.size > MAX_CONFIG_BYTES) throw new Error(`${what} ${file} is larger than ${MAX_CONFIG_BYTES} bytes`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${what} ${file} is not JSON: ${(e as Error).message}`);
  }
}

/**
 * dockerd's directory of container `id` (<docker root>/containers/<id>),
 * found through the files it bind-mounts from there (/etc/hostname, hosts,
 * resolv.conf) in the bundle's OCI config; undefined: not a Docker container.
 */
export function dockerContainerDir(spec: unknown, id: string): string | undefined {
  const mounts = (spec as { mounts?: unknown })?.mounts;
  if (!Array.isArray(mounts)) return undefined;
  for (const m of mounts) {
    const source = (m as { source?: unknown })?.source;
    if (typeof source !== 'string' || !path.isAbsolute(source)) continue;
    const dir = path.dirname(source);
    if (!DOCKER_CONTAINER_FILES.has(path.basename(source)) || path.basename(dir) !== id || path.basename(path.dirname(dir)) !== 'containers') continue;
    return dir;
  }
  return undefined;
}

/** The container's identity from dockerd's config.v2.json (Name, Config.Labels, Config.Image); throws naming the file and field. */
export function identityFromDockerConfig(config: unknown, id: string, file: string): Omit<StartedContainer, 'pid'> {
  const c = config as { ID?: unknown; Name?: unknown; Config?: { Labels?: unknown; Image?: unknown } };
  if (typeof c !== 'object' || c === null) throw new Error(`${file}: not an object`);
  if (c.ID !== id) throw new Error(`${file}: ID ${JSON.stringify(c.ID)} is not container ${id}`);
  if (typeof c.Name !== 'string' || c.Name.replace(/^\//, '') === '') throw new Error(`${file}: Name is missing`);
  const rawLabels = c.Config?.Labels ?? {};
  if (typeof rawLabels !== 'object' || rawLabels === null || Array.isArray(rawLabels)) throw new Error(`${file}: Config.Labels is not an object`);
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(rawLabels)) {
    if (typeof v !== 'string') throw new Error(`${file}: Config.Labels[${JSON.stringify(k)}] is not a string`);
    labels[k] = v;
  }
  const image = c.Config?.Image;
  return { id, name: c.Name.replace(/^\//, ''), image: typeof image === 'string' ? image : '', labels };
}

/** The pid runc wrote to --pid-file. */
export function readPidFile(file: string): number {
  const text = fs.readFileSync(file, 'utf8').trim();
  const pid = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(pid) || pid <= 1) throw new Error(`pid file ${file} holds ${JSON.stringify(text)}, not a pid`);
  return pid;
}

/** What the hook sends; undefined when the bundle is not a Docker container's (nothing to report). */
export function readStartedContainer(args: Pick<HookArgs, 'bundle' | 'pidFile' | 'id'>): StartedContainer | undefined {
  const spec = readJson(path.join(args.bundle, 'config.json'), 'OCI config');
  const dir = dockerContainerDir(spec, args.id);
  if (!dir) return undefined;
  const file = path.join(dir, 'config.v2.json');
  const identity = identityFromDockerConfig(readJson(file, 'dockerd container config'), args.id, file);
  return { ...identity, pid: readPidFile(args.pidFile) };
}

/** Exit status: 0 the agent has the container's rules in force (or it is no Docker container); 1 it does not. */
export async function runHook(argv: string[], env: NodeJS.ProcessEnv = process.env, say: (m: string) => void = (m) => process.stderr.write(`edgeward-runc: ${m}\n`)): Promise<number> {
  let args: HookArgs;
  let container: StartedContainer | undefined;
  try {
    args = parseHookArgs(argv, env);
    container = readStartedContainer(args);
  } catch (e) {
    say(`container not reported to the agent: ${(e as Error).message}; it starts without waiting for its rules (fail-open)`);
    return 1;
  }
  if (!container) return 0;
  try {
    await reportWithRestartWait(args, container);
    return 0;
  } catch (e) {
    say(
      `container ${container.name} (${container.id.slice(0, 12)}) starts without waiting for its rules (fail-open): ${(e as Error).message}`,
    );
    return 1;
  }
}

if (require.main === module) {
  void runHook(process.argv.slice(2)).then((rc) => process.exit(rc));
}
