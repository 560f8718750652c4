// Runs a dev script from dev/*.ts (bundled on the fly by esbuild into .test-out/):
//   node dev/run.mjs fake-edge [--port 8080] [--vehicles 300]   serve dist/ with a simulated edge
//   node dev/run.mjs smoke [--out shot.png]                     browser smoke test (Chromium)
import { build } from "esbuild";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const web = fileURLToPath(new URL("..", import.meta.url));
const [name, ...args] = process.argv.slice(2);
const entries = { "fake-edge": "dev/main-fake-edge.ts", smoke: "dev/smoke.ts" };
if (!entries[name]) {
  console.error(`usage: node dev/run.mjs ${Object.keys(entries).join("|")} [args]`);
  process.exit(2);
}
const outfile = join(web, ".test-out", `dev-${name}.mjs`);
await build({
  absWorkingDir: web,
  entryPoints: [entries[name]],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  sourcemap: "inline",
  logLevel: "warning",
});
process.argv = [process.argv[0], outfile, ...args];
await import(pathToFileURL(outfile).href);
