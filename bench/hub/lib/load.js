'use strict';
// Loads the hub and policy modules either from the build (dist/, after
// `npm run build:ts`) or straight from agent/src (--src: each .ts file is
// transpiled on load, the way the hub tests run it; cached by content hash).
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');

const REPO = path.resolve(__dirname, '..', '..', '..');
const MODULES = ['hub/client', 'hub/service', 'hub/bundle', 'hub/options', 'hub/hub_config', 'hub/acl', 'hub/mqtt_types', 'policy/loader', 'policy/compiler'];

let hooked = false;
function installTsHook() {
  if (hooked) return;
  hooked = true;
  const cacheDir = path.join(os.tmpdir(), 'edgeward-ts-cache');
  let ts;
  require.extensions['.ts'] = (module, filename) => {
    const text = fs.readFileSync(filename, 'utf8');
    const key = crypto.createHash('sha256').update(filename + '\0' + text).digest('hex');
    const cached = path.join(cacheDir, `${key}.js`);
    let js;
    try {
      js = fs.readFileSync(cached, 'utf8');
    } catch {
      ts = ts || require(path.join(REPO, 'node_modules', 'typescript'));
      js = ts.transpileModule(text, {
        fileName: filename,
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, resolveJsonModule: true },
      }).outputText;
      fs.mkdirSync(cacheDir, { recursive: true });
      const tmp = `${cached}.${process.pid}`;
      fs.writeFileSync(tmp, js);
      fs.renameSync(tmp, cached);
    }
    module._compile(js, filename);
  };
}

/** Sources newer than their built file (a stale dist/ would measure old code). */
function staleBuild() {
  const stale = [];
  for (const sub of ['hub', 'policy']) {
    const dir = path.join(REPO, 'agent', 'src', sub);
    for (const f of fs.readdirSync(dir)) {
      if (!f.endsWith('.ts')) continue;
      const built = path.join(REPO, 'dist', 'agent', 'src', sub, f.replace(/\.ts$/, '.js'));
      const st = fs.statSync(built, { throwIfNoEntry: false });
      if (!st || st.mtimeMs < fs.statSync(path.join(dir, f)).mtimeMs) stale.push(path.relative(REPO, path.join(dir, f)));
    }
  }
  return stale;
}

/**
 * { client, service, bundle, ... } from `from` ('dist' or 'src').
 * 'dist' refuses a missing or stale build with a clear message.
 */
function loadModules(from) {
  let base;
  if (from === 'src') {
    installTsHook();
    base = path.join(REPO, 'agent', 'src');
  } else {
    base = path.join(REPO, 'dist', 'agent', 'src');
    if (!fs.existsSync(path.join(base, 'hub', 'client.js'))) throw new Error('dist/agent/src/hub/client.js missing: run `npm run build:ts` (or pass --src)');
    const stale = staleBuild();
    if (stale.length) throw new Error(`dist/ is older than ${stale.slice(0, 5).join(', ')}${stale.length > 5 ? ` and ${stale.length - 5} more` : ''}: run \`npm run build:ts\` (or pass --src)`);
  }
  const out = {};
  for (const m of MODULES) out[m.split('/')[1]] = require(path.join(base, m));
  return out;
}

module.exports = { REPO, loadModules };
