// A real mosquitto for hub tests: TLS listeners (client certificates and
// passwords) on free loopback ports, the shipped config template and the ACL
// renderer, in a temporary directory (owned by user mosquitto when run as
// root, since mosquitto drops to it). Fails loudly when mosquitto is missing.
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { REPO } from './system';

const BROKER_SCRIPT = path.join(REPO, 'scripts', 'hub-broker.sh');

export interface BrokerUser {
  username: string;
  /** a password user on the password listener */
  password?: string;
  /** also issue a client certificate with CN = username (for the mTLS listener) */
  cert?: boolean;
}

export interface Broker {
  dir: string;
  /** CA file clients verify the broker with */
  ca: string;
  mtlsUrl: string;
  passwordUrl: string;
  /** client certificate and key of a user created with cert: true */
  certFor(username: string): { cert: string; key: string };
  /** the broker's log so far */
  log(): string;
  pid(): number | undefined;
  /** SIGKILL: no clean shutdown, no last persistence save */
  kill(): Promise<void>;
  /** starts it again on the same ports with the same files */
  restart(): Promise<void>;
  /** rewrites the ACL file and makes mosquitto reload it (SIGHUP) */
  setAcl(acl: string): Promise<void>;
  /** SIGTERM, then removes its directory */
  stop(): Promise<void>;
}

export function requireMosquitto(): void {
  const problems: string[] = [];
  for (const tool of ['mosquitto', 'mosquitto_passwd', 'openssl']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) problems.push(`${tool} is not installed`);
  }
  if (problems.length) throw new Error(`hub tests need a real broker: ${problems.join('; ')} (run scripts/install-deps.sh)`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startMosquitto(opts: { users: BrokerUser[]; acl: string }): Promise<Broker> {
  requireMosquitto();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-broker-'));
  fs.chmodSync(dir, 0o755);
  const mtlsPort = await freePort();
  let passwordPort = await freePort();
  while (passwordPort === mtlsPort) passwordPort = await freePort();
  run('bash', [BROKER_SCRIPT, 'setup', dir, '--mtls-port', String(mtlsPort), '--password-port', String(passwordPort), '--bind', '127.0.0.1']);
  for (const u of opts.users) {
    if (u.password !== undefined) run('bash', [BROKER_SCRIPT, 'user', dir, u.username, u.password]);
    if (u.cert) run('bash', [BROKER_SCRIPT, 'cert', dir, u.username.replace(/[^A-Za-z0-9._-]/g, '_'), u.username]);
  }
  fs.writeFileSync(path.join(dir, 'acl'), opts.acl);
  if (process.getuid?.() === 0) run('chown', ['-R', 'mosquitto:', dir]);

  let child: ChildProcess | undefined;
  let log = '';
  const launch = async () => {
    const c = spawn('mosquitto', ['-c', path.join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout!.on('data', (d) => (log += d));
    c.stderr!.on('data', (d) => (log += d));
    let exited: number | null | undefined;
    c.on('exit', (code) => (exited = code));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (exited !== undefined) throw new Error(`mosquitto exited with ${exited} at start:\n${log}`);
      if ((await canConnect(mtlsPort)) && (await canConnect(passwordPort))) return;
      if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${mtlsPort}/${passwordPort} within 10 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const waitExit = (c: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once('exit', () => resolve());
    });
  await launch();
  return {
    dir,
    ca: path.join(dir, 'tls', 'ca.crt'),
    mtlsUrl: `mqtts://127.0.0.1:${mtlsPort}`,
    passwordUrl: `mqtts://127.0.0.1:${passwordPort}`,
    certFor: (username) => {
      const name = username.replace(/[^A-Za-z0-9._-]/g, '_');
      return { cert: path.join(dir, 'tls', `${name}.crt`), key: path.join(dir, 'tls', `${name}.key`) };
    },
    log: () => log,
    pid: () => child?.pid,
    kill: async () => {
      if (!child) return;
      const c = child;
      c.kill('SIGKILL');
      await waitExit(c);
      child = undefined;
    },
    restart: async () => {
      if (child) throw new Error('mosquitto is still running');
      await launch();
    },
    setAcl: async (acl) => {
      fs.writeFileSync(path.join(dir, 'acl'), acl);
      if (process.getuid?.() === 0) run('chown', ['mosquitto:', path.join(dir, 'acl')]);
      const before = log.length;
      child?.kill('SIGHUP');
      const deadline = Date.now() + 5000;
      while (!/Reloading config/i.test(log.slice(before)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    },
    stop: async () => {
      if (child) {
        const c = child;
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), 5000);
        await waitExit(c);
        clearTimeout(t);
        child = undefined;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * JavaScript for `node -e` children that run the hub code from its
 * TypeScript sources (transpiled on load, cached by content hash so later
 * children start fast), so hub tests need no build.
 */
export const TS_REQUIRE_HOOK = `
const tsCacheDir = ${JSON.stringify(path.join(os.tmpdir(), 'edgeward-ts-cache'))};
let ts;
require.extensions['.ts'] = (module, filename) => {
  const fs = require('fs');
  const text = fs.readFileSync(filename, 'utf8');
  const key = require('crypto').createHash('sha256').update(filename + '\\0' + text).digest('hex');
  const cached = require('path').join(tsCacheDir, key + '.js');
  let js;
  try {
    js = fs.readFileSync(cached, 'utf8');
  } catch {
    ts = ts || require(${JSON.stringify(path.join(REPO, 'node_modules', 'typescript'))});
    js = ts.transpileModule(text, {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, resolveJsonModule: true },
    }).outputText;
    fs.mkdirSync(tsCacheDir, { recursive: true });
    const tmp = cached + '.' + process.pid;
    fs.writeFileSync(tmp, js);
    fs.renameSync(tmp, cached);
  }
  module._compile(js, filename);
};
`;
