// The operator commands that talk to the running agent over its control
// socket: status, policy apply|delete|list, logs, and the containers part of
// probe. Tables by default, --json for scripts (the protocol's result as is).
import * as fs from 'fs';
import * as path from 'path';
import { DEFAULT_CONTROL_SOCKET, formatConfigError, loadConfigFile } from '../config';
import { MAX_POLICY_FILE_BYTES, readLimitedTextFile } from '../policy/loader';
import { EXIT_AGENT_NOT_RUNNING, EXIT_FAILURE, EXIT_OK, parseArgs, UsageError } from './args';
import { ControlFailed, ControlUnavailable, follow, request } from './client';
import { formatRecord, formatApply, formatControlError, formatDelete, formatPolicyList, formatStatus } from './format';
import type { ApplyResult, DeleteResult, PolicyListEntry } from './policy_ops';
import { AlertOperation, ContainerSummary, LogFilter, OPERATIONS, PolicyFileText, PROTOCOL_VERSION, RECORD_TYPES, RecordType, StatusReport } from './protocol';
import type { KubeArmorRecord } from '../visibility';

export const DEFAULT_CONFIG_FILE = '/etc/edgeward/config.yaml';

/** Options every client command takes. */
const CLIENT_VALUED = ['socket', 'config'];

const write = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : s + '\n');

/** --socket, else the config file's control.socket, else the default. */
export function resolveSocket(options: Record<string, string | true>): string {
  if (typeof options.socket === 'string') return path.resolve(options.socket);
  const file = typeof options.config === 'string' ? options.config : fs.existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined;
  if (!file) return DEFAULT_CONTROL_SOCKET;
  const { config, errors } = loadConfigFile(file);
  if (!config) throw new UsageError(errors.map(formatConfigError).join('\n'));
  return config.control.socket;
}

/** Runs `fn`; turns the control errors into a message and an exit code (3: the agent is not running). */
async function talk(json: boolean, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ControlFailed) {
      if (json) write(JSON.stringify({ version: PROTOCOL_VERSION, ok: false, error: e.error }, null, 2));
      process.stderr.write(`edgeward: ${formatControlError(e.error)}\n`);
      return EXIT_FAILURE;
    }
    if (e instanceof ControlUnavailable) {
      process.stderr.write(`edgeward: ${e.message}\n`);
      return e.notRunning ? EXIT_AGENT_NOT_RUNNING : EXIT_FAILURE;
    }
    throw e;
  }
}

export async function runStatus(argv: string[]): Promise<number> {
  const { options, positional } = parseArgs(argv, CLIENT_VALUED, ['json']);
  if (positional.length) throw new UsageError(`unexpected argument ${positional[0]}`);
  const socket = resolveSocket(options);
  return talk(options.json === true, async () => {
    const s = await request<StatusReport>(socket, { version: PROTOCOL_VERSION, op: 'status' });
    write(options.json ? JSON.stringify(s, null, 2) : formatStatus(s));
    return EXIT_OK;
  });
}

function readPolicyFiles(paths: string[]): PolicyFileText[] {
  return paths.map((p) => {
    if (p === '-') return { source: '<stdin>', text: fs.readFileSync(0, 'utf8') };
    const file = path.resolve(p);
    const r = readLimitedTextFile(file, MAX_POLICY_FILE_BYTES);
    if ('error' in r) throw new UsageError(`${file}: ${r.error}`);
    return { source: file, text: r.text };
  });
}

