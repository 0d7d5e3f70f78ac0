import { ContainerVisibility, parseVisibilityLabel, VISIBILITY_LABEL, VisibilityGroups } from '../../agent/src/visibility_labels';

const ALL: VisibilityGroups = { process: true, file: true, network: true };
const OFF = { process: false, file: false, network: false };

describe('parseVisibilityLabel', () => {
  test.each([
    ['process,file,network,capabilities', { process: true, file: true, network: true }],
    ['process', { process: true, file: false, network: false }],
    [' file , network ', { process: false, file: true, network: true }],
    ['capabilities', { process: false, file: false, network: false }],
    ['none', { process: false, file: false, network: false }],
  ])('%j', (value, groups) => {
    expect(parseVisibilityLabel(value)).toEqual({ ok: true, groups });
  });

  test.each([
    ['', /empty group/],
    ['process,', /empty group/],
    ['proces', /unknown group "proces"/],
    ['Process', /unknown group "Process"/],
    ['process;file', /unknown group "process;file"/],
    ['none,process', /"none" cannot be combined/],
  ])('%j is refused with the reason', (value, reason) => {
    const r = parseVisibilityLabel(value);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(reason);
  });
});

describe('ContainerVisibility', () => {
  const labelled = (id: string, value?: string) => ({ id, name: `c-${id}`, labels: (value === undefined ? { app: 'x' } : { [VISIBILITY_LABEL]: value }) as Record<string, string> });

  test('node-wide off: only the containers whose label turns a group on are logged, and only that group', () => {
    const warnings: string[] = [];
    const v = new ContainerVisibility(OFF, ALL, (m) => warnings.push(m));
    expect(v.anyWants('process')).toBe(false);
    v.containerAdded(labelled('aaa', 'process'));
    v.containerAdded(labelled('bbb', 'none'));
    v.containerAdded(labelled('ccc'));
    expect(v.anyWants('process')).toBe(true);
    expect(v.anyWants('file')).toBe(false);
    expect(v.wants('process', 'aaa')).toBe(true);
    expect(v.wants('file', 'aaa')).toBe(false);
    expect(v.wants('process', 'bbb')).toBe(false);
    expect(v.wants('process', 'ccc')).toBe(false);
    expect(v.wants('process', undefined)).toBe(false); // the host follows the node
    expect(v.wants('process', '')).toBe(false);
    expect(warnings).toEqual([]);
    // gone: the group is off everywhere again
    v.containerRemoved('aaa');
    expect(v.anyWants('process')).toBe(false);
    expect(v.wants('process', 'aaa')).toBe(false);
  });

  test('node-wide on: "none" silences one container; unlabelled ones and the host follow the node', () => {
    const v = new ContainerVisibility({ process: true, file: true, network: false }, ALL, () => undefined);
    v.containerAdded(labelled('quiet', 'none'));
    v.containerAdded(labelled('net', 'network'));
    v.containerAdded(labelled('plain'));
    expect(v.wants('process', 'quiet')).toBe(false);
    expect(v.wants('file', 'quiet')).toBe(false);
    expect(v.wants('process', 'net')).toBe(false);
    expect(v.wants('network', 'net')).toBe(true);
    expect(v.wants('process', 'plain')).toBe(true);
    expect(v.wants('network', 'plain')).toBe(false);
    expect(v.wants('file', undefined)).toBe(true);
    expect(v.anyWants('network')).toBe(true);
    expect(v.labelled()).toEqual([
      { id: 'quiet', name: 'c-quiet', visibility: [] },
      { id: 'net', name: 'c-net', visibility: ['network'] },
    ]);
  });

  test('a container seen again (restart, reconnect) is counted once; a changed label replaces the old one', () => {
    const v = new ContainerVisibility(OFF, ALL, () => undefined);
    v.containerAdded(labelled('aaa', 'file'));
    v.containerAdded(labelled('aaa', 'file'));
    v.containerRemoved('aaa');
    expect(v.anyWants('file')).toBe(false);
    v.containerAdded(labelled('aaa', 'file'));
    v.containerAdded(labelled('aaa', 'process'));
    expect(v.anyWants('file')).toBe(false);
    expect(v.anyWants('process')).toBe(true);
  });

  test('a bad label is reported once with the container and the reason; the container follows the node', () => {
    const warnings: string[] = [];
    const v = new ContainerVisibility({ process: true, file: false, network: false }, ALL, (m) => warnings.push(m));
    v.containerAdded({ id: '0123456789abcdef', name: 'typo', labels: { [VISIBILITY_LABEL]: 'proccess' } });
    v.containerAdded({ id: '0123456789abcdef', name: 'typo', labels: { [VISIBILITY_LABEL]: 'proccess' } });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^container typo \(0123456789ab\): label kubearmor-visibility="proccess": unknown group "proccess" .*follows the node-wide visibility config$/);
    expect(v.wants('process', '0123456789abcdef')).toBe(true);
    expect(v.wants('file', '0123456789abcdef')).toBe(false);
  });

  test('a group the monitor does not run is never wanted, and a label asking for it says which config key turns it on', () => {
    const warnings: string[] = [];
    const v = new ContainerVisibility(OFF, { process: true, file: false, network: false }, (m) => warnings.push(m));
    v.containerAdded({ id: 'fedcba9876543210', name: 'wants-files', labels: { [VISIBILITY_LABEL]: 'process,file' } });
    expect(v.wants('process', 'fedcba9876543210')).toBe(true);
    expect(v.wants('file', 'fedcba9876543210')).toBe(false);
    expect(v.anyWants('file')).toBe(false);
    expect(warnings).toEqual([
      'container wants-files (fedcba987654): label kubearmor-visibility asks for file telemetry, which the monitor does not run on this node (monitor.file: true in the config turns it on)',
    ]);
  });
});
