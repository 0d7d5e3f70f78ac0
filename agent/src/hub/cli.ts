// `edgeward hub ...`: the hub's command line. cli.ts dispatches
// `edgeward hub <args>` here. Exit codes: 0 ok, 1 failure, 2 usage/config.
import * as fs from 'fs';
import * as path from 'path';
import { renderAcl } from './acl';
import { BundleDocument, BundleTarget, generateSigningKeyPair } from './bundle';
import { defaultControlSocket, requestPush } from './control';
import { fleetView, formatFleet, NodeView } from './fleet';
import { HubServiceConfig, loadHubServiceConfig } from './hub_config';
import { formatHubError, HubError } from './result';
import { HubService } from './service';
import { HubStore, StoredAlert } from './store';
import { checkId } from './topics';
import { createLogger } from '../logger';
import { formatPolicyError, MAX_POLICY_FILE_BYTES, parsePolicyText, readLimitedTextFile } from '../policy/loader';

export const DEFAULT_HUB_CONFIG = '/etc/edgeward/hub.yaml';

export const HUB_USAGE = `usage: edgeward hub <command> [--config FILE] [options]

commands:
  serve [--log-format json|pretty]          run the hub service until SIGTERM/SIGINT
  status [--json]                           nodes: online/offline, policy desired vs in force, refusals, drops
  alerts [--follow] [--node N] [--org O] [--limit N] [--json]
                                            alerts collected from the nodes (newest last)
  policy push (--node N | --group G) [--org O] [--wait SECONDS] FILE...
                                            sign and publish the policy files as the next version
  keygen --out DIR                          create the Ed25519 bundle signing key pair
  acl                                       print the mosquitto ACL for the configured fleet

--config defaults to ${DEFAULT_HUB_CONFIG}.
`;

class Usage extends Error {}

interface Parsed {
  options: Record<string, string | true>;
  positional: string[];
}

function parse(argv: string[], valued: string[], flags: string[]): Parsed {
  const options: Record<string, string | true> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq === -1 ? undefined : eq);
    if (flags.includes(name) && eq === -1) options[name] = true;
    else if (valued.includes(name)) {
      const v = eq !== -1 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') throw new Usage(`option --${name} needs a value`);
      options[name] = v;
    } else throw new Usage(`unknown option --${name}`);
  }
  return { options, positional };
}

function loadConfig(options: Record<string, string | true>): HubServiceConfig {
  const file = (options.config as string | undefined) ?? DEFAULT_HUB_CONFIG;
  const c = loadHubServiceConfig(file);
  if (!c.ok) throw new Usage(c.error.map(formatHubError).join('\n'));
  return c.value;
}

function openStore(config: HubServiceConfig): HubStore {
  if (!fs.existsSync(config.database)) throw new Usage(`${config.database}: no hub database yet (run edgeward hub serve)`);
  const s = HubStore.open(config.database);
  if (!s.ok) throw new Usage(formatHubError(s.error));
  return s.value;
}

const out = (s: string) => process.stdout.write(s);
const errOut = (s: string) => process.stderr.write(s);

async function serve(argv: string[]): Promise<number> {
  const { options, positional } = parse(argv, ['config', 'log-format'], []);
  if (positional.length) throw new Usage(`unexpected argument ${positional[0]}`);
  const format = (options['log-format'] as string | undefined) ?? 'pretty';
  if (format !== 'json' && format !== 'pretty') throw new Usage('--log-format must be json or pretty');
  const config = loadConfig(options);
  const log = createLogger({ level: 'info', format });
  const created = HubService.create(config, { log });
  if (!created.ok) {
    for (const e of created.error) log.error(formatHubError(e));
    return 2;
  }
  const hub = created.value;
  const started = await hub.start();
  if (!started.ok) {
    log.error(formatHubError(started.error));
    await hub.stop();
    return 1;
  }
  log.info(`hub serve: instance ${config.instance}, broker ${config.broker.url}, database ${config.database}`, { event: 'hub-ready' });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`${signal}: stopping`);
      hub.stop().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

function status(argv: string[]): number {
  const { options, positional } = parse(argv, ['config'], ['json']);
  if (positional.length) throw new Usage(`unexpected argument ${positional[0]}`);
  const config = loadConfig(options);
  const store = openStore(config);
  try {
    const views = fleetView(store, config.nodes);
    out(options.json ? JSON.stringify(views, null, 2) + '\n' : formatFleet(views));
    return 0;
  } finally {
    store.close();
  }
}

