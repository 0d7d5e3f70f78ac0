// Runs the real agent (bin/edgeward agent) as a child process, waits until it
// reports that it enforces, and reads its alerts file.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { CLI, waitFor } from './system';

export interface AgentUnderTest {
  child: ChildProcess;
  alertsFile: string;
  stderr: () => string;
  /** parsed alert lines written so far */
  alerts: () => Array<Record<string, unknown>>;
  /** log lines (JSON) written so far */
  logs: () => Array<Record<string, unknown>>;
  stop: () => Promise<number | null>;
}

/**
 * How long startAgent waits for "ready" unless told: 20 s, or
 * EDGEWARD_TEST_AGENT_READY_MS (a TCG guest starts the agent 10-25x slower).
 */
export function agentReadyTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  return envMs(env, 'EDGEWARD_TEST_AGENT_READY_MS', 20_000);
}

/**
 * How long stop() lets the agent detach after SIGTERM before SIGKILL: 10 s,
 * or EDGEWARD_TEST_AGENT_STOP_MS (a SIGKILLed bpf-lsm agent leaves its pinned
 * rules in force, which a slow guest must not turn into a test failure).
 */
export function agentStopTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  return envMs(env, 'EDGEWARD_TEST_AGENT_STOP_MS', 10_000);
}

function envMs(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms <= 0) throw new Error(`${name} must be a positive integer (milliseconds), got ${JSON.stringify(raw)}`);
  return ms;
}

export async function startAgent(opts: {
  policies: string;
  workDir: string;
  extraArgs?: string[];
  readyTimeoutMs?: number;
  /**
   * Extra environment for the agent (e.g. DOCKER_HOST naming a private
   * dockerd). Jest gives each test file its own copy of process.env, which
   * child processes do not see: they are passed to spawn explicitly.
   */
  env?: Record<string, string>;
}): Promise<AgentUnderTest> {
  const alertsFile = path.join(opts.workDir, 'alerts.jsonl');
  let err = '';
  const child = spawn(
    process.execPath,
    [CLI, 'agent', '--policies', opts.policies, '--log-format', 'json', '--alerts-file', alertsFile, ...(opts.extraArgs ?? [])],
    { stdio: ['ignore', 'ignore', 'pipe'], ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) },
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
  const logs = () =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const agent: AgentUnderTest = {
    child,
    alertsFile,
    stderr: () => err,
    logs,
    alerts: () =>
      fs.existsSync(alertsFile)
        ? fs
            .readFileSync(alertsFile, 'utf8')
            .split('\n')
            .filter((l) => l.trim())
            .map((l) => JSON.parse(l) as Record<string, unknown>)
        : [],
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
        return logs().find((l) => l.event === 'ready');
      },
      opts.readyTimeoutMs ?? agentReadyTimeoutMs(),
    );
  } catch (e) {
    await agent.stop();
    throw e;
  }
  return agent;
}
