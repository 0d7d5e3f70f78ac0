'use strict';
// A real mosquitto for the hub benchmarks, set up by scripts/hub-broker.sh
// (the shipped config template: TLS, passwords, ACL) on free loopback ports
// in its own directory. Passwords for many users are hashed in one
// `mosquitto_passwd -U` call. Stopped (and its directory removed) by stop().
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');
const { REPO } = require('./load');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function requireTools() {
  const missing = ['mosquitto', 'mosquitto_passwd', 'openssl'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length) throw new Error(`the hub bench needs ${missing.join(', ')} (scripts/install-deps.sh)`);
}

/**
 * users: [{ username, password }]; acl: the ACL text.
 * Returns { url, ca, dir, pid(), logTail(), stop() }.
 */
async function startBroker({ dir, users, acl }) {
  requireTools();
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  const mtlsPort = await freePort();
  let passwordPort = await freePort();
  while (passwordPort === mtlsPort) passwordPort = await freePort();
  run('bash', [path.join(REPO, 'scripts', 'hub-broker.sh'), 'setup', dir, '--mtls-port', String(mtlsPort), '--password-port', String(passwordPort), '--bind', '127.0.0.1']);
  const pwFile = path.join(dir, 'passwords');
  fs.writeFileSync(pwFile, users.map((u) => `${u.username}:${u.password}\n`).join(''), { mode: 0o600 });
  run('mosquitto_passwd', ['-U', pwFile]);
  fs.writeFileSync(path.join(dir, 'acl'), acl);
  if (process.getuid?.() === 0 && spawnSync('id', ['mosquitto']).status === 0) run('chown', ['-R', 'mosquitto:', dir]);

  let tail = '';
  const keep = (d) => {
    tail = (tail + d).slice(-64 * 1024);
  };
  const child = spawn('mosquitto', ['-c', path.join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited;
  child.on('exit', (code, signal) => (exited = signal ?? code));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited !== undefined) throw new Error(`mosquitto exited (${exited}) at start:\n${tail}`);
    if ((await canConnect(mtlsPort)) && (await canConnect(passwordPort))) break;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen within 15 s:\n${tail}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    dir,
    url: `mqtts://127.0.0.1:${passwordPort}`,
    ca: path.join(dir, 'tls', 'ca.crt'),
    pid: () => child.pid,
    exited: () => exited,
    logTail: () => tail,
    stop: async () => {
      if (exited === undefined) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await gone;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { startBroker, freePort };