function formatAlert(a: StoredAlert): string {
  const x = a.alert as Record<string, unknown>;
  const when = new Date(a.receivedAt).toISOString();
  return `${when} ${a.node}@${a.org} #${a.seq} ${x.Action ?? '?'} ${x.PolicyName ?? '?'} ${x.Operation ?? '?'} ${x.Resource ?? ''} (${x.ProcessName ?? x.Source ?? ''}: ${x.Result ?? ''})\n`;
}

async function alerts(argv: string[]): Promise<number> {
  const { options, positional } = parse(argv, ['config', 'node', 'org', 'limit'], ['follow', 'json']);
  if (positional.length) throw new Usage(`unexpected argument ${positional[0]}`);
  const limit = options.limit === undefined ? 50 : Number(options.limit);
  if (!Number.isInteger(limit) || limit < 0) throw new Usage('--limit must be a non-negative integer');
  const config = loadConfig(options);
  const store = openStore(config);
  const filter: { org?: string; node?: string } = {};
  if (options.org) filter.org = options.org as string;
  if (options.node) filter.node = options.node as string;
  const print = (rows: StoredAlert[]) => {
    for (const a of rows) {
      out(options.json ? JSON.stringify({ org: a.org, node: a.node, id: a.id, seq: a.seq, epoch: a.epoch, receivedAt: a.receivedAt, alert: a.alert }) + '\n' : formatAlert(a));
    }
  };
  // the last `limit` matching alerts, oldest first
  const rows = limit > 0 ? store.lastAlerts(limit, filter) : [];
  print(rows);
  let last = rows.length ? rows[rows.length - 1].n : store.maxAlertN();
  if (!options.follow) {
    store.close();
    return 0;
  }
  errOut(`edgeward hub: following alerts after #${last} (Ctrl-C stops)\n`);
  return new Promise<number>((resolve) => {
    const timer = setInterval(() => {
      const fresh = store.alertsAfter(last, 1000, filter);
      if (fresh.length) {
        print(fresh);
        last = fresh[fresh.length - 1].n;
      }
    }, 250);
    const stop = () => {
      clearInterval(timer);
      store.close();
      resolve(0);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    // a reader that went away (| head) ends the follow
    process.stdout.on('error', stop);
  });
}

function readDocuments(files: string[]): BundleDocument[] {
  const docs: BundleDocument[] = [];
  const problems: string[] = [];
  for (const f of files) {
    const r = readLimitedTextFile(f, MAX_POLICY_FILE_BYTES);
    if ('error' in r) {
      problems.push(`${f}: ${r.error}`);
      continue;
    }
    const parsed = parsePolicyText(r.text, f);
    problems.push(...parsed.errors.map(formatPolicyError));
    const name = path.basename(f).replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[^A-Za-z0-9]+/, '');
    if (docs.some((d) => d.name === name)) problems.push(`${f}: another file is also named ${name}`);
    docs.push({ name, yaml: r.text });
  }
  if (problems.length) throw new PolicyInvalid(problems);
  return docs;
}

class PolicyInvalid extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

async function policy(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'push') throw new Usage(`unknown policy command ${sub ?? '(none)'}; try: hub policy push --node N FILE...`);
  const { options, positional } = parse(rest, ['config', 'node', 'group', 'org', 'wait'], []);
  if (!!options.node === !!options.group) throw new Usage('policy push needs exactly one of --node N or --group G');
  if (positional.length === 0) throw new Usage('policy push needs at least one policy file');
  const config = loadConfig(options);
  const org = (options.org as string | undefined) ?? config.organization;
  if (!org) throw new Usage('policy push needs --org (or organization in the hub config)');
  const target: BundleTarget = options.node ? { scope: 'node', name: options.node as string } : { scope: 'group', name: options.group as string };
  for (const c of [checkId('--org', org), checkId(options.node ? '--node' : '--group', target.name)]) if (!c.ok) throw new Usage(c.error.message);
  const wait = options.wait === undefined ? 0 : Number(options.wait);
  if (!Number.isFinite(wait) || wait < 0) throw new Usage('--wait must be a number of seconds');
  let documents: BundleDocument[];
  try {
    documents = readDocuments(positional);
  } catch (e) {
    if (e instanceof PolicyInvalid) {
      for (const p of e.problems) out(`invalid ${p}\n`);
      return 1;
    }
    throw e;
  }
  const r = await requestPush(defaultControlSocket(config.database), { op: 'push', org, target, documents });
  if (!r.ok) {
    errOut(`edgeward hub: push failed: ${formatHubError(r.error)}\n`);
    return 1;
  }
  out(`pushed ${target.scope} ${target.name} of ${org}: version ${r.value.version} (${r.value.contentHash})\n`);
  if (!wait) return 0;
  return waitForNodes(config, org, target, r.value.version, wait * 1000);
}

