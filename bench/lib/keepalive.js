'use strict';
// Preloaded into the agent (node --require) only when the agent exits by
// itself after "ready" (nothing of its own keeps the event loop alive): one
// referenced timer that never fires, so the bench can measure the agent at
// all; released on SIGTERM/SIGINT so the agent's own stop path still ends the
// process. Costs nothing measurable. bench/run.js reports when it was needed.
const timer = setInterval(() => {}, 2 ** 30);
for (const sig of ['SIGTERM', 'SIGINT']) process.once(sig, () => timer.unref());
