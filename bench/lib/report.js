'use strict';
// Targets (aims, not assertions) and the human-readable table.

const TARGETS = {
  monitorOpen: 1.3,
  compatOpen: 1.05,
  eventsPerSecond: 150000,
  noDropRate: 100000,
  idleRssMiB: 64,
};

const OP_LABEL = { open: 'open+close', exec: 'fork+exec+wait', connect: 'tcp connect+close' };
const CONFIG_LABEL = { monitor: 'monitor on', compat: 'compat, 1000 file rules' };

const mib = (kib) => (kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(1)} MiB`);
const x = (v) => `${v.toFixed(2)}x`;
const ratioText = (s) => (s ? `${x(s.median)} (${s.min.toFixed(2)}-${s.max.toFixed(2)})` : 'n/a');

function ns(v) {
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} ms`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(2)} us`;
  return `${v.toFixed(0)} ns`;
}

/** Each target: { name, aim, value, met } (met undefined when not measured). */
function evaluateTargets(r) {
  const out = [];
  const openCfg = r.ops?.ops?.open?.configs ?? {};
  const ratio = (c) => openCfg[c]?.ratio?.median;
  out.push({
    name: 'monitor on (process+file+network), open+close vs no agent',
    aim: `<= ${TARGETS.monitorOpen.toFixed(2)}x`,
    value: ratio('monitor') === undefined ? undefined : x(ratio('monitor')),
    met: ratio('monitor') === undefined ? undefined : ratio('monitor') <= TARGETS.monitorOpen,
  });
  out.push({
    name: 'compat enforcement, 1000 file rules, open+close of an unprotected file vs no agent',
    aim: `<= ${TARGETS.compatOpen.toFixed(2)}x`,
    value: ratio('compat') === undefined ? undefined : x(ratio('compat')),
    met: ratio('compat') === undefined ? undefined : ratio('compat') <= TARGETS.compatOpen,
  });
  const steps = r.events?.steps ?? [];
  if (steps.length) {
    const best = Math.max(...steps.map((s) => s.eventsIntoJsPerSecond));
    out.push({
      name: 'events into JS per second (best step)',
      aim: `>= ${TARGETS.eventsPerSecond / 1000}k/s`,
      value: `${(best / 1000).toFixed(0)}k/s`,
      met: best >= TARGETS.eventsPerSecond,
    });
    const at = steps.find((s) => s.offeredRate === TARGETS.noDropRate);
    if (at) {
      const lost = at.kernelDropped + at.userspaceDropped;
      out.push({
        name: `drops at ${TARGETS.noDropRate / 1000}k events/s offered`,
        aim: '0',
        value: `${at.kernelDropped} kernel + ${at.userspaceDropped} userspace (${at.loadgenOpensMissing} opens not seen)`,
        met: lost === 0 && at.loadgenOpensMissing <= 0,
      });
    }
  }
  for (const [key, label] of [
    ['compatIdleKiB', 'compat, 1000 file rules'],
    ['agentIdleKiB', 'monitor on'],
  ]) {
    const v = r.rss?.[key];
    if (v === undefined) continue;
    out.push({
      name: `agent RSS idle, 5 s after ready (${label})`,
      aim: `<= ${TARGETS.idleRssMiB} MiB`,
      value: mib(v),
      met: v <= TARGETS.idleRssMiB * 1024,
    });
  }
  return out;
}

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

function formatReport(r) {
  const m = r.machine;
  const lines = [
    `edgeward bench (${r.mode}) — kernel ${m.kernel}, ${m.cpu}, ${m.cores} cores, ${m.memoryMiB} MiB, node ${m.node}, ${m.date}, ${r.elapsedSeconds.toFixed(0)} s`,
    '',
  ];
  if (r.ops) {
    const configs = Object.keys(Object.values(r.ops.ops)[0]?.configs ?? {});
    lines.push(
      `Cost per operation: median ratio to the no-agent baseline bracketing each run (min-max over ${r.ops.rounds} rounds)`,
    );
    const rows = [['operation', 'baseline', 'noise (A/A)', ...configs.map((c) => CONFIG_LABEL[c] ?? c)]];
    for (const [op, o] of Object.entries(r.ops.ops)) {
      rows.push([
        OP_LABEL[op] ?? op,
        ns(o.baselineNs.median),
        ratioText(o.baselineNoise),
        ...configs.map((c) => `${ratioText(o.configs[c].ratio)}  ${ns(o.configs[c].ns.median)}`),
      ]);
    }
    lines.push(table(rows));
    const secs = (s) => `${(s.median / 1000).toFixed(2)} s`;
    for (const [key, what] of [
      ['agentStartMs', 'start to "ready"'],
      ['agentStopMs', 'SIGTERM to exit'],
    ]) {
      const e = Object.entries(r.ops[key] ?? {});
      if (e.length) lines.push(`agent ${what} (median): ${e.map(([c, s]) => `${CONFIG_LABEL[c] ?? c} ${secs(s)}`).join(', ')}`);
    }
    lines.push('');
  }
  if (r.events) {
    lines.push('Monitor events into JS (EventPipeline in a node process, process+file monitor, decoded)');
    const rows = [
      ['offered/s', 'generated/s', 'into JS/s', 'kernel drops', 'userspace drops', 'opens not seen', 'empty paths', 'batches', 'RSS'],
    ];
    for (const s of r.events.steps) {
      rows.push([
        s.offeredRate ? `${s.offeredRate / 1000}k` : 'max',
        `${(s.generatedRate / 1000).toFixed(1)}k`,
        `${(s.eventsIntoJsPerSecond / 1000).toFixed(1)}k`,
        s.kernelDropped,
        s.userspaceDropped,
        s.loadgenOpensMissing,
        s.fileOpensWithEmptyPath,
        s.batches,
        mib(s.rssKiB),
      ]);
    }
    lines.push(
      table(rows),
      'into JS/s counts every decoded event (other processes too) until the last load-generator event arrived;',
      '"opens not seen": load-generator opens with no event; "empty paths": file-open events without a path.',
      '',
    );
  }
  if (r.rss) {
    lines.push('Memory (VmRSS)');
    const b = r.rss.breakdown ?? {};
    const parts = (m) => (m ? [mib(m.anon), mib(m.file), mib(m.shmem)] : ['', '', '']);
    const rows = [
      ['process', 'RSS', 'anon', 'file', 'shmem'],
      ['bare `node -e` (same run)', mib(r.rss.bareNodeKiB), ...parts(b.bareNode)],
      ['agent idle, 5 s after ready: compat, 1000 file rules, process events', mib(r.rss.compatIdleKiB), ...parts(b.compatIdle)],
      ['agent idle, 5 s after ready: monitor on (process+file+network)', mib(r.rss.agentIdleKiB), ...parts(b.monitorIdle)],
      ...r.rss.underLoad.map((u) => [`agent (monitor on) peak, ${u.offeredRate / 1000}k opens/s offered`, mib(u.peakKiB), '', '', '']),
    ];
    const cpu = [
      ...(r.rss.agentIdleCores !== undefined ? [`${(r.rss.agentIdleCores * 100).toFixed(1)}% idle`] : []),
      ...r.rss.underLoad.map((u) => `${(u.agentCores * 100).toFixed(0)}% at ${(u.generatedRate / 1000).toFixed(0)}k opens/s`),
    ];
    lines.push(table(rows));
    lines.push(`  agent (monitor on) CPU, % of one core: ${cpu.join(', ')}`);
    const lost = r.rss.agentEventsLost;
    if (lost !== undefined) {
      const last = lost[lost.length - 1];
      lines.push(
        last
          ? `  the agent itself reported lost events under that load: ${last.kernelDropped} kernel, ${last.userspaceDropped} userspace, ${last.decodeErrors} undecodable`
          : '  the agent itself reported no lost events under that load (its 10 s housekeeping check)',
      );
    }
    for (const [key, label] of [
      ['compatIdle', 'compat idle'],
      ['monitorIdle', 'monitor idle'],
    ]) {
      const js = r.rss.jsMemory?.[key];
      if (js) {
        const m = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;
        lines.push(
          `  ${label}, inside the agent: V8 heap ${m(js.heapUsed)} used of ${m(js.heapTotal)}, external ${m(js.external)} (array buffers ${m(js.arrayBuffers)})`,
        );
      }
    }
    lines.push('');
  }
  const died = Object.entries(r.lifetime ?? {}).filter(([, l]) => !l.alive);
  if (died.length) {
    lines.push(
      `WARNING: the agent ended by itself after "ready" (${died.map(([n, l]) => `${n}: after ${l.endedAfterReadyMs} ms, exit ${l.exit}`).join('; ')});`,
      '         it was measured with bench/lib/keepalive.js preloaded (one idle timer keeping its event loop alive).',
      '',
    );
  }
  if (r.agentExits?.length) {
    const unclean = r.agentExits.filter((e) => e.exit !== 0);
    lines.push(
      unclean.length
        ? `Agent stops: ${unclean.length} of ${r.agentExits.length} SIGTERM stops did not exit 0: ${unclean.map((e) => `${e.config}: ${e.exit}`).join(', ')}`
        : `Agent stops: all ${r.agentExits.length} SIGTERM stops exited 0`,
      '',
    );
  }
  lines.push('Targets (aims, not assertions)');
  const rows = [['', 'target', 'aim', 'measured']];
  for (const t of r.targets) rows.push([t.met === undefined ? '[ -- ]' : t.met ? '[met]' : '[MISSED]', t.name, t.aim, t.value ?? 'not measured']);
  lines.push(table(rows), '');
  return lines.join('\n');
}

module.exports = { TARGETS, evaluateTargets, formatReport };
