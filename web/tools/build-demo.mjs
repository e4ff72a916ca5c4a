// Builds the demo web client (web/demo) into static/demo, where the Go binary embeds it and
// serves it at / (index.html) and /demo/ (app.js, app.css).
//
// Run it through `npm run build:demo` (part of `go tool task generate`) after `npm ci`. The
// output depends only on the sources and the pinned esbuild, so a rerun is byte-identical and
// `go tool task generate:check` catches a stale commit. esbuild strips types without checking
// them: `npm run typecheck` runs tsc --strict over web/demo.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const source = join(root, "web", "demo");
const target = join(root, "static", "demo");

rmSync(target, { recursive: true, force: true }); // nothing stale survives a rebuild
mkdirSync(target, { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: [
    { in: "web/demo/src/main.ts", out: "app" },
    { in: "web/demo/app.css", out: "app" },
  ],
  outdir: target,
  tsconfig: "web/demo/tsconfig.json",
  bundle: true,
  format: "esm",
  target: ["es2022", "chrome109", "firefox115", "safari16"],
  minify: true,
  charset: "utf8",
  legalComments: "eof",
  logLevel: "warning",
  metafile: true,
});
copyFileSync(join(source, "index.html"), join(target, "index.html"));

const files = [...Object.keys(result.metafile.outputs), relative(root, join(target, "index.html"))];
for (const file of files.sort()) {
  console.log(`build-demo: ${file} (${statSync(join(root, file)).size} bytes)`);
}
