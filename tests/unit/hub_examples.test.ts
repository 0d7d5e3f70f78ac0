// The shipped examples and schema fragment stay valid and in sync with the code.
import * as fs from 'fs';
import * as path from 'path';
import * as yaml from 'js-yaml';
import { formatConfigError, loadConfigFile } from '../../agent/src/config';
import { loadHubServiceConfig } from '../../agent/src/hub/hub_config';
import { HUB_CONFIG_SCHEMA, parseHubConfig } from '../../agent/src/hub/options';

const HUB_POLICIES = path.join(__dirname, '..', '..', 'policies', 'hub');

describe('shipped hub examples', () => {
  test('hub.example.yaml is a valid hub configuration', () => {
    const r = loadHubServiceConfig(path.join(HUB_POLICIES, 'hub.example.yaml'));
    expect(r.ok ? [] : r.error.map((e) => e.message)).toEqual([]);
    expect(r.ok && r.value.nodes).toHaveLength(2);
  });

  test('agent-hub.example.yaml is a valid hub section and states the defaults', () => {
    const doc = yaml.load(fs.readFileSync(path.join(HUB_POLICIES, 'agent-hub.example.yaml'), 'utf8')) as { hub: Record<string, unknown> };
    const full = parseHubConfig(doc.hub);
    expect(full.ok ? [] : full.error.map((e) => e.message)).toEqual([]);
    const minimal = parseHubConfig({ url: doc.hub.url, tls: doc.hub.tls, policyPublicKeys: doc.hub.policyPublicKeys, groups: doc.hub.groups });
    if (!full.ok || !minimal.ok) throw new Error('invalid');
    expect(minimal.value).toEqual(full.value);
  });

  test("the agent config schema's hub section is HUB_CONFIG_SCHEMA", () => {
    const file = JSON.parse(fs.readFileSync(path.join(HUB_POLICIES, '..', 'agent-config.schema.json'), 'utf8'));
    expect(file.properties.hub).toEqual(JSON.parse(JSON.stringify(HUB_CONFIG_SCHEMA)));
  });

  test('agent-hub.example.yaml is a valid agent configuration file', () => {
    const r = loadConfigFile(path.join(HUB_POLICIES, 'agent-hub.example.yaml'));
    expect(r.errors.map(formatConfigError)).toEqual([]);
    expect(r.config?.hub?.url).toBe('mqtts://hub.example.net:8883');
  });
});
