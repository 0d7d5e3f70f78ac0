// The runtime hook in the agent's restart window: an absent control socket
// is waited for (within the hook's timeout) only while the agent is expected
// (its systemd unit starting/running/stopping, or the marker file present);
// otherwise it fails open at once.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { ControlUnavailable } from '../../agent/src/control/client';
import { AGENT_EXPECTED_STATES, agentExpected, parseHookArgs, reportWithRestartWait } from '../../agent/src/runtime_hook';

const container = { id: 'e'.repeat(64), name: 'web', image: 'img', labels: {}, pid: 4242 };

describe('agentExpected', () => {
  const args = { agentUnit: 'edgeward.service', expectedFile: '/run/x/agent.expected' };
  test('the unit starting, restarting (auto-restart is "activating"), running or stopping: expected', () => {
    for (const state of ['active', 'activating', 'deactivating', 'reloading']) {
      expect(agentExpected(args, () => state, () => false)).toBe(`edgeward.service is ${state}`);
    }
    expect([...AGENT_EXPECTED_STATES].sort()).toEqual(['activating', 'active', 'deactivating', 'refreshing', 'reloading']);
  });
  test('stopped, failed, unknown unit, or no systemd: not expected', () => {
    for (const state of ['inactive', 'failed', 'unknown', undefined]) expect(agentExpected(args, () => state, () => false)).toBeUndefined();
  });
  test('the marker file: expected whatever systemd says', () => {
    expect(agentExpected(args, () => 'inactive', (f) => f === '/run/x/agent.expected')).toBe('/run/x/agent.expected exists');
    expect(agentExpected({ ...args, expectedFile: undefined }, () => undefined, () => true)).toBeUndefined();
  });
  test('unit and marker from the environment', () => {
    expect(parseHookArgs(['--pid-file', 'p', '--id', 'x'], { EDGEWARD_AGENT_UNIT: 'ew.service', EDGEWARD_AGENT_EXPECTED_FILE: '/m' })).toMatchObject({
      agentUnit: 'ew.service',
      expectedFile: '/m',
    });
    expect(parseHookArgs(['--pid-file', 'p', '--id', 'x'], {})).toMatchObject({ agentUnit: 'edgeward.service', expectedFile: undefined });
  });
});

describe('reportWithRestartWait', () => {
  let tmp: string;
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hookwait-'))));
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const argsFor = (socket: string, timeoutMs: number) => ({ socket, timeoutMs, agentUnit: 'edgeward.service', expectedFile: undefined });

  test('not expected: the first "not running" is the answer, at once', async () => {
    const socket = path.join(tmp, 'none.sock');
    const t0 = Date.now();
    await expect(reportWithRestartWait(argsFor(socket, 5000), container, () => undefined)).rejects.toThrow(`the agent is not running (nothing listens on ${socket})`);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  test('expected: waits for the socket to appear, then reports (real unix socket)', async () => {
    const socket = path.join(tmp, 'later.sock');
    let asked = 0;
    let got = '';
    const server = net.createServer((conn) => {
      conn.on('data', (d) => {
        got += d.toString();
        conn.end(JSON.stringify({ version: 1, ok: true, result: { id: container.id, name: 'web', mntNs: 1, pidNs: 2 } }) + '\n');
      });
    });
    const later = setTimeout(() => server.listen(socket), 400);
    try {
      const t0 = Date.now();
      await reportWithRestartWait(argsFor(socket, 5000), container, () => (asked++, 'edgeward.service is activating'));
      expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
      expect(asked).toBe(1);
      expect(JSON.parse(got.split('\n')[0]!)).toMatchObject({ op: 'container.started', container: { id: container.id } });
    } finally {
      clearTimeout(later);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('expected but never comes: fails after the timeout, saying it was expected', async () => {
    const socket = path.join(tmp, 'never.sock');
    const t0 = Date.now();
    await expect(reportWithRestartWait(argsFor(socket, 300), container, () => 'edgeward.service is activating')).rejects.toThrow(
      `the agent is expected (edgeward.service is activating) but nothing listened on ${socket} within 300 ms`,
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  test('an agent that answers with an error, or does not answer: no retry', async () => {
    const calls: number[] = [];
    const send = async () => {
      calls.push(Date.now());
      throw new ControlUnavailable('no answer from the agent', false);
    };
    await expect(reportWithRestartWait(argsFor('/x', 5000), container, () => 'expected', send as never)).rejects.toThrow('no answer from the agent');
    expect(calls).toHaveLength(1);
  });
});
