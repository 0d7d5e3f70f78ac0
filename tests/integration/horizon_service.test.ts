// The Open Horizon service files (horizon-service/{agent,hub}/horizon/) checked
// against the rules anax and hzn apply when they are published (hzn exchange
// service publish, hzn exchange deployment addpolicy, hzn exchange pattern
// publish, hzn dev service start): required fields, sharable and arch values,
// userInput types with string defaults, deployment fields, the deployment
// signature left for hzn to make, secrets bound, privileged services allowed by
// policy. hzn substitutes $VARS from hzn.json and the environment; so does this
// test, once per architecture.
import * as fs from 'fs';
import * as path from 'path';
import { REPO } from '../helpers/system';

const ROOT = path.join(REPO, 'horizon-service');
const ARCHES = ['amd64', 'arm64', 'arm'];
const SHARABLE = ['exclusive', 'singleton', 'multiple']; // "single" is deprecated
const USER_INPUT_TYPES = ['string', 'int', 'float', 'boolean', 'list of strings'];
/** deployment.services.<name> fields anax knows (docs/deployment_string.md) */
const DEPLOYMENT_FIELDS = new Set([
  'image', 'privileged', 'cap_add', 'environment', 'devices', 'binds', 'tmpfs', 'ports', 'ephemeral_ports',
  'specific_ports', 'command', 'network', 'entrypoint', 'max_memory_mb', 'max_cpus', 'log_driver', 'secrets',
  'user', 'pid', 'sysctls',
]);
const BIND_OPTIONS = new Set(['ro', 'rw', 'z', 'Z', 'shared', 'rshared', 'slave', 'rslave', 'private', 'rprivate', 'nocopy']);
const FILES = ['hzn.json', 'service.definition.json', 'service.policy.json', 'deployment.policy.json', 'node.policy.json', 'userinput.json', 'pattern.json'];
const PRIVILEGED_CONSTRAINT = 'openhorizon.allowPrivileged == true';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** hzn's substitution: $NAME and ${NAME} from hzn.json's MetadataVars and the environment. */
function substitute(text: string, vars: Record<string, string>, file: string): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, a: string, b: string) => {
    const name = a ?? b;
    if (!(name in vars)) throw new Error(`${file}: $${name} is not defined in hzn.json or the environment`);
    return vars[name];
  });
}

interface Project {
  dir: string;
  def: Json;
  servicePolicy: Json;
  deploymentPolicy: Json;
  nodePolicy: Json;
  userinput: Json;
  pattern: Json;
}

function load(project: string, arch: string): Project {
  const dir = path.join(ROOT, project, 'horizon');
  for (const f of FILES) if (!fs.existsSync(path.join(dir, f))) throw new Error(`${dir}/${f} is missing`);
  const hzn = JSON.parse(fs.readFileSync(path.join(dir, 'hzn.json'), 'utf8'));
  const vars: Record<string, string> = { HZN_ORG_ID: 'testorg', ARCH: arch, ...hzn.MetadataVars };
  const read = (f: string): Json => JSON.parse(substitute(fs.readFileSync(path.join(dir, f), 'utf8'), vars, `${project}/${f}`));
  return {
    dir,
    def: read('service.definition.json'),
    servicePolicy: read('service.policy.json'),
    deploymentPolicy: read('deployment.policy.json'),
    nodePolicy: read('node.policy.json'),
    userinput: read('userinput.json'),
    pattern: read('pattern.json'),
  };
}

const isString = (v: unknown): v is string => typeof v === 'string';
const nonEmpty = (v: unknown): v is string => isString(v) && v.length > 0;
const VERSION = /^[0-9]+(\.[0-9]+){0,2}$/;
const VERSION_RANGE = /^[[(]?[0-9]+(\.[0-9]+){0,2}(,([0-9]+(\.[0-9]+){0,2}|INFINITY)[\])])?$/;

function checkValueOfType(type: string, value: string): boolean {
  switch (type) {
    case 'string':
    case 'list of strings':
      return true;
    case 'int':
      return /^-?[0-9]+$/.test(value);
    case 'float':
      return /^-?[0-9]+(\.[0-9]+)?$/.test(value);
    case 'boolean':
      return value === 'true' || value === 'false';
    default:
      return false;
  }
}

