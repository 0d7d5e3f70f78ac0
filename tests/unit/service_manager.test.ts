import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ServiceManager, watchdogInterval } from '../../agent/src/service_manager';
import { loadNative } from '../../agent/src/native';

type Sent = Array<{ socket: string; message: string }>;

function recorder(): { sent: Sent; send: (s: string, m: string) => void } {
  const sent: Sent = [];
  return { sent, send: (socket, message) => sent.push({ socket, message }) };
}

describe('ServiceManager', () => {
  afterEach(() => jest.useRealTimers());

  test('without NOTIFY_SOCKET every call is a no-op and no sender is needed', () => {
    const send = jest.fn();
    const sm = new ServiceManager({ env: {}, send });
    expect(sm.enabled).toBe(false);
    sm.notifyReady('enforcing');
    sm.notifyReloading();
    sm.notifyStatus('x');
    sm.notifyStopping();
    expect(send).not.toHaveBeenCalled();
    expect(sm.watchdogIntervalMs).toBeUndefined();
  });

  test('READY=1 with a one-line status; RELOADING=1 carries MONOTONIC_USEC; STOPPING=1', () => {
    const r = recorder();
    const sm = new ServiceManager({ env: { NOTIFY_SOCKET: '/run/systemd/notify' }, send: r.send, monotonicUsec: () => 123456789n });
    sm.notifyReady('enforcing 3 policies\nREADY=0');
    sm.notifyReloading('reloading');
    sm.notifyStopping('SIGTERM');
    expect(r.sent).toEqual([
      { socket: '/run/systemd/notify', message: 'READY=1\nSTATUS=enforcing 3 policies READY=0' },
      { socket: '/run/systemd/notify', message: 'RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading' },
      { socket: '/run/systemd/notify', message: 'STOPPING=1\nSTATUS=SIGTERM' },
    ]);
  });

  test('the watchdog is pinged at half WATCHDOG_USEC after READY, skipped while unhealthy, stopped by STOPPING', () => {
    jest.useFakeTimers();
    const r = recorder();
    let healthy = true;
    const sm = new ServiceManager({
      env: { NOTIFY_SOCKET: '@sd', WATCHDOG_USEC: '10000000', WATCHDOG_PID: '42' },
      pid: 42,
      send: r.send,
      healthy: () => healthy,
    });
    expect(sm.watchdogIntervalMs).toBe(5000);
    jest.advanceTimersByTime(20_000);
    expect(r.sent).toHaveLength(0); // nothing before READY
    sm.notifyReady();
    const pings = () => r.sent.filter((s) => s.message === 'WATCHDOG=1').length;
    expect(pings()).toBe(1);
    jest.advanceTimersByTime(10_000);
    expect(pings()).toBe(3);
    healthy = false;
    jest.advanceTimersByTime(10_000);
    expect(pings()).toBe(3);
    healthy = true;
    jest.advanceTimersByTime(5_000);
    expect(pings()).toBe(4);
    sm.notifyStopping();
    jest.advanceTimersByTime(60_000);
    expect(pings()).toBe(4);
    sm.notifyReady(); // a READY after STOPPING does not restart the pings
    jest.advanceTimersByTime(60_000);
    expect(pings()).toBe(4);
  });

  test('a failed send is reported, never thrown', () => {
    const errors: string[] = [];
    const sm = new ServiceManager({
      env: { NOTIFY_SOCKET: '/nonexistent' },
      send: () => {
        throw new Error('ECONNREFUSED');
      },
      onError: (e) => errors.push(e.message),
    });
    expect(() => sm.notifyReady()).not.toThrow();
    expect(errors).toEqual(['ECONNREFUSED']);
  });

  test('reading process.env removes the protocol variables so child processes do not inherit them', () => {
    const saved = { ...process.env };
    try {
      process.env.NOTIFY_SOCKET = '/run/x';
      process.env.WATCHDOG_USEC = '2000000';
      process.env.WATCHDOG_PID = String(process.pid);
      const sm = new ServiceManager({ send: () => undefined });
      expect(sm.socketPath).toBe('/run/x');
      expect(sm.watchdogIntervalMs).toBe(1000);
      expect(process.env.NOTIFY_SOCKET).toBeUndefined();
      expect(process.env.WATCHDOG_USEC).toBeUndefined();
      expect(process.env.WATCHDOG_PID).toBeUndefined();
    } finally {
      process.env = saved;
    }
  });
});

