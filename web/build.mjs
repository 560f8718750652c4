// Builds the page into dist/ (or --outdir DIR): app.js and app.css bundled and minified by esbuild
// from app/main.ts (Leaflet, the client, protobuf-es and connect-web included), Leaflet's images
// under assets/, and index.html. The output is deterministic: web_test.go rebuilds it and
// compares with the committed dist.
//   node build.mjs [--outdir DIR]
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const i = process.argv.indexOf("--outdir");
const outdir = resolve(i > 0 ? process.argv[i + 1] : join(here, "dist"));

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
const result = await build({
  absWorkingDir: here,
  entryPoints: { app: "app/main.ts" },
  outdir,
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2022", "chrome109", "firefox115", "safari16"],
  loader: { ".png": "file", ".svg": "file" },
  assetNames: "assets/[name]-[hash]",
  legalComments: "eof",
  metafile: true,
  logLevel: "warning",
});
copyFileSync(join(here, "app/index.html"), join(outdir, "index.html"));
for (const [file, out] of Object.entries(result.metafile.outputs)) {
  console.log(`${relative(here, resolve(here, file)).padEnd(40)} ${(out.bytes / 1024).toFixed(1).padStart(7)} KiB`);
}