/** policy apply|delete|list (validate runs locally, in cli.ts). */
export async function runPolicyCommand(sub: string, argv: string[]): Promise<number> {
  const { options, positional } = parseArgs(argv, CLIENT_VALUED, ['json']);
  const json = options.json === true;
  switch (sub) {
    case 'apply': {
      if (positional.length === 0) throw new UsageError('policy apply needs at least one file (or - for standard input)');
      const files = readPolicyFiles(positional);
      const socket = resolveSocket(options);
      return talk(json, async () => {
        const r = await request<ApplyResult>(socket, { version: PROTOCOL_VERSION, op: 'policy.apply', files });
        write(json ? JSON.stringify(r, null, 2) : formatApply(r));
        return EXIT_OK;
      });
    }
    case 'delete': {
      if (positional.length === 0) throw new UsageError('policy delete needs at least one policy name');
      const socket = resolveSocket(options);
      return talk(json, async () => {
        const r = await request<DeleteResult>(socket, { version: PROTOCOL_VERSION, op: 'policy.delete', names: positional });
        write(json ? JSON.stringify(r, null, 2) : formatDelete(r));
        return EXIT_OK;
      });
    }
    case 'list': {
      if (positional.length) throw new UsageError(`unexpected argument ${positional[0]}`);
      const socket = resolveSocket(options);
      return talk(json, async () => {
        const r = await request<PolicyListEntry[]>(socket, { version: PROTOCOL_VERSION, op: 'policy.list' });
        write(json ? JSON.stringify(r, null, 2) : formatPolicyList(r));
        return EXIT_OK;
      });
    }
    default:
      throw new UsageError(`unknown policy command ${sub}; try: policy apply|delete|list|validate`);
  }
}

export async function runLogs(argv: string[]): Promise<number> {
  const { options, positional } = parseArgs(argv, [...CLIENT_VALUED, 'type', 'container', 'operation', 'policy', 'limit'], ['json', 'follow']);
  if (positional.length) throw new UsageError(`unexpected argument ${positional[0]}`);
  const filter: LogFilter = {};
  if (typeof options.type === 'string') {
    const type = RECORD_TYPES.find((t) => t === (options.type as string).toLowerCase());
    if (!type) throw new UsageError(`--type must be one of ${RECORD_TYPES.join(', ')} (alert: policy alerts, log: telemetry logs of config visibility)`);
    filter.type = type as RecordType;
  }
  if (typeof options.container === 'string') filter.container = options.container;
  if (typeof options.policy === 'string') filter.policy = options.policy;
  if (typeof options.operation === 'string') {
    const op = OPERATIONS.find((o) => o.toLowerCase() === (options.operation as string).toLowerCase());
    if (!op) throw new UsageError(`--operation must be one of ${OPERATIONS.join(', ')}`);
    filter.operation = op as AlertOperation;
  }
  let limit: number | undefined;
  if (typeof options.limit === 'string') {
    limit = Number(options.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a positive integer');
  }
  const json = options.json === true;
  const socket = resolveSocket(options);
  const show = (a: KubeArmorRecord) => write(json ? JSON.stringify(a) : formatRecord(a));

  if (!options.follow) {
    return talk(json, async () => {
      const r = await request<{ alerts: KubeArmorRecord[] }>(socket, {
        version: PROTOCOL_VERSION,
        op: 'logs',
        follow: false,
        filter,
        ...(limit !== undefined ? { limit } : {}),
      });
      for (const a of r.alerts) show(a);
      return EXIT_OK;
    });
  }
  return talk(json, async () => {
    const stream = await follow(socket, { version: PROTOCOL_VERSION, op: 'logs', follow: true, filter }, (line) => {
      if ('alert' in line) show(line.alert);
      else if ('log' in line) show(line.log);
      else if ('missed' in line) process.stderr.write(`edgeward: ${line.missed} record(s) not shown here (this reader was too slow); the agent's outputs have them\n`);
    });
    // on stderr: stdout stays records only (JSON lines with --json)
    const what = { alert: 'alerts', log: 'telemetry logs', all: 'alerts and telemetry logs' }[filter.type ?? 'alert'];
    process.stderr.write(`edgeward: following ${what} (Ctrl-C stops)\n`);
    let interrupted = false;
    const stop = () => {
      interrupted = true;
      stream.close();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await stream.done.catch(() => undefined);
    if (interrupted) return EXIT_OK;
    process.stderr.write('edgeward: the agent closed the stream (stopped?)\n');
    return EXIT_AGENT_NOT_RUNNING;
  });
}

/** The containers the running agent sees, for `edgeward probe`; null with the reason when it cannot be asked. */
export async function containersSeen(options: Record<string, string | true>): Promise<{ containers: ContainerSummary[] | null; note?: string }> {
  try {
    const s = await request<StatusReport>(resolveSocket(options), { version: PROTOCOL_VERSION, op: 'status' }, 5_000);
    return { containers: s.containers };
  } catch (e) {
    return { containers: null, note: (e as Error).message };
  }
}
