import { checkId, checkPrefix, groupDesiredTopic, hubFilters, nodeTopics, nodeUserName, parseTopic } from '../../agent/src/hub/topics';
import { resolveIdentity } from '../../agent/src/hub/identity';
import { crc32, crc32ForTest } from '../../agent/src/hub/crc32';

describe('hub topics', () => {
  test('node and group topics under the prefix', () => {
    const t = nodeTopics('edgeward', 'acme', 'n1');
    expect(t.desired).toBe('edgeward/acme/nodes/n1/policy/desired');
    expect(t.reported).toBe('edgeward/acme/nodes/n1/policy/reported');
    expect(t.alerts).toBe('edgeward/acme/nodes/n1/alerts');
    expect(t.status).toBe('edgeward/acme/nodes/n1/status');
    expect(groupDesiredTopic('a/b', 'acme', 'cams')).toBe('a/b/acme/groups/cams/policy/desired');
    expect(hubFilters('edgeward', 'hubs').alerts).toBe('$share/hubs/edgeward/+/nodes/+/alerts');
  });

  test('parseTopic inverts the builders and rejects anything else', () => {
    const t = nodeTopics('p/q', 'acme', 'n-1.x');
    for (const [channel, topic] of Object.entries(t)) {
      expect(parseTopic('p/q', topic)).toEqual({ kind: 'node', org: 'acme', node: 'n-1.x', channel });
    }
    expect(parseTopic('p/q', groupDesiredTopic('p/q', 'acme', 'g'))).toEqual({ kind: 'group', org: 'acme', group: 'g', channel: 'desired' });
    expect(parseTopic('p/q', 'p/q/hub/h1/status')).toEqual({ kind: 'hub', instance: 'h1', channel: 'status' });
    for (const bad of ['p/q/acme/nodes/n1/other', 'x/acme/nodes/n1/alerts', 'p/q/acme/nodes/+/alerts', 'p/q/acme/groups/g/alerts', 'p/q/acme/nodes/n1/alerts/more']) {
      expect(parseTopic('p/q', bad)).toBeUndefined();
    }
  });

  test('ids and prefixes that would break topics or user names are refused', () => {
    for (const bad of ['', 'a/b', '+', '#', 'a+b', 'n@o', '-x', 'x'.repeat(129), ' a']) expect(checkId('node', bad).ok).toBe(false);
    for (const good of ['a', 'node-1', 'Org_2.x']) expect(checkId('node', good).ok).toBe(true);
    for (const bad of ['', '$SYS', 'a//b', 'a/#', '/a', 'a/']) expect(checkPrefix(bad).ok).toBe(false);
    expect(checkPrefix('site/edgeward').ok).toBe(true);
    expect(nodeUserName('acme', 'n1')).toBe('n1@acme');
  });
});

describe('node identity', () => {
  test('Open Horizon environment wins, with a warning when the configuration differs', () => {
    const r = resolveIdentity({ organization: 'cfg', nodeId: 'n-cfg' }, { HZN_ORGANIZATION: 'acme', HZN_NODE_ID: 'n1', HZN_ARCH: 'arm64' });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.identity).toEqual({ org: 'acme', node: 'n1', arch: 'arm64', source: { org: 'env', node: 'env' } });
    expect(r.value.warnings).toHaveLength(2);
  });

  test('configuration is used without the environment; missing or bad ids are errors naming the variable', () => {
    const r = resolveIdentity({ organization: 'acme', nodeId: 'n1' }, {});
    expect(r.ok && r.value.identity.node).toBe('n1');
    const missing = resolveIdentity({}, {});
    expect(missing.ok).toBe(false);
    if (!missing.ok) expect(missing.error.message).toMatch(/HZN_ORGANIZATION.*HZN_NODE_ID/);
    const bad = resolveIdentity({ organization: 'acme' }, { HZN_NODE_ID: 'a/b' });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.message).toMatch(/HZN_NODE_ID "a\/b"/);
  });
});

describe('crc32', () => {
  test('the table implementation agrees with zlib and the standard check value', () => {
    expect(crc32ForTest(Buffer.from('123456789'))).toBe(0xcbf43926);
    const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff));
    expect(crc32ForTest(data)).toBe(crc32(data));
  });
});
