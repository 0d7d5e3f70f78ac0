// `edgeward hub ...` end to end: hub serve as a child process against a
// real mosquitto whose ACL comes from `hub acl`, a node client, and the
// status / alerts / policy push commands. The commands run from the
// TypeScript sources (runHubCommand), so no build is needed.
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as yaml from 'js-yaml';
import { createHubClient, HubClient } from '../../agent/src/hub/client';
import { parseHubConfig } from '../../agent/src/hub/options';
import { loadPolicyDirectory } from '../../agent/src/policy/loader';
import { Broker, startMosquitto, TS_REQUIRE_HOOK } from '../helpers/mosquitto';
import { REPO, waitFor } from '../helpers/system';
import { hostProcessPolicy } from '../helpers/policies';

// each command is a fresh node process; on a loaded machine they take seconds
jest.setTimeout(180_000);

const RUN = `${TS_REQUIRE_HOOK}
require(${JSON.stringify(path.join(REPO, 'agent', 'src', 'hub', 'cli.ts'))}).runHubCommand(JSON.parse(process.argv[1])).then((code) => { process.exitCode = code; });`;

/** Runs one hub command; async, so the node client in this process keeps running meanwhile. */
function hub(args: string[], timeoutMs = 60_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = hubChild(args);
    const timer = setTimeout(() => c.proc.kill('SIGKILL'), timeoutMs);
    c.proc.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: c.out(), stderr: c.err() });
    });
  });
}

