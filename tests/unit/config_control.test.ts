// The config keys of the control socket and alert throttling (agent/src/config.ts).
import { DEFAULT_ALERT_THROTTLE, formatConfigError, parseConfigText } from '../../agent/src/config';

const parse = (text: string) => parseConfigText(text, 'config.yaml');

test('absent: the defaults', () => {
  const { config } = parse('');
  expect(config!.alerts.throttle).toEqual(DEFAULT_ALERT_THROTTLE);
  expect(config!.control).toEqual({ socket: '/run/edgeward/control.sock' });
});

test('alerts.throttle: partial values get the defaults; control.socket is taken as is', () => {
  const { config, errors } = parse('alerts:\n  throttle:\n    maxAlerts: 5\ncontrol:\n  socket: /run/ew/c.sock\n');
  expect(errors).toEqual([]);
  expect(config!.alerts.throttle).toEqual({ ...DEFAULT_ALERT_THROTTLE, maxAlerts: 5 });
  expect(config!.control).toEqual({ socket: '/run/ew/c.sock' });
  expect(parse('control: {}\n').config!.control).toEqual({ socket: '/run/edgeward/control.sock' });
  expect(parse('alerts: {throttle: {enabled: false}}\n').config!.alerts.throttle!.enabled).toBe(false);
});

test.each([
  ['zero alerts', 'alerts: {throttle: {maxAlerts: 0}}\n', 'config.yaml: alerts.throttle.maxAlerts: must be >= 1 (got 0)'],
  ['a tiny window', 'alerts: {throttle: {windowMs: 5}}\n', 'config.yaml: alerts.throttle.windowMs: must be >= 100 (got 5)'],
  ['an unknown key', 'alerts: {throttle: {rate: 5}}\n', 'config.yaml: alerts.throttle.rate: unknown key'],
  ['a relative socket', 'control: {socket: run/c.sock}\n', 'config.yaml: control.socket: must be an absolute path (got "run/c.sock")'],
])('%s is refused, naming the key', (_n, text, message) => {
  const { config, errors } = parse(text);
  expect(config).toBeUndefined();
  expect(errors.map(formatConfigError)).toEqual([message]);
});
