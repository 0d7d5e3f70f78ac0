'use strict';
// Preloaded into the agent (node --require) by the rss part of bench/run.js:
// on SIGUSR2 it writes the V8/Node view of the process's memory as one JSON
// line on stderr, so the report can tell JavaScript heap from native memory.
process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  process.stderr.write(`${JSON.stringify({ benchMemory: { ...m, heapSpaces: undefined } })}\n`);
});