function hubChild(args: string[]): { proc: ChildProcess; out: () => string; err: () => string } {
  const proc = spawn(process.execPath, ['-e', RUN, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let o = '';
  let e = '';
  proc.stdout!.on('data', (d) => (o += d));
  proc.stderr!.on('data', (d) => (e += d));
  return { proc, out: () => o, err: () => e };
}

describe('edgeward hub commands (real mosquitto, hub serve as a process)', () => {
  let broker: Broker;
  let work: string;
  let configFile: string;
  let serve: ReturnType<typeof hubChild> | undefined;
  let node: HubClient | undefined;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hubcli-'));
    const hubPw = crypto.randomBytes(12).toString('hex');
    const nodePw = crypto.randomBytes(12).toString('hex');
    broker = await startMosquitto({
      users: [
        { username: 'hub-1', password: hubPw },
        { username: 'n1@acme', password: nodePw },
      ],
      acl: '# replaced below by `edgeward hub acl`\n',
    });
    fs.writeFileSync(path.join(work, 'hub.password'), hubPw, { mode: 0o600 });
    fs.writeFileSync(path.join(work, 'n1.password'), nodePw, { mode: 0o600 });
    const keygen = await hub(['keygen', '--out', path.join(work, 'keys')]);
    expect(keygen.status).toBe(0);
    expect(keygen.stdout).toMatch(/key id [0-9a-f]{16}/);
    expect((await hub(['keygen', '--out', path.join(work, 'keys')])).status).toBe(2); // never overwrites
    configFile = path.join(work, 'hub.yaml');
    fs.writeFileSync(
      configFile,
      yaml.dump({
        broker: { url: broker.passwordUrl, username: 'hub-1', passwordFile: path.join(work, 'hub.password'), tls: { ca: broker.ca } },
        topicPrefix: 'ew',
        database: path.join(work, 'db', 'hub.db'),
        signingKey: path.join(work, 'keys', 'signing.key'),
        organization: 'acme',
        hubUsers: ['hub-1'],
        nodes: [
          { org: 'acme', node: 'n1', groups: ['cams'] },
          { org: 'acme', node: 'n9', groups: ['cams'] },
        ],
        reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
      }),
    );
    const acl = await hub(['acl', '--config', configFile]);
    expect(acl.status).toBe(0);
    await broker.setAcl(acl.stdout);

    serve = hubChild(['serve', '--config', configFile, '--log-format', 'json']);
    await waitFor('hub serve to connect', () => (/hub: connected to/.test(serve!.err()) ? true : undefined), 30_000);

    const cfg = parseHubConfig({
      url: broker.passwordUrl,
      topicPrefix: 'ew',
      organization: 'acme',
      nodeId: 'n1',
      groups: ['cams'],
      tls: { ca: broker.ca },
      passwordFile: path.join(work, 'n1.password'),
      policyPublicKeys: [path.join(work, 'keys', 'signing.pub')],
      reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
    });
    if (!cfg.ok) throw new Error(cfg.error.map((e) => e.message).join('; '));
    const c = createHubClient({
      config: cfg.value,
      stateDirectory: path.join(work, 'node-state'),
      requestReload: () => {
        const l = loadPolicyDirectory(node!.policyDirectory);
        return { files: l.policies.length, policies: l.policies.length, rules: l.policies.length, errors: l.errors.map((e) => e.message), warnings: [] };
      },
      env: {},
    });
    if (!c.ok) throw new Error(c.error.map((e) => e.message).join('; '));
    node = c.value;
    node.start();
    await waitFor('the node to connect', () => (node!.status().connected ? true : undefined), 20_000);
  }, 120_000);

  afterAll(async () => {
    await node?.stop();
    if (serve) {
      serve.proc.kill('SIGTERM');
      await new Promise((r) => serve!.proc.once('exit', r));
    }
    await broker?.stop();
  });

  test('policy push --node --wait: signed, published, and reported in force by the node', async () => {
    const file = path.join(work, 'nc.yaml');
    fs.writeFileSync(file, hostProcessPolicy('block-nc', ['/usr/bin/nc.openbsd']));
    const r = await hub(['policy', 'push', '--config', configFile, '--node', 'n1', '--wait', '20', file]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const version = Number(/version (\d+)/.exec(r.stdout)![1]);
    expect(r.stdout).toContain(`n1@acme: version ${version} in force`);
    expect(loadPolicyDirectory(node!.policyDirectory).policies.map((p) => p.name)).toEqual(['block-nc']);
  });

  test('the control socket of hub serve refuses another user, even with its modes opened up (peer credentials)', () => {
    const dir = path.join(work, 'db');
    const socket = path.join(dir, 'hub.sock');
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
    const connectAsNobody = () =>
      spawnSync(
        'setpriv',
        [
          '--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, '-e',
          `const c = require('net').connect(${JSON.stringify(socket)});
           c.on('error', (e) => { console.log(e.code); });
           c.on('connect', () => c.write(JSON.stringify({ op: 'push', org: 'acme', target: { scope: 'node', name: 'n1' }, documents: [] }) + '\\n'));
           let b = ''; c.on('data', (d) => (b += d)); c.on('end', () => console.log(b.trim()));`,
        ],
        { encoding: 'utf8', timeout: 20_000 },
      ).stdout.trim();
    expect(connectAsNobody()).toBe('EACCES');
    fs.chmodSync(work, 0o755);
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(socket, 0o666);
    try {
      const answer = JSON.parse(connectAsNobody());
      expect(answer).toMatchObject({ ok: false, error: { code: 'not-authorized' } });
      expect(answer.error.message).toMatch(/uid 65534 .*is not root/);
    } finally {
      fs.chmodSync(socket, 0o600);
      fs.chmodSync(dir, 0o700);
      fs.chmodSync(work, 0o700);
    }
  });

  test('policy push of an invalid file is refused locally and nothing is published', async () => {
    const bad = path.join(work, 'bad.yaml');
    fs.writeFileSync(bad, hostProcessPolicy('bad', ['relative/path']));
    const before = node!.status().scopes.find((s) => s.scope === 'node')?.inForce?.version;
    const r = await hub(['policy', 'push', '--config', configFile, '--node', 'n1', bad]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/invalid .*bad\.yaml.*matchPaths\[0\]\.path/);
    expect(node!.status().scopes.find((s) => s.scope === 'node')?.inForce?.version).toBe(before);
  });

  test('group push with --wait: n1 enforces it, n9 (in the inventory, never seen) is reported as missing', async () => {
    const file = path.join(work, 'cams.yaml');
    fs.writeFileSync(file, hostProcessPolicy('cams-guard', ['/usr/bin/cams']));
    const r = await hub(['policy', 'push', '--config', configFile, '--group', 'cams', '--wait', '3', file]);
    expect(r.stdout).toMatch(/n1@acme: version \d+ in force/);
    expect(r.stdout).toMatch(/n9@acme: no report within the wait \(never-seen\)/);
    expect(r.status).toBe(1);
  });

  test('status shows desired vs in force per node and scope', async () => {
    const r = await hub(['status', '--config', configFile, '--json']);
    expect(r.status).toBe(0);
    const views = JSON.parse(r.stdout) as Array<{ node: string; state: string; scopes: Array<{ target: { scope: string; name: string }; state: string; desired?: number; inForce?: number }> }>;
    const n1 = views.find((v) => v.node === 'n1')!;
    expect(n1.state).toBe('online');
    expect(n1.scopes.map((s) => [s.target.scope, s.target.name, s.state])).toEqual([
      ['node', 'n1', 'in-sync'],
      ['group', 'cams', 'in-sync'],
    ]);
    expect(views.find((v) => v.node === 'n9')).toMatchObject({ state: 'never-seen', scopes: [{ state: 'not-pushed' }, { state: 'no-report' }] });
    const text = await hub(['status', '--config', configFile]);
    expect(text.stdout).toMatch(/n1@acme {2}online/);
    expect(text.stdout).toMatch(/group cams: in-sync \(desired \d+, in force \d+\)/);
  });

  test('alerts shows what the nodes sent, with their identity; --follow shows new ones as they arrive', async () => {
    for (let i = 0; i < 3; i++) node!.enqueueAlert({ PolicyName: 'block-nc', Action: 'Block', Operation: 'Process', Resource: `/usr/bin/x${i}`, Result: 'Permission denied' } as never);
    for (let tries = 0; ; tries++) {
      const r = await hub(['alerts', '--config', configFile, '--json']);
      if (r.stdout.trim().split('\n').filter(Boolean).length >= 3) break;
      if (tries > 20) throw new Error(`alerts not stored: ${r.stdout} ${r.stderr}`);
      await new Promise((r2) => setTimeout(r2, 250));
    }
    const r = await hub(['alerts', '--config', configFile, '--json', '--limit', '2']);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    expect(lines.map((l) => [l.org, l.node, l.alert.Resource])).toEqual([
      ['acme', 'n1', '/usr/bin/x1'],
      ['acme', 'n1', '/usr/bin/x2'],
    ]);
    const text = await hub(['alerts', '--config', configFile, '--limit', '1']);
    expect(text.stdout).toMatch(/n1@acme #\d+ Block block-nc Process \/usr\/bin\/x2/);

    const follow = hubChild(['alerts', '--config', configFile, '--follow', '--limit', '0']);
    await waitFor('the follower to start', () => (/following alerts after/.test(follow.err()) ? true : undefined), 30_000);
    node!.enqueueAlert({ PolicyName: 'block-nc', Action: 'Block', Operation: 'Process', Resource: '/usr/bin/live', Result: 'Permission denied' } as never);
    await waitFor('the follower to print the new alert', () => (/\/usr\/bin\/live/.test(follow.out()) ? true : undefined), 20_000);
    expect(follow.out()).not.toMatch(/\/usr\/bin\/x[0-2]/);
    follow.proc.kill('SIGTERM');
    await new Promise((r2) => follow.proc.once('exit', r2));
  });

  test('usage and configuration errors exit 2 with a message', async () => {
    expect((await hub(['frobnicate'])).status).toBe(2);
    const both = await hub(['policy', 'push', '--config', configFile, '--node', 'a', '--group', 'b', 'x.yaml']);
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/exactly one of --node N or --group G/);
    const missing = await hub(['status', '--config', path.join(work, 'missing.yaml')]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/missing\.yaml: cannot read file/);
    const badId = await hub(['policy', 'push', '--config', configFile, '--node', 'a/b', 'x.yaml']);
    expect(badId.status).toBe(2);
    expect(badId.stderr).toMatch(/--node "a\/b" is not a valid id/);
  });
});
