// `edgeward` command line. Exit codes: 0 ok, 1 failure (e.g. invalid
// policy), 2 usage or configuration error, 3 the agent is not running.
import * as fs from 'fs';
import * as path from 'path';
import { Agent } from './agent';
import {
  AgentConfig,
  DEFAULT_ALERT_FILE_MAX_BYTES,
  DEFAULT_MAX_FILES,
  DEFAULT_CONTROL_SOCKET,
  defaultConfig,
  formatConfigError,
  loadConfigFile,
} from './config';
import { EXIT_USAGE, parseArgs, UsageError } from './control/args';
import { containersSeen, DEFAULT_CONFIG_FILE, runLogs, runPolicyCommand, runStatus } from './control/commands';
import { formatContainers } from './control/format';
import { RECENT_ALERTS } from './control/protocol';
import { loadNative } from './native';
import { formatPolicyError, loadPolicyDirectory, loadPolicyFile } from './policy/loader';
import { formatProbe, probe } from './probe';
import { ensureKernelFilesystems } from './kernel_fs';
import { unloadPinned } from './lsm_backend';
import { ServiceManager } from './service_manager';

const USAGE = `usage: edgeward <command> [options]

commands:
  agent [--config FILE] [--policies DIR] [--log-format json|pretty] [--alerts-file FILE]
        [--backend auto|bpf-lsm|compat|audit-only] [--socket PATH] [--detach-on-exit]
                             run the agent in the foreground until SIGTERM/SIGINT (SIGHUP reloads policies);
                             bpf-lsm rules stay in force after it exits unless --detach-on-exit
  unload                     remove the bpf-lsm rules an agent left in force (pinned under /sys/fs/bpf/edgeward)
  probe [--json]             the kernel, LSMs, backend, what each rule kind gets here, containers the agent sees
  status [--json]            the running agent: backend, policies, rules, alerts, containers, load errors
  policy apply FILE...       apply policies to the running agent (all or nothing; kept across restarts;
                             replaces a policy of the same name atomically); FILE - reads standard input
  policy delete NAME...      remove policies applied with policy apply
  policy list [--json]       the policies in force and where each comes from (operator, applied, hub)
  policy validate PATH...    check policy files or directories locally; exit 1 if any is invalid
  logs [--follow] [--json] [--type alert|log|all] [--container ID|NAME|host] [--operation Process|File|Network] [--policy NAME]
       [--limit N]           alerts: without --follow the agent's last ${RECENT_ALERTS} (in memory; the alerts file
                             keeps the history), with --follow new ones as they happen
  hub <command>              the hub service: serve, status, alerts [--follow], policy push (edgeward hub --help)
  version                    print the version

Commands that talk to the agent use its control socket (root only): --socket PATH, else control.socket
of --config FILE or ${DEFAULT_CONFIG_FILE}, else ${DEFAULT_CONTROL_SOCKET}.

exit codes: 0 ok, 1 failure (invalid policy, refused, permission denied), 2 usage or configuration error,
            3 the agent is not running
`;

export { DEFAULT_CONFIG_FILE, parseArgs, UsageError };

