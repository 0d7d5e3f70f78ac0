// Pseudo-filesystems the agent needs. Boards booted without systemd (or
// containers) may not have them mounted; mounting is idempotent.
import { execFileSync } from 'child_process';
import * as fs from 'fs';

const NEEDED: Array<{ type: string; target: string }> = [
  { type: 'securityfs', target: '/sys/kernel/security' }, // active LSM list
  { type: 'tracefs', target: '/sys/kernel/tracing' }, // syscall tracepoint ids
];

function mountedTargets(): Set<string> {
  const text = fs.readFileSync('/proc/self/mounts', 'utf8');
  return new Set(text.split('\n').map((l) => l.split(' ')[1]));
}

/** Mounts what is missing; returns a line per failure (not fatal: the probe reports the consequences). */
export function ensureKernelFilesystems(): string[] {
  const problems: string[] = [];
  const mounted = mountedTargets();
  for (const { type, target } of NEEDED) {
    if (mounted.has(target) || !fs.existsSync(target)) continue;
    try {
      execFileSync('mount', ['-t', type, 'none', target], { stdio: 'pipe' });
    } catch (err) {
      problems.push(`cannot mount ${type} on ${target}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return problems;
}
