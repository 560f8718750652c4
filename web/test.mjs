// Runs the client's tests: type-checks client/, app/, test/ and dev/ (tsc --noEmit), bundles each
// test/*.test.ts with esbuild into a temporary directory, then runs them with node's built-in test
// runner. Tests find their files under __WEB_DIR__ (this directory).
//   node test.mjs [--no-typecheck] [extra node --test flags]
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
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

const out = mkdtempSync(join(tmpdir(), "meshcast-web-test-"));
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
  define: { __WEB_DIR__: JSON.stringify(here) },
  logLevel: "warning",
});
const files = tests.map((f) => join(out, f.replace(/\.ts$/, ".mjs")));
const r = spawnSync(process.execPath, ["--test", ...extra, ...files], { stdio: "inherit" });
rmSync(out, { recursive: true, force: true });
process.exit(r.status ?? 1);