/** Polls the store until every node in scope reports the version in force or refuses it. */
async function waitForNodes(config: HubServiceConfig, org: string, target: BundleTarget, version: number, timeoutMs: number): Promise<number> {
  const store = openStore(config);
  const deadline = Date.now() + timeoutMs;
  const inScope = (v: NodeView) => v.org === org && (target.scope === 'node' ? v.node === target.name : v.groups.includes(target.name));
  const reported = new Set<string>();
  let failed = false;
  try {
    for (;;) {
      const views = fleetView(store, config.nodes).filter(inScope);
      for (const v of views) {
        const key = `${v.node}@${v.org}`;
        if (reported.has(key)) continue;
        const s = v.scopes.find((x) => x.target.scope === target.scope && x.target.name === target.name);
        if (s?.inForce === version) {
          reported.add(key);
          out(`${key}: version ${version} in force${v.policyErrors.length ? ` with policy errors: ${v.policyErrors.join('; ')}` : ''}\n`);
          if (v.policyErrors.length) failed = true;
        } else if (s?.refused && s.refused.version === version) {
          reported.add(key);
          failed = true;
          out(`${key}: REFUSED version ${version}: ${s.refused.code}: ${s.refused.reason}\n`);
        }
      }
      const pending = views.filter((v) => !reported.has(`${v.node}@${v.org}`));
      if (views.length > 0 && pending.length === 0) return failed ? 1 : 0;
      if (Date.now() > deadline) {
        for (const v of pending) out(`${v.node}@${v.org}: no report within the wait (${v.state})\n`);
        return 1;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    store.close();
  }
}

function keygen(argv: string[]): number {
  const { options, positional } = parse(argv, ['out'], []);
  if (positional.length || !options.out) throw new Usage('keygen needs --out DIR');
  const dir = options.out as string;
  const key = path.join(dir, 'signing.key');
  const pub = path.join(dir, 'signing.pub');
  for (const f of [key, pub]) if (fs.existsSync(f)) throw new Usage(`${f} exists; not overwriting`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pair = generateSigningKeyPair();
  fs.writeFileSync(key, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
  fs.writeFileSync(pub, pair.publicKeyPem, { mode: 0o644, flag: 'wx' });
  out(`${key} (keep it on the hub)\n${pub} (key id ${pair.keyId}: pin it on every node as hub.policyPublicKeys)\n`);
  return 0;
}

function acl(argv: string[]): number {
  const { options, positional } = parse(argv, ['config'], []);
  if (positional.length) throw new Usage(`unexpected argument ${positional[0]}`);
  const config = loadConfig(options);
  out(renderAcl({ prefix: config.topicPrefix, hubUsers: config.hubUsers, nodes: config.nodes }));
  return 0;
}

/** `edgeward hub <argv>`; resolves to the exit code. */
export async function runHubCommand(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(rest);
      case 'status':
        return status(rest);
      case 'alerts':
        return await alerts(rest);
      case 'policy':
        return await policy(rest);
      case 'keygen':
        return keygen(rest);
      case 'acl':
        return acl(rest);
      case undefined:
      case 'help':
      case '--help':
        out(HUB_USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new Usage(`unknown hub command ${command}`);
    }
  } catch (e) {
    if (e instanceof Usage) {
      errOut(`edgeward hub: ${e.message}\n`);
      return 2;
    }
    const h = e as HubError;
    if (h && typeof h.code === 'string' && typeof h.message === 'string') {
      errOut(`edgeward hub: ${formatHubError(h)}\n`);
      return 1;
    }
    throw e;
  }
}
