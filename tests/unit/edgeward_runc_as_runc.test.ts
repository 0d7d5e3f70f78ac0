// scripts/edgeward-runc installed AS runc (install.sh --runtime-hook puts it
// at runc's path, dpkg-divert moved the packaged runc to runc.edgeward-real):
// it finds the real runc next to its invoked path (also through a link such
// as Debian's /usr/bin/runc -> ../sbin/runc), never runs itself, and finds
// node and the hook in its edgeward tree (through a link) or EDGEWARD_HOME.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { REPO } from '../helpers/system';

const WRAPPER = path.join(REPO, 'scripts', 'edgeward-runc');

describe('edgeward-runc as runc', () => {
  let tmp: string;
  let sbin: string;
  let runcLog: string;
  let hookLog: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-runc-as-'));
    sbin = path.join(tmp, 'usr', 'sbin');
    fs.mkdirSync(sbin, { recursive: true });
    fs.mkdirSync(path.join(tmp, 'usr', 'bin'));
    runcLog = path.join(tmp, 'runc.log');
    hookLog = path.join(tmp, 'hook.log');
    fs.copyFileSync(WRAPPER, path.join(sbin, 'runc'));
    fs.chmodSync(path.join(sbin, 'runc'), 0o755);
    fs.writeFileSync(path.join(sbin, 'runc.edgeward-real'), `#!/bin/sh\nprintf '%s|' "$@" >>${runcLog}; echo >>${runcLog}\n`, { mode: 0o755 });
    fs.symlinkSync('../sbin/runc', path.join(tmp, 'usr', 'bin', 'runc'));
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const run = (file: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync(file, args, { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' });
  const lines = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
  /** an edgeward tree: dist/agent/src/runtime_hook.js (records its arguments) and node/bin/node */
  const tree = (dir: string) => {
    fs.mkdirSync(path.join(dir, 'dist', 'agent', 'src'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'node', 'bin'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
    fs.symlinkSync(process.execPath, path.join(dir, 'node', 'bin', 'node'));
    fs.writeFileSync(path.join(dir, 'dist', 'agent', 'src', 'runtime_hook.js'), `require('fs').appendFileSync(${JSON.stringify(hookLog)}, ${JSON.stringify(dir)} + ' ' + process.argv.slice(2).join('|') + '\\n');\n`);
    fs.copyFileSync(WRAPPER, path.join(dir, 'bin', 'edgeward-runc'));
    fs.chmodSync(path.join(dir, 'bin', 'edgeward-runc'), 0o755);
  };

  test('the real runc is runc.edgeward-real next to the invoked path, also through Debian\'s /usr/bin/runc link', () => {
    expect(run(path.join(sbin, 'runc'), ['state', 'a']).status).toBe(0);
    expect(run(path.join(tmp, 'usr', 'bin', 'runc'), ['--root', '/r', 'kill', 'b', 'KILL']).status).toBe(0);
    expect(lines(runcLog)).toEqual(['state|a|', '--root|/r|kill|b|KILL|']);
  });

  test('never itself: EDGEWARD_REAL_RUNC naming the wrapper (or a link to it) is refused', () => {
    for (const self of [path.join(sbin, 'runc'), path.join(tmp, 'usr', 'bin', 'runc')]) {
      const r = run(path.join(sbin, 'runc'), ['state', 'a'], { EDGEWARD_REAL_RUNC: self });
      expect(r.status).toBe(127);
      expect(r.stderr).toContain('is this wrapper, not runc');
    }
    expect(lines(runcLog)).toEqual([]);
  });

  test('create: node and the hook from EDGEWARD_HOME', () => {
    const home = path.join(tmp, 'opt', 'edgeward');
    tree(home);
    run(path.join(sbin, 'runc'), ['create', '--bundle', '/b', '--pid-file', '/p', 'cid'], { EDGEWARD_HOME: home });
    expect(lines(runcLog)).toEqual(['create|--bundle|/b|--pid-file|/p|cid|']);
    expect(lines(hookLog)).toEqual([`${home} --bundle|/b|--pid-file|/p|--id|cid`]);
  });

  test('create: through a link into an edgeward tree, node and the hook of that tree', () => {
    const home = path.join(tmp, 'tree');
    tree(home);
    const links = path.join(tmp, 'links');
    fs.mkdirSync(links);
    fs.symlinkSync(path.join(home, 'bin', 'edgeward-runc'), path.join(links, 'runc'));
    fs.symlinkSync(path.join(sbin, 'runc.edgeward-real'), path.join(links, 'runc.edgeward-real'));
    run(path.join(links, 'runc'), ['create', '--pid-file', '/p', 'cid']);
    expect(lines(hookLog)).toEqual([`${home} --bundle|.|--pid-file|/p|--id|cid`]);
  });
});

describe('edgeward-runc settings file (installed as runc: no runtimeArgs)', () => {
  let tmp: string;
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-runc-conf-'))));
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('KEY=VALUE lines for the hook\'s keys only, read not sourced; the environment wins', () => {
    const runc = path.join(tmp, 'runc');
    fs.writeFileSync(runc, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const out = path.join(tmp, 'hook.out');
    const hook = path.join(tmp, 'hook.js');
    const keys = ['EDGEWARD_CONTROL_SOCKET', 'EDGEWARD_RUNTIME_HOOK_TIMEOUT_MS', 'EDGEWARD_AGENT_UNIT', 'EDGEWARD_AGENT_EXPECTED_FILE', 'PATH_X'];
    fs.writeFileSync(hook, `require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(${JSON.stringify(keys)}.map((k) => process.env[k] ?? null)));\n`);
    const conf = path.join(tmp, 'runtime-hook.conf');
    const pwned = path.join(tmp, 'pwned');
    fs.writeFileSync(
      conf,
      `EDGEWARD_CONTROL_SOCKET=/run/x/control.sock\nEDGEWARD_RUNTIME_HOOK_TIMEOUT_MS=30000\nEDGEWARD_AGENT_UNIT=$(touch ${pwned})\nPATH_X=/evil\nEDGEWARD_AGENT_EXPECTED_FILE=/run/x/expected\n`,
    );
    const r = spawnSync(WRAPPER, ['create', '--pid-file', '/p', 'cid'], {
      env: { PATH: process.env.PATH, EDGEWARD_REAL_RUNC: runc, EDGEWARD_NODE: process.execPath, EDGEWARD_RUNTIME_HOOK: hook, EDGEWARD_RUNTIME_HOOK_CONF: conf, EDGEWARD_AGENT_EXPECTED_FILE: '/from/env' },
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(JSON.parse(fs.readFileSync(out, 'utf8'))).toEqual(['/run/x/control.sock', '30000', `$(touch ${pwned})`, '/from/env', null]);
    expect(fs.existsSync(pwned)).toBe(false);
  });
});
