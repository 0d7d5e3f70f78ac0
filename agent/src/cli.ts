// `edgeward` command line. Exit codes: 0 ok, 1 failure (e.g. invalid
// policy), 2 usage or configuration error.
import * as fs from 'fs';
import * as path from 'path';
import { Agent } from './agent';
import {
  AgentConfig,
  DEFAULT_ALERT_FILE_MAX_BYTES,
  DEFAULT_MAX_FILES,
  defaultConfig,
  formatConfigError,
  loadConfigFile,
} from './config';
import { loadNative } from './native';
import { formatPolicyError, loadPolicyDirectory, loadPolicyFile } from './policy/loader';
import { formatProbe, probe } from './probe';
import { ensureKernelFilesystems } from './kernel_fs';

const USAGE = `usage: edgeward <command> [options]

commands:
  agent [--config FILE] [--policies DIR] [--log-format json|pretty] [--alerts-file FILE]
        [--backend auto|compat|audit-only]
                             run the agent in the foreground until SIGTERM/SIGINT (SIGHUP reloads policies)
  probe [--json]             what this kernel can do and which enforcement backend runs
  policy validate PATH...    check policy files or directories; exit 1 if any is invalid
  hub <command>              the hub service: serve, status, alerts [--follow], policy push (edgeward hub --help)
  version                    print the version
`;

export const DEFAULT_CONFIG_FILE = '/etc/edgeward/config.yaml';

export class UsageError extends Error {}

/** Parses `--name value` and `--flag` options; positional arguments are returned apart. */
export function parseArgs(
  argv: string[],
  valued: string[],
  flags: string[],
): { options: Record<string, string | true>; positional: string[] } {
  const options: Record<string, string | true> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (flags.includes(name)) {
      options[name] = true;
    } else if (valued.includes(name)) {
      const value = eq !== -1 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined || value === '') throw new UsageError(`option --${name} needs a value`);
      options[name] = value;
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  return { options, positional };
}

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
    ['config', 'policies', 'log-format', 'alerts-file', 'backend'],
    [],
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

  const agent = new Agent(config);
  try {
    await agent.start();
  } catch (err) {
    agent.log.error(`cannot start: ${(err as Error).message}`);
    await agent.stop();
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      agent.log.info(`${signal}: detaching and exiting`);
      agent.stop().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      agent.log.info('SIGHUP: reloading policies');
      agent.reload();
    });
  });
}

function runProbe(argv: string[]): number {
  const { options } = parseArgs(argv, [], ['json']);
  ensureKernelFilesystems();
  const report = probe(loadNative());
  process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : formatProbe(report) + '\n');
  return 0;
}

function runPolicy(argv: string[]): number {
  const [sub, ...rest] = argv;
  if (sub !== 'validate') throw new UsageError(`unknown policy command ${sub ?? '(none)'}; try: policy validate PATH...`);
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
        return runProbe(rest);
      case 'policy':
        return runPolicy(rest);
      case 'hub': {
        // loaded on demand: the node agent does not pay for the hub service's modules
        const { runHubCommand } = await import('./hub/cli');
        return await runHubCommand(rest);
      }
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
      return 2;
    }
    throw err;
  }
}
