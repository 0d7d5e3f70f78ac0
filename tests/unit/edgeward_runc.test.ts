// scripts/edgeward-runc's argument handling, against a stand-in runc and a
// stand-in hook that record how they were called: every command but create
// is the real runc with its arguments unchanged; create runs runc, then the
// hook with the bundle, pid file and id; fail-open unless told otherwise.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { REPO } from '../helpers/system';

const WRAPPER = path.join(REPO, 'scripts', 'edgeward-runc');

describe('edgeward-runc', () => {
  let tmp: string;
  let runcLog: string;
  let hookLog: string;
  let env: NodeJS.ProcessEnv;

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-runc-'));
    runcLog = path.join(tmp, 'runc.log');
    hookLog = path.join(tmp, 'hook.log');
    const runc = path.join(tmp, 'runc');
    // exits with RUNC_RC (default 0), prints one line per call: its arguments
    fs.writeFileSync(runc, `#!/bin/sh\nprintf '%s|' "$@" >>${runcLog}; echo >>${runcLog}\nexit \${RUNC_RC:-0}\n`, { mode: 0o755 });
    const hook = path.join(tmp, 'hook.js');
    fs.writeFileSync(
      hook,
      `require('fs').appendFileSync(${JSON.stringify(hookLog)}, process.argv.slice(2).join('|') + '\\n'); process.stderr.write('hook says why\\n'); process.exit(Number(process.env.HOOK_RC || 0));\n`,
    );
    env = { PATH: process.env.PATH, EDGEWARD_REAL_RUNC: runc, EDGEWARD_NODE: process.execPath, EDGEWARD_RUNTIME_HOOK: hook };
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const wrapper = (args: string[], extra: NodeJS.ProcessEnv = {}) => spawnSync(WRAPPER, args, { env: { ...env, ...extra }, encoding: 'utf8' });
  const lines = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

  test('a command other than create is runc, unchanged, its status passed on, no hook', () => {
    const args = ['--root', '/run/x', '--log', '/l', '--log-format', 'json', 'start', 'create'];
    const r = wrapper(args, { RUNC_RC: '3' });
    expect(r.status).toBe(3);
    expect(lines(runcLog)).toEqual([args.join('|') + '|']);
    expect(lines(hookLog)).toEqual([]);
  });

  test('a global option value named "create" is not the command', () => {
    wrapper(['--root', 'create', 'state', 'id1']);
    expect(lines(hookLog)).toEqual([]);
  });

  test('create: runc, then the hook with bundle, pid file and id; runc\'s status (0) after a hook failure (fail-open)', () => {
    const args = ['--root', '/run/r', '--log', '/l', '--log-format', 'json', '--systemd-cgroup', 'create', '--bundle', '/b', '--pid-file', '/b/init.pid', '--console-socket', '/c.sock', '--no-pivot', 'cid'];
    const r = wrapper(args, { HOOK_RC: '1' });
    expect(r.status).toBe(0);
    expect(lines(runcLog)).toEqual([args.join('|') + '|']);
    expect(lines(hookLog)).toEqual(['--bundle|/b|--pid-file|/b/init.pid|--id|cid']);
    expect(r.stderr).toBe('hook says why\n');
  });

  test('create with --opt=value forms and -b; the bundle defaults to the working directory', () => {
    wrapper(['--root=/run/r', 'create', '-b', '/b2', '--pid-file=/p', 'cid2']);
    wrapper(['create', '--pid-file', '/p', '--preserve-fds', '2', 'cid3']);
    expect(lines(hookLog)).toEqual(['--bundle|/b2|--pid-file|/p|--id|cid2', '--bundle|.|--pid-file|/p|--id|cid3']);
  });

  test('leading --edgeward-socket= / --edgeward-timeout-ms= (daemon.json runtimeArgs) are the hook\'s, not runc\'s', () => {
    fs.writeFileSync(
      path.join(tmp, 'hook.js'),
      `require('fs').appendFileSync(${JSON.stringify(hookLog)}, process.env.EDGEWARD_CONTROL_SOCKET + ' ' + process.env.EDGEWARD_RUNTIME_HOOK_TIMEOUT_MS + '\\n');\n`,
    );
    wrapper(['--edgeward-socket=/s.sock', '--edgeward-timeout-ms=700', '--root', '/r', 'create', '--pid-file', '/p', 'cid']);
    wrapper(['--edgeward-socket=/s.sock', '--root', '/r', 'state', 'cid']);
    expect(lines(runcLog)).toEqual(['--root|/r|create|--pid-file|/p|cid|', '--root|/r|state|cid|']);
    expect(lines(hookLog)).toEqual(['/s.sock 700']);
  });

  test('a failed create: runc\'s status, no hook', () => {
    const r = wrapper(['create', '--bundle', '/b', '--pid-file', '/p', 'cid'], { RUNC_RC: '2' });
    expect(r.status).toBe(2);
    expect(lines(hookLog)).toEqual([]);
  });

  test('EDGEWARD_RUNC_FAIL_CLOSED=1: a hook failure deletes the container (same --root) and fails create', () => {
    const r = wrapper(['--root', '/run/r', 'create', '--bundle', '/b', '--pid-file', '/p', 'cid'], { HOOK_RC: '1', EDGEWARD_RUNC_FAIL_CLOSED: '1' });
    expect(r.status).toBe(1);
    expect(lines(runcLog)[1]).toBe('--root|/run/r|delete|--force|cid|');
    expect(r.stderr).toContain('EDGEWARD_RUNC_FAIL_CLOSED=1: container cid deleted');
  });

  test('--edgeward-fail-closed (runtimeArgs) is the same as EDGEWARD_RUNC_FAIL_CLOSED=1', () => {
    const r = wrapper(['--edgeward-fail-closed', '--root', '/run/r', 'create', '--pid-file', '/p', 'cid'], { HOOK_RC: '1' });
    expect(r.status).toBe(1);
    expect(lines(runcLog)).toEqual(['--root|/run/r|create|--pid-file|/p|cid|', '--root|/run/r|delete|--force|cid|']);
  });

  test('no hook installed: the container starts, stderr says why', () => {
    const r = wrapper(['create', '--bundle', '/b', '--pid-file', '/p', 'cid'], { EDGEWARD_RUNTIME_HOOK: path.join(tmp, 'missing.js') });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('the runtime hook');
    expect(r.stderr).toContain('container cid starts without waiting for its rules (fail-open)');
  });
});