function checkConstraints(list: unknown, where: string, errors: string[]): string[] {
  if (!Array.isArray(list)) {
    errors.push(`${where}: constraints must be an array of strings`);
    return [];
  }
  for (const c of list) {
    const ok = isString(c) && c.split(/\s*(?:&&|\|\||AND|OR)\s*/).every((t) => /^[A-Za-z0-9_./-]+\s*(==|!=|<=|>=|<|>|=|in)\s*\S.*$/.test(t.trim()));
    if (!ok) errors.push(`${where}: constraint ${JSON.stringify(c)} is not "property op value"`);
  }
  return list.filter(isString);
}

function checkProperties(list: unknown, where: string, errors: string[]): Map<string, unknown> {
  const props = new Map<string, unknown>();
  if (!Array.isArray(list)) {
    errors.push(`${where}: properties must be an array`);
    return props;
  }
  for (const [i, p] of list.entries()) {
    if (!p || !nonEmpty(p.name) || p.value === undefined) errors.push(`${where}: properties[${i}] needs name and value`);
    else props.set(p.name, p.value);
  }
  return props;
}

/** userInput settings of a deployment policy or pattern for service `url`: names set. */
function checkUserInputSettings(list: unknown, def: Json, where: string, errors: string[]): Set<string> {
  const set = new Set<string>();
  if (list === undefined) return set;
  if (!Array.isArray(list)) {
    errors.push(`${where}: userInput must be an array`);
    return set;
  }
  const declared = new Map<string, string>((def.userInput ?? []).map((u: Json) => [u.name, u.type]));
  for (const [i, s] of list.entries()) {
    if (s.serviceUrl !== def.url || s.serviceOrgid !== def.org) {
      errors.push(`${where}: userInput[${i}] names service ${s.serviceOrgid}/${s.serviceUrl}, not ${def.org}/${def.url}`);
    }
    if (!isString(s.serviceArch) || (s.serviceArch !== '' && s.serviceArch !== '*' && !ARCHES.includes(s.serviceArch))) {
      errors.push(`${where}: userInput[${i}].serviceArch ${JSON.stringify(s.serviceArch)} is not "", "*" or an arch`);
    }
    if (!isString(s.serviceVersionRange) || !VERSION_RANGE.test(s.serviceVersionRange)) {
      errors.push(`${where}: userInput[${i}].serviceVersionRange ${JSON.stringify(s.serviceVersionRange)} is not a version range`);
    }
    for (const input of s.inputs ?? []) {
      const type = declared.get(input.name);
      if (!type) errors.push(`${where}: input ${input.name} is not a userInput of the service`);
      else if (!checkValueOfType(type, String(input.value))) errors.push(`${where}: input ${input.name}=${input.value} is not a ${type}`);
      set.add(input.name);
    }
  }
  return set;
}

/** secretBinding for the service: service secret name -> vault name. */
function checkSecretBinding(list: unknown, def: Json, where: string, errors: string[]): Set<string> {
  const bound = new Set<string>();
  if (list === undefined) return bound;
  if (!Array.isArray(list)) {
    errors.push(`${where}: secretBinding must be an array`);
    return bound;
  }
  for (const [i, b] of list.entries()) {
    if (b.serviceUrl !== def.url || b.serviceOrgid !== def.org) errors.push(`${where}: secretBinding[${i}] names another service`);
    if (!Array.isArray(b.secrets)) {
      errors.push(`${where}: secretBinding[${i}].secrets must be an array of {serviceSecret: vaultSecret}`);
      continue;
    }
    for (const entry of b.secrets) {
      for (const [name, vault] of Object.entries(entry as Record<string, unknown>)) {
        if (!nonEmpty(vault)) errors.push(`${where}: secret ${name} is bound to no vault secret`);
        bound.add(name);
      }
    }
  }
  return bound;
}