function readConfig(file: string | undefined): AgentConfig {
  const chosen = file ?? (fs.existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
  if (!chosen) return defaultConfig();
  const { config, errors } = loadConfigFile(chosen);
  if (!config) throw new UsageError(errors.map(formatConfigError).join('\n'));
  return config;
}

async function runAgent(argv: string[]): Promise<number> {
  const { options, positional } = parseArgs(
    argv,
    ['config', 'policies', 'log-format', 'alerts-file', 'backend', 'socket'],
    ['detach-on-exit'],
  );
  if (positional.length) throw new UsageError(`unexpected argument ${positional[0]}`);
  const config = readConfig(options.config as string | undefined);
  if (options.policies) config.policyDirectory = path.resolve(options.policies as string);
  if (options['log-format']) {
    const f = options['log-format'];
    if (f !== 'json' && f !== 'pretty') throw new UsageError('--log-format must be json or pretty');
    config.logging.format = f;
  }
  if (options['alerts-file']) {
    config.alerts.file = { path: path.resolve(options['alerts-file'] as string), maxSizeBytes: DEFAULT_ALERT_FILE_MAX_BYTES, maxFiles: DEFAULT_MAX_FILES };
  }
  if (options.socket) config.control = { socket: path.resolve(options.socket as string) };
  if (options.backend) {
    const b = options.backend;
    if (b !== 'auto' && b !== 'compat' && b !== 'audit-only' && b !== 'bpf-lsm') {
      throw new UsageError('--backend must be auto, bpf-lsm, compat or audit-only');
    }
    config.backend = b;
  }
  if (process.getuid && process.getuid() !== 0) {
    process.stderr.write('edgeward agent: must run as root (it attaches kernel programs)\n');
    return 1;
  }

  const agent = new Agent(config, { detachOnExit: options['detach-on-exit'] === true });
  // systemd (Type=notify): READY only once the rules are in force; watchdog pings from the event loop
  const service = new ServiceManager({ onError: (e) => agent.log.warn(`sd_notify: ${e.message}`) });
  // Signal handlers before start(): a SIGTERM while starting (rules already
  // partly in force) must still stop the agent cleanly, once start() is done.
  let started = false;
  let stopping = false;
  let pendingStop: string | undefined;
  let finish: (code: number) => void = () => undefined;
  const stop = (signal: string) => {
    if (!started) {
      pendingStop ??= signal;
      return;
    }
    if (stopping) return;
    stopping = true;
    agent.log.info(`${signal}: stopping`);
    service.notifyStopping(`${signal}: stopping`);
    agent.stop().then(
      () => finish(0),
      () => finish(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    if (!started || stopping) return; // start() loads the policies anyway
    agent.log.info('SIGHUP: reloading policies');
    service.notifyReloading('reloading policies');
    agent.reload();
    service.notifyReady(readyStatus(agent));
  });
  try {
    await agent.start();
  } catch (err) {
    agent.log.error(`cannot start: ${(err as Error).message}`);
    service.notifyStopping(`cannot start: ${(err as Error).message}`);
    await agent.stop();
    return 1;
  }
  started = true;
  const exit = new Promise<number>((resolve) => (finish = resolve));
  if (pendingStop) {
    stop(pendingStop);
  } else {
    service.notifyReady(readyStatus(agent));
  }
  return exit;
}

async function runProbe(argv: string[]): Promise<number> {
  const { options, positional } = parseArgs(argv, ['socket', 'config'], ['json']);
  if (positional.length) throw new UsageError(`unexpected argument ${positional[0]}`);
  ensureKernelFilesystems();
  const report = probe(loadNative());
  // containers are what the running agent follows; without an agent, say so
  const seen = await containersSeen(options);
  if (options.json) {
    process.stdout.write(JSON.stringify({ ...report, containers: seen.containers, ...(seen.note ? { containersNote: seen.note } : {}) }, null, 2) + '\n');
  } else {
    const containers = seen.containers ? formatContainers(seen.containers).replace(/^/gm, '  ') : `  unknown: ${seen.note}`;
    process.stdout.write(`${formatProbe(report)}\ncontainers (seen by the agent):\n${containers}\n`);
  }
  return 0;
}

/** The status line systemctl shows. */
function readyStatus(agent: Agent): string {
  const s = agent.status();
  return `enforcing ${s.rulesInForce} rules (${s.backend})`;
}

/** `edgeward unload`: removes the bpf-lsm rules agents left pinned (stop the agent first). */
function runUnload(argv: string[]): number {
  const { positional } = parseArgs(argv, [], []);
  if (positional.length) throw new UsageError(`unexpected argument ${positional[0]}`);
  ensureKernelFilesystems();
  let removed: string[];
  try {
    removed = unloadPinned();
  } catch (err) {
    process.stderr.write(`edgeward unload: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(removed.length ? removed.map((d) => `removed ${d}\n`).join('') : 'nothing pinned\n');
  return 0;
}

async function runPolicy(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined) throw new UsageError('policy needs a command: apply, delete, list or validate');
  if (sub !== 'validate') return runPolicyCommand(sub, rest);
  const { options, positional } = parseArgs(rest, [], ['json']);
  if (positional.length === 0) throw new UsageError('policy validate needs at least one file or directory');
  let invalid = 0;
  const results: Array<{ path: string; policies: string[]; errors: string[] }> = [];
  for (const p of positional) {
    const isDir = fs.existsSync(p) && fs.statSync(p).isDirectory();
    const r = isDir ? loadPolicyDirectory(p) : loadPolicyFile(p);
    const errors = r.errors.map(formatPolicyError);
    invalid += errors.length;
    results.push({ path: p, policies: r.policies.map((x) => x.name), errors });
  }
  if (options.json) {
    process.stdout.write(JSON.stringify({ valid: invalid === 0, results }, null, 2) + '\n');
  } else {
    for (const r of results) {
      for (const name of r.policies) process.stdout.write(`ok      ${r.path}: ${name}\n`);
      for (const e of r.errors) process.stdout.write(`invalid ${e}\n`);
    }
  }
  return invalid === 0 ? 0 : 1;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'agent':
        return await runAgent(rest);
      case 'probe':
        return await runProbe(rest);
      case 'policy':
        return await runPolicy(rest);
      case 'status':
        return await runStatus(rest);
      case 'logs':
        return await runLogs(rest);
      case 'hub': {
        // loaded on demand: the node agent does not pay for the hub service's modules
        const { runHubCommand } = await import('./hub/cli');
        return await runHubCommand(rest);
      }
      case 'unload':
        return runUnload(rest);
      case 'version':
      case '--version': {
        const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8'));
        process.stdout.write(`edgeward ${pkg.version}\n`);
        return 0;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`edgeward: ${err.message}\n${command === undefined ? USAGE : ''}`);
      return EXIT_USAGE;
    }
    throw err;
  }
}
