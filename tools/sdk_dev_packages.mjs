// Prints name@version of the Node.js SDK's devDependencies and everything they depend on, as its
// lock file pins them. tools/setup_run.sh adds them to npm's cache, so a project made by
// `vivified create-plugin --lang node` (which uses the same compiler and Node types) installs
// with `npm install --offline`: npm ci caches the tarballs but not the registry metadata that an
// install without a lock file resolves versions from.
import { readFileSync } from "node:fs";

const sdk = new URL("../sdk/nodejs/", import.meta.url);
const wanted = Object.keys(JSON.parse(readFileSync(new URL("package.json", sdk))).devDependencies ?? {});
const { packages } = JSON.parse(readFileSync(new URL("package-lock.json", sdk)));
const seen = new Map();
while (wanted.length > 0) {
  const name = wanted.pop();
  const entry = packages[`node_modules/${name}`];
  if (entry === undefined || seen.has(name)) continue;
  seen.set(name, entry.version);
  wanted.push(...Object.keys(entry.dependencies ?? {}));
}
for (const [name, version] of [...seen].sort()) console.log(`${name}@${version}`);