/** Every rule this project breaks, as "file: what"; empty when publishable. */
function validate(p: Project, arch: string, version: string): string[] {
  const e: string[] = [];
  const d = p.def;
  const sd = 'service.definition.json';
  for (const k of ['org', 'label', 'url', 'version', 'arch']) if (!nonEmpty(d[k])) e.push(`${sd}: ${k} is required`);
  if (!VERSION.test(d.version)) e.push(`${sd}: version ${d.version} is not dotted decimal`);
  if (d.version !== version) e.push(`${sd}: version ${d.version} differs from package.json's ${version}`);
  if (d.arch !== arch || !ARCHES.includes(d.arch)) e.push(`${sd}: arch ${d.arch} is not ${arch}`);
  if (!SHARABLE.includes(d.sharable)) e.push(`${sd}: sharable ${JSON.stringify(d.sharable)} is not one of ${SHARABLE.join(', ')}`);
  if (typeof d.public !== 'boolean') e.push(`${sd}: public must be a boolean`);
  if (!Array.isArray(d.requiredServices)) e.push(`${sd}: requiredServices must be an array`);
  // hzn exchange service publish -k KEY -K PUBKEY signs the deployment it publishes;
  // a signature written here could not match the substituted deployment.
  if (d.deploymentSignature !== '') e.push(`${sd}: deploymentSignature must be "" (hzn signs at publish)`);

  const inputs = Array.isArray(d.userInput) ? d.userInput : (e.push(`${sd}: userInput must be an array`), []);
  const names = new Set<string>();
  for (const [i, u] of inputs.entries()) {
    if (!nonEmpty(u.name) || !nonEmpty(u.label) || !nonEmpty(u.type)) e.push(`${sd}: userInput[${i}] needs name, label and type`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(u.name) || u.name.startsWith('HZN_')) e.push(`${sd}: userInput ${u.name} is not a usable environment variable name`);
    if (!USER_INPUT_TYPES.includes(u.type)) e.push(`${sd}: userInput ${u.name} type ${JSON.stringify(u.type)} is not one of ${USER_INPUT_TYPES.join(', ')}`);
    if ('defaultValue' in u) {
      if (!isString(u.defaultValue)) e.push(`${sd}: userInput ${u.name} defaultValue must be a string, whatever the type`);
      else if (u.defaultValue !== '' && !checkValueOfType(u.type, u.defaultValue)) e.push(`${sd}: userInput ${u.name} defaultValue is not a ${u.type}`);
    }
    if (names.has(u.name)) e.push(`${sd}: userInput ${u.name} is declared twice`);
    names.add(u.name);
  }

  const services = d.deployment?.services;
  const secrets = new Set<string>();
  let privileged = false;
  if (!services || typeof services !== 'object' || Object.keys(services).length === 0) {
    e.push(`${sd}: deployment.services must name at least one container`);
  } else {
    for (const [name, s] of Object.entries(services as Record<string, Json>)) {
      const w = `${sd}: deployment.services.${name}`;
      if (!/^[a-z0-9][a-z0-9_.-]*$/.test(name)) e.push(`${w}: not a container name`);
      if (!nonEmpty(s.image)) e.push(`${w}: image is required`);
      for (const k of Object.keys(s)) if (!DEPLOYMENT_FIELDS.has(k)) e.push(`${w}: unknown field ${k}`);
      if ('privileged' in s && typeof s.privileged !== 'boolean') e.push(`${w}: privileged must be a boolean`);
      if (s.privileged === true || s.network === 'host') privileged = true;
      if ('pid' in s && !(s.pid === 'host' || /^container:.+/.test(s.pid))) e.push(`${w}: pid must be "host" or "container:<name>"`);
      for (const b of s.binds ?? []) {
        const parts = String(b).split(':');
        const opts = parts[2] ? parts[2].split(',') : [];
        if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1].startsWith('/') || !opts.every((o) => BIND_OPTIONS.has(o))) {
          e.push(`${w}: bind ${JSON.stringify(b)} is not "source:/target[:options]"`);
        }
      }
      for (const k of ['entrypoint', 'command', 'cap_add', 'environment']) {
        if (k in s && !(Array.isArray(s[k]) && s[k].every(isString))) e.push(`${w}: ${k} must be an array of strings`);
      }
      if (s.secrets !== undefined) {
        if (typeof s.secrets !== 'object' || Array.isArray(s.secrets)) e.push(`${w}: secrets must be an object {name: {description}}`);
        else for (const n of Object.keys(s.secrets)) {
          if (!/^[A-Za-z0-9_-]+$/.test(n)) e.push(`${w}: secret name ${n} is not a file name`);
          secrets.add(n);
        }
      }
    }
  }

  // Policies.
  checkConstraints(p.servicePolicy.constraints ?? [], 'service.policy.json', e);
  checkProperties(p.servicePolicy.properties ?? [], 'service.policy.json', e);
  const nodeProps = checkProperties(p.nodePolicy.properties, 'node.policy.json', e);
  checkConstraints(p.nodePolicy.constraints ?? [], 'node.policy.json', e);
  const dp = p.deploymentPolicy;
  if (!nonEmpty(dp.label)) e.push('deployment.policy.json: label is required');
  if (dp.service?.name !== d.url || dp.service?.org !== d.org) e.push('deployment.policy.json: service.name/org must be the service url/org');
  if (!(dp.service?.arch === '*' || ARCHES.includes(dp.service?.arch))) e.push('deployment.policy.json: service.arch must be "*" or an arch');
  if (!Array.isArray(dp.service?.serviceVersions) || dp.service.serviceVersions.length === 0 || !dp.service.serviceVersions.every((v: Json) => VERSION.test(v.version))) {
    e.push('deployment.policy.json: service.serviceVersions must list versions');
  }
  const dpConstraints = checkConstraints(dp.constraints, 'deployment.policy.json', e);
  if (privileged) {
    // anax refuses privileged (or host network) containers on nodes without this property;
    // the deployment policy says so, so that no agreement is even proposed to such a node.
    if (!dpConstraints.includes(PRIVILEGED_CONSTRAINT)) {
      e.push(`deployment.policy.json: a privileged service needs the constraint "${PRIVILEGED_CONSTRAINT}"`);
    }
    if (nodeProps.get('openhorizon.allowPrivileged') !== true) e.push('node.policy.json: openhorizon.allowPrivileged must be true for a privileged service');
  }

  // Every userInput without a default is set; every secret is bound (policy and pattern).
  const required = inputs.filter((u: Json) => !('defaultValue' in u)).map((u: Json) => u.name as string);
  const setByPolicy = checkUserInputSettings(dp.userInput, d, 'deployment.policy.json', e);
  const setByPattern = checkUserInputSettings(p.pattern.userInput, d, 'pattern.json', e);
  const boundByPolicy = checkSecretBinding(dp.secretBinding, d, 'deployment.policy.json', e);
  const boundByPattern = checkSecretBinding(p.pattern.secretBinding, d, 'pattern.json', e);
  for (const [where, set] of [['deployment.policy.json', setByPolicy], ['pattern.json', setByPattern]] as const) {
    for (const r of required) if (!set.has(r)) e.push(`${where}: userInput ${r} has no default and is not set`);
  }
  for (const [where, bound] of [['deployment.policy.json', boundByPolicy], ['pattern.json', boundByPattern]] as const) {
    for (const s of secrets) if (!bound.has(s)) e.push(`${where}: secret ${s} is not bound`);
    for (const b of bound) if (!secrets.has(b)) e.push(`${where}: binds ${b}, which the service does not declare`);
  }

  // Pattern.
  if (!nonEmpty(p.pattern.label)) e.push('pattern.json: label is required');
  const patternArches = new Set<string>();
  for (const [i, s] of (p.pattern.services ?? []).entries()) {
    if (s.serviceUrl !== d.url || s.serviceOrgid !== d.org) e.push(`pattern.json: services[${i}] names another service`);
    if (!ARCHES.includes(s.serviceArch)) e.push(`pattern.json: services[${i}].serviceArch ${s.serviceArch} is not an arch`);
    if (!Array.isArray(s.serviceVersions) || !s.serviceVersions.every((v: Json) => VERSION.test(v.version))) e.push(`pattern.json: services[${i}].serviceVersions must list versions`);
    patternArches.add(s.serviceArch);
  }
  for (const a of ARCHES) if (!patternArches.has(a)) e.push(`pattern.json: no service entry for arch ${a}`);

  // hzn dev's userinput.json.
  if (!Array.isArray(p.userinput.global) || !Array.isArray(p.userinput.services)) e.push('userinput.json: needs global and services arrays');
  for (const s of p.userinput.services ?? []) {
    if (s.url !== d.url || s.org !== d.org) e.push(`userinput.json: ${s.org}/${s.url} is not this service`);
    for (const [n, v] of Object.entries(s.variables ?? {})) {
      const u = inputs.find((x: Json) => x.name === n);
      if (!u) e.push(`userinput.json: ${n} is not a userInput of the service`);
      else if (!checkValueOfType(u.type, String(v))) e.push(`userinput.json: ${n}=${v} is not a ${u.type}`);
    }
    for (const r of required) if (!(r in (s.variables ?? {}))) e.push(`userinput.json: ${r} has no default and is not set`);
  }
  return e;
}