describe('watchdogInterval', () => {
  test('half of WATCHDOG_USEC in ms; absent, malformed, zero or another pid: no watchdog', () => {
    expect(watchdogInterval({ WATCHDOG_USEC: '30000000' }, 1)).toBe(15000);
    expect(watchdogInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '7' }, 7)).toBe(15000);
    expect(watchdogInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '8' }, 7)).toBeUndefined();
    expect(watchdogInterval({}, 1)).toBeUndefined();
    expect(watchdogInterval({ WATCHDOG_USEC: '0' }, 1)).toBeUndefined();
    expect(watchdogInterval({ WATCHDOG_USEC: '-5' }, 1)).toBeUndefined();
    expect(watchdogInterval({ WATCHDOG_USEC: '1e9' }, 1)).toBeUndefined();
    expect(watchdogInterval({ WATCHDOG_USEC: '1000' }, 1)).toBe(1);
  });
});

// The addon's sender against a real AF_UNIX datagram socket. Node cannot bind
// one, so a python3 receiver stands in for systemd.
const RECEIVER = `
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1].replace('@', '\\0', 1) if sys.argv[1].startswith('@') else sys.argv[1])
print('bound', flush=True)
s.settimeout(20)
out = []
for _ in range(int(sys.argv[2])):
    out.append(s.recv(4096).decode())
print(json.dumps(out), flush=True)
`;

async function receive(address: string, count: number, sendAll: () => void): Promise<string[]> {
  const python = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p));
  if (!python) throw new Error('python3 is needed as the datagram receiver: apt-get install python3-minimal');
  const child = spawn(python, ['-c', RECEIVER, address, String(count)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const deadline = Date.now() + 10_000;
  while (!out.includes('bound')) {
    if (Date.now() > deadline) throw new Error(`receiver did not bind: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  sendAll();
  const code = await exited;
  if (code !== 0) throw new Error(`receiver failed (${code}): ${err}`);
  return JSON.parse(out.split('\n')[1]) as string[];
}

describe('native sdNotify', () => {
  const native = loadNative();

  test('sends one datagram per message to a path socket', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-sdnotify-'));
    const socket = path.join(dir, 'notify');
    try {
      const got = await receive(socket, 2, () => {
        native.sdNotify(socket, 'READY=1\nSTATUS=enforcing');
        native.sdNotify(socket, 'WATCHDOG=1');
      });
      expect(got).toEqual(['READY=1\nSTATUS=enforcing', 'WATCHDOG=1']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('sends to an abstract socket (@name)', async () => {
    const name = `@edgeward-sdnotify-${process.pid}-${Date.now()}`;
    const got = await receive(name, 1, () => native.sdNotify(name, 'STOPPING=1'));
    expect(got).toEqual(['STOPPING=1']);
  });

  test('errors name the socket and the errno; bad addresses are refused before sending', () => {
    expect(() => native.sdNotify('/nonexistent/edgeward/notify', 'READY=1')).toThrow(
      /sending to \/nonexistent\/edgeward\/notify: ENOENT/,
    );
    expect(() => native.sdNotify('vsock:2:1234', 'READY=1')).toThrow(/neither an absolute path nor an abstract socket/);
    expect(() => native.sdNotify('/' + 'x'.repeat(200), 'READY=1')).toThrow(/longer than 107 bytes/);
    expect(() => (native.sdNotify as unknown as (a: number) => void)(1)).toThrow(/sdNotify\(socketPath: string, message: string\)/);
  });
});
