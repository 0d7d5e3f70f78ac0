// One agent per state directory, and a clean stop whenever SIGTERM comes:
// the real agent (bin/edgeward agent) on this machine's backend.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { hostProcessPolicy } from '../helpers/policies';
import { busyboxCopy, CLI, makeTempDir, requireIntegrationEnvironment, run, waitFor } from '../helpers/system';

describe('agent instances (real agent)', () => {
  let work: string;
  let policies: string;
  let blocked: string;
  const agents: AgentUnderTest[] = [];

  /** A config of its own: state directory and control socket under `name`. */
  const config = (name: string, state = path.join(work, `${name}-state`)) => {
    const file = path.join(work, `${name}.yaml`);
    fs.writeFileSync(file, `stateDirectory: ${state}\ncontrol:\n  socket: ${path.join(work, `${name}-run`, 'control.sock')}\n`);
    return file;
  };

  beforeAll(() => {
    requireIntegrationEnvironment();
    work = makeTempDir('agent-instance');
    policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    blocked = busyboxCopy(path.join(work, 'bin'), 'instance-tool');
    fs.writeFileSync(path.join(policies, 'block.yaml'), hostProcessPolicy('instance-block', [blocked]));
  });

  afterEach(async () => {
    for (const a of agents.splice(0)) await a.stop();
  });

  test('a second agent on the same state directory is refused, naming the first one; the first keeps enforcing', async () => {
    const state = path.join(work, 'shared-state');
    const dir1 = path.join(work, 'first');
    fs.mkdirSync(dir1);
    const first = await startAgent({ policies, workDir: dir1, extraArgs: ['--config', config('first', state)] });
    agents.push(first);
    expect(run(blocked, ['true']).status).not.toBe(0);

    const dir2 = path.join(work, 'second');
    fs.mkdirSync(dir2);
    let refused: Error | undefined;
    try {
      agents.push(await startAgent({ policies, workDir: dir2, extraArgs: ['--config', config('second', state)] }));
    } catch (err) {
      refused = err as Error;
    }
    expect(refused?.message).toMatch(/agent exited with 1 before ready/);
    expect(refused?.message).toContain(`${path.join(state, 'agent.lock')} is locked by pid ${first.child.pid}: another edgeward agent is running`);
    // the first one is untouched
    expect(run(blocked, ['true']).status).not.toBe(0);
    expect(await first.stop()).toBe(0);
    agents.splice(0);

    // the lock ends with its holder: the next agent on that directory starts
    const dir3 = path.join(work, 'third');
    fs.mkdirSync(dir3);
    const third = await startAgent({ policies, workDir: dir3, extraArgs: ['--config', config('third', state)] });
    agents.push(third);
    expect(run(blocked, ['true']).status).not.toBe(0);
  });

  test('SIGTERM while the agent is starting: it finishes starting, then stops cleanly (exit 0)', async () => {
    let stderr = '';
    const child = spawn(process.execPath, [CLI, 'agent', '--policies', policies, '--log-format', 'json', '--config', config('early')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    // start() has begun (its first log line) and has not finished (no "ready" yet)
    await waitFor('the agent to begin starting', () => (/"message":"kernel [^"]+, backend/.test(stderr) ? true : undefined), 60_000);
    const readyBefore = /"event":"ready"/.test(stderr);
    child.kill('SIGTERM');
    const end = await exited;
    expect({ ...end, readyBefore }).toEqual({ code: 0, signal: null, readyBefore: false });
    expect(stderr).toMatch(/SIGTERM: stopping/);
    // nothing it started is left enforcing
    await waitFor('the rules to be gone', () => (run(blocked, ['true']).status === 0 ? true : undefined), 10_000);
  });
});