const pkgVersion = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')).version as string;

describe.each(['agent', 'hub'])('horizon-service/%s', (project) => {
  test.each(ARCHES)('publishable for arch %s', (arch) => {
    expect(validate(load(project, arch), arch, pkgVersion)).toEqual([]);
  });

  test('every userInput and secret is one its entrypoint reads', () => {
    const p = load(project, 'amd64');
    const script = fs.readFileSync(path.join(ROOT, 'image', project === 'agent' ? 'entrypoint.sh' : 'hub-entrypoint.sh'), 'utf8');
    for (const u of p.def.userInput) expect(script).toContain(u.name);
    const [svc] = Object.values(p.def.deployment.services as Record<string, Json>);
    for (const s of Object.keys(svc.secrets)) expect(script).toContain(s);
    if (svc.entrypoint) {
      // the path the Dockerfile copies it to
      const dockerfile = fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
      expect(dockerfile).toContain(path.basename(svc.entrypoint[0]));
      expect(path.dirname(svc.entrypoint[0])).toBe('/opt/edgeward/horizon');
    }
  });
});

describe('the agent service has the host access it needs', () => {
  const p = load('agent', 'arm64');
  const svc = p.def.deployment.services['edgeward-agent'];

  test('privileged, host pid and network, the host root, bpffs and its state directory', () => {
    expect(svc.privileged).toBe(true);
    expect(svc.pid).toBe('host');
    expect(svc.network).toBe('host');
    expect(svc.binds).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\/:\/host:ro/),
        expect.stringMatching(/^\/sys\/fs\/bpf:\/host\/sys\/fs\/bpf:rw/),
        '/var/lib/edgeward:/host/var/lib/edgeward:rw',
      ]),
    );
    expect(svc.image).toBe(`edgeward/edgeward-agent_arm64:${pkgVersion}`);
    expect(p.def.sharable).toBe('singleton');
  });

  test('hub URL, node groups, backend as userInput; credentials as secrets', () => {
    expect(p.def.userInput.map((u: Json) => u.name)).toEqual(
      expect.arrayContaining(['EDGEWARD_HUB_URL', 'EDGEWARD_NODE_GROUPS', 'EDGEWARD_BACKEND']),
    );
    expect(Object.keys(svc.secrets).sort()).toEqual(['hub_ca', 'hub_credentials', 'hub_policy_key']);
  });

  test('the deployment policy requires allowPrivileged and has no nodeHealth (an offline node keeps its agreement)', () => {
    expect(p.deploymentPolicy.constraints).toContain(PRIVILEGED_CONSTRAINT);
    expect(p.deploymentPolicy.service.nodeHealth).toBeUndefined();
    expect(p.deploymentPolicy.nodeHealth).toBeUndefined();
  });
});

