// The TS decoder's layout (EVENT_LAYOUT) against what the addon was compiled
// with (abiLayout(): offsetof/sizeof from bpf/include/edgeward_abi.h), and
// both against the header's text, so a field added on one side only fails here.
// Needs the built addon (npm run build:native), not root.
import * as fs from 'fs';
import * as path from 'path';
import { EventKind, EW_ABI_VERSION, EW_COMM_LEN, EW_PATH_MAX, EW_STR_AS_GIVEN, EW_STR_TRUNCATED, NetOp } from '../../agent/src/abi';
import { EVENT_LAYOUT } from '../../agent/src/events';

const REPO = path.resolve(__dirname, '..', '..');
const ADDON = path.join(REPO, 'build', 'native', 'Release', 'edgeward.node');
const HEADER = fs.readFileSync(path.join(REPO, 'bpf', 'include', 'edgeward_abi.h'), 'utf8');

function loadLayout(): Record<string, number> {
  if (!fs.existsSync(ADDON)) throw new Error(`abi test needs the native addon ${ADDON}: run npm run build:native`);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const addon = require(ADDON) as { abiLayout(): Record<string, number>; abiVersion: number };
  return { ...addon.abiLayout(), abiVersion: addon.abiVersion };
}

/** struct name -> field names, from the header's text. */
function headerStructs(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const structRe = /^struct (\w+) \{\n([\s\S]*?)^\};/gm;
  for (let m = structRe.exec(HEADER); m; m = structRe.exec(HEADER)) {
    const fields: string[] = [];
    for (const line of m[2].split('\n')) {
      const f = /^\s*(?:struct\s+)?\w+\s+(\w+)(?:\[[^\]]*\])?;/.exec(line);
      if (f) fields.push(f[1]);
    }
    out.set(m[1], fields);
  }
  return out;
}

function headerDefine(name: string): number {
  const m = new RegExp(`^#define ${name}\\s+(\\w+)`, 'm').exec(HEADER);
  if (!m) throw new Error(`#define ${name} not found in edgeward_abi.h`);
  return Number(m[1]);
}

function headerEnum(name: string): number {
  const m = new RegExp(`^\\s*${name}\\s*=\\s*(\\d+)`, 'm').exec(HEADER);
  if (!m) throw new Error(`enum value ${name} not found in edgeward_abi.h`);
  return Number(m[1]);
}

const layout = loadLayout();
const EVENT_STRUCT = /^(ew_event_header|ew_\w+_event)$/;

describe('ABI layout', () => {
  test('every offset and size the decoder uses equals the compiled one', () => {
    const mismatches = Object.entries(EVENT_LAYOUT)
      .filter(([key, value]) => layout[key] !== value)
      .map(([key, value]) => `${key}: decoder ${value}, addon ${layout[key]}`);
    expect(mismatches).toEqual([]);
  });

  test('the decoder knows every field of every event struct the addon reports', () => {
    const missing = Object.keys(layout).filter((key) => {
      const struct = key.replace(/^sizeof\./, '').split('.')[0];
      return EVENT_STRUCT.test(struct) && !(key in EVENT_LAYOUT);
    });
    expect(missing).toEqual([]);
  });

  test('abiLayout() covers every field declared in edgeward_abi.h', () => {
    const structs = headerStructs();
    expect(structs.size).toBeGreaterThanOrEqual(9);
    const missing: string[] = [];
    for (const [struct, fields] of structs) {
      if (!(`sizeof.${struct}` in layout)) missing.push(`sizeof.${struct}`);
      for (const f of fields) {
        if (!(`${struct}.${f}` in layout)) missing.push(`${struct}.${f}`);
      }
    }
    expect(missing).toEqual([]);
  });

  test('records fit the u16 header.size field', () => {
    for (const s of ['ew_exec_event', 'ew_file_event', 'ew_decision_event', 'ew_net_event']) {
      expect(layout[`sizeof.${s}`]).toBeLessThan(65536);
    }
  });
});

describe('ABI constants in agent/src/abi.ts', () => {
  test('versions and sizes', () => {
    expect(layout.abiVersion).toBe(EW_ABI_VERSION);
    expect(headerDefine('EW_ABI_VERSION')).toBe(EW_ABI_VERSION);
    expect(headerDefine('EW_PATH_MAX')).toBe(EW_PATH_MAX);
    expect(headerDefine('EW_COMM_LEN')).toBe(EW_COMM_LEN);
    expect(headerDefine('EW_STR_TRUNCATED')).toBe(EW_STR_TRUNCATED);
    expect(headerDefine('EW_STR_AS_GIVEN')).toBe(EW_STR_AS_GIVEN);
  });

  test('event kinds and network operations', () => {
    expect([
      headerEnum('EW_EVENT_EXEC'),
      headerEnum('EW_EVENT_FORK'),
      headerEnum('EW_EVENT_EXIT'),
      headerEnum('EW_EVENT_FILE_OPEN'),
      headerEnum('EW_EVENT_NET'),
      headerEnum('EW_EVENT_DECISION'),
    ]).toEqual([EventKind.Exec, EventKind.Fork, EventKind.Exit, EventKind.FileOpen, EventKind.Net, EventKind.Decision]);
    expect([
      headerEnum('EW_NET_SOCKET'),
      headerEnum('EW_NET_CONNECT'),
      headerEnum('EW_NET_BIND'),
      headerEnum('EW_NET_LISTEN'),
      headerEnum('EW_NET_ACCEPT'),
    ]).toEqual([NetOp.Socket, NetOp.Connect, NetOp.Bind, NetOp.Listen, NetOp.Accept]);
  });
});
