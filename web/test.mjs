// Runs the client's tests: type-checks client/, app/ and test/ (tsc --noEmit), bundles each
// test/*.test.ts with esbuild into .test-out/, then runs them with node's built-in test runner.
//   node test.mjs [--no-typecheck] [extra node --test flags]
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const args = process.argv.slice(2);
const typecheck = !args.includes("--no-typecheck");
const extra = args.filter((a) => a !== "--no-typecheck");

if (typecheck) {
  const tsc = spawnSync(process.execPath, [join(here, "node_modules/typescript/bin/tsc"), "--noEmit", "-p", here], { stdio: "inherit" });
  if (tsc.status !== 0) {
    console.error("type check failed");
    process.exit(1);
  }
}

const out = join(here, ".test-out");
rmSync(out, { recursive: true, force: true });
const tests = readdirSync(join(here, "test")).filter((f) => f.endsWith(".test.ts")).sort();
await build({
  entryPoints: tests.map((f) => join(here, "test", f)),
  outdir: out,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: "inline",
  outExtension: { ".js": ".mjs" },
  logLevel: "warning",
});
const files = tests.map((f) => join(out, f.replace(/\.ts$/, ".mjs")));
const r = spawnSync(process.execPath, ["--test", ...extra, ...files], { stdio: "inherit" });
process.exit(r.status ?? 1);