describe('the validator catches what anax refuses', () => {
  const good = (): Project => load('agent', 'amd64');
  const cases: Array<[string, (p: Project) => void, RegExp]> = [
    ['a numeric defaultValue', (p) => (p.def.userInput[0].defaultValue = 5), /defaultValue must be a string/],
    ['an unknown userInput type', (p) => (p.def.userInput[0].type = 'text'), /type "text" is not one of/],
    ['sharable "single"', (p) => (p.def.sharable = 'single'), /sharable "single"/],
    ['arch armhf', (p) => (p.def.arch = 'armhf'), /arch armhf/],
    ['a signature in the source', (p) => (p.def.deploymentSignature = 'abc='), /deploymentSignature must be ""/],
    ['a container without image', (p) => delete p.def.deployment.services['edgeward-agent'].image, /image is required/],
    ['a misspelt deployment field', (p) => (p.def.deployment.services['edgeward-agent'].bind = []), /unknown field bind/],
    ['privileged without the constraint', (p) => (p.deploymentPolicy.constraints = ['edgeward.io/enforce == true']), /needs the constraint/],
    ['an unbound secret', (p) => (p.deploymentPolicy.secretBinding[0].secrets = p.deploymentPolicy.secretBinding[0].secrets.slice(1)), /secret hub_ca is not bound/],
    ['a required input never set', (p) => delete p.def.userInput[3].defaultValue, /userInput EDGEWARD_LOG_FORMAT has no default and is not set/],
    ['a missing pattern arch', (p) => p.pattern.services.pop(), /no service entry for arch arm/],
    ['a relative bind target', (p) => p.def.deployment.services['edgeward-agent'].binds.push('/x:y'), /is not "source:\/target/],
  ];
  test.each(cases)('%s', (_, breakIt, message) => {
    const p = good();
    expect(validate(p, 'amd64', pkgVersion)).toEqual([]);
    breakIt(p);
    expect(validate(p, 'amd64', pkgVersion).join('\n')).toMatch(message);
  });
});
