// startAgent (./agent_process) with extra environment variables for the
// agent, e.g. DOCKER_HOST naming a private dockerd. Jest gives each test file
// its own copy of process.env, which child_process does not see: the
// variables must be passed to spawn explicitly.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { agentReadyTimeoutMs, agentStopTimeoutMs, AgentUnderTest } from './agent_process';
import { CLI, waitFor } from './system';

export async function startAgentWithEnv(opts: {
  policies: string;
  workDir: string;
  env: Record<string, string>;
  extraArgs?: string[];
  readyTimeoutMs?: number;
}): Promise<AgentUnderTest> {
  const alertsFile = path.join(opts.workDir, 'alerts.jsonl');
  let err = '';
  const child = spawn(
    process.execPath,
    [CLI, 'agent', '--policies', opts.policies, '--log-format', 'json', '--alerts-file', alertsFile, ...(opts.extraArgs ?? [])],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...opts.env } },
  );
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (err += d));
  let exited: number | null | undefined;
  const exitPromise = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      exited = code;
      resolve(code);
    }),
  );
  const parseLines = (text: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const agent: AgentUnderTest = {
    child,
    alertsFile,
    stderr: () => err,
    logs: () => parseLines(err),
    alerts: () => (fs.existsSync(alertsFile) ? parseLines(fs.readFileSync(alertsFile, 'utf8')) : []),
    stop: async () => {
      if (exited === undefined) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), agentStopTimeoutMs());
      const code = await exitPromise;
      clearTimeout(timer);
      return code;
    },
  };
  try {
    await waitFor(
      'the agent to report ready',
      () => {
        if (exited !== undefined) throw new Error(`agent exited with ${exited} before ready:\n${err}`);
        return agent.logs().find((l) => l.event === 'ready');
      },
      opts.readyTimeoutMs ?? agentReadyTimeoutMs(),
    );
  } catch (e) {
    await agent.stop();
    throw e;
  }
  return agent;
}
