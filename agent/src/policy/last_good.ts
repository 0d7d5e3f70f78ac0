// "Nothing that was accepted is lost": when a reload finds a policy file
// broken, the policies it held before stay in force until the file is fixed
// or removed. Removing a file is the way to drop its policies.
import type { LoadedPolicy, PolicyError } from './loader';

export interface MergeResult {
  policies: LoadedPolicy[];
  /** one line per policy kept from the previous load */
  kept: string[];
}

/**
 * The policies to compile: everything that loaded now, plus the previous
 * version of each policy whose file still exists but failed this time
 * (`refusedNow` names policies the compiler refused; `brokenFiles` files
 * with load errors).
 */
export function mergeWithLastGood(
  loadedNow: LoadedPolicy[],
  loadErrors: PolicyError[],
  refusedNow: Set<string>,
  previous: LoadedPolicy[],
  fileExists: (file: string) => boolean,
): MergeResult {
  const brokenFiles = new Set(loadErrors.map((e) => e.file));
  const byName = new Map(loadedNow.filter((p) => !refusedNow.has(p.name)).map((p) => [p.name, p]));
  const kept: string[] = [];
  for (const old of previous) {
    if (byName.has(old.name) || !fileExists(old.source)) continue;
    const fileBroken = brokenFiles.has(old.source);
    const policyRefused = refusedNow.has(old.name);
    if (!fileBroken && !policyRefused) continue; // the file loaded fine without it: it was removed on purpose
    byName.set(old.name, old);
    kept.push(`${old.source}: policy "${old.name}": keeping the last good version until the file is fixed`);
  }
  return { policies: [...byName.values()], kept };
}
