'use strict';
// Percentiles (nearest rank) and summaries of latency samples.

function percentile(values, p) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length, Math.max(1, rank)) - 1];
}

/** { n, p50, p99, max, mean } */
function latencySummary(values) {
  if (!values.length) return { n: 0, p50: NaN, p99: NaN, max: NaN, mean: NaN };
  return {
    n: values.length,
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    max: Math.max(...values),
    mean: values.reduce((a, b) => a + b, 0) / values.length,
  };
}

function median(values) {
  return percentile(values, 50);
}

module.exports = { percentile, latencySummary, median };
