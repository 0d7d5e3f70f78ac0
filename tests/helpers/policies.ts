// Policy YAML the tests write, built in one place (KubeArmor's
// security.kubearmor.com/v1 as a user would write it).

/** A KubeArmorHostPolicy for every node; `spec` is the YAML under `spec:` besides nodeSelector (indented two spaces). */
export function hostPolicy(name: string, spec: string): string {
  return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: ${name}
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
${spec}`;
}

export interface ProcessPolicyOptions {
  /** files matched by path as well (a `file:` section with the same action) */
  files?: string[];
  /** default Block */
  action?: 'Block' | 'Audit' | 'Allow';
  severity?: number;
}

/** A host policy whose process section matches `binaries` by path (and `files` when given), one action for all. */
export function hostProcessPolicy(name: string, binaries: string[], opts: ProcessPolicyOptions = {}): string {
  const paths = (list: string[]) => list.map((p) => `      - path: ${p}\n`).join('');
  const severity = opts.severity === undefined ? '' : `  severity: ${opts.severity}\n`;
  const file = opts.files?.length ? `  file:\n    matchPaths:\n${paths(opts.files)}` : '';
  return hostPolicy(name, `${severity}  process:\n    matchPaths:\n${paths(binaries)}${file}  action: ${opts.action ?? 'Block'}\n`);
}

/** A KubeArmorPolicy selecting containers by `matchLabels`; `spec` is the YAML under `spec:` besides the selector (indented two spaces). */
export function containerPolicy(name: string, matchLabels: Record<string, string>, spec: string): string {
  const labels = Object.entries(matchLabels)
    .map(([k, v]) => `      ${k}: ${v}\n`)
    .join('');
  return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ${name}
spec:
  selector:
    matchLabels:
${labels}${spec}`;
}
