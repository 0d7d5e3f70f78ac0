'use strict';
// Small statistics helpers: medians and spreads of repeated measurements.

function sorted(values) {
  return [...values].sort((a, b) => a - b);
}

function median(values) {
  if (!values.length) return NaN;
  const s = sorted(values);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** { median, min, max, n } of a list of numbers */
function summary(values) {
  const s = sorted(values);
  return { median: median(s), min: s[0], max: s[s.length - 1], n: s.length, values };
}

/**
 * Ratio of each measured run to the baselines around it: baselines[i] was
 * run just before measured[i] and baselines[i + 1] just after, so slow drift
 * of the machine (other work, thermal) cancels.
 */
function bracketedRatios(measured, before, after) {
  return measured.map((m, i) => m / ((before[i] + after[i]) / 2));
}

module.exports = { median, summary, bracketedRatios };
