// Copies the Scalar API reference standalone browser bundle from node_modules into
// static/docs/scalar.js, where the Go binary embeds it and serves it at /docs/scalar.js.
//
// Run it through `npm run vendor:docs` after `npm ci`. The output depends only on the installed
// package (pinned in the root package.json and package-lock.json), so a rerun is byte-identical.
//
// Two changes are made to the upstream file, both deterministic:
//   * a header comment naming the package, version and licence is prepended;
//   * the trailing `//# sourceMappingURL=standalone.js.map` line is removed, because the map
//     (17 MB) is not vendored and the browser would otherwise request a file that 404s.
import { readFileSync, writeFileSync, renameSync, mkdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const pkgDir = join(root, "node_modules", "@scalar", "api-reference");
const source = join(pkgDir, "dist", "browser", "standalone.js");
const target = join(root, "static", "docs", "scalar.js");

let pkg;
let bundle;
try {
  pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
  bundle = readFileSync(source, "utf8");
} catch (err) {
  console.error(`vendor-docs: cannot read ${relative(root, source)}: ${err.message}`);
  console.error("vendor-docs: run `npm ci` at the repository root first.");
  process.exit(1);
}

const sourceMapComment = /\n\/\/# sourceMappingURL=[^\n]*\s*$/;
if (!sourceMapComment.test(bundle)) {
  console.error("vendor-docs: expected a trailing sourceMappingURL comment; has the bundle layout changed?");
  process.exit(1);
}
const body = bundle.replace(sourceMapComment, "\n");

const header =
  `/*! ${pkg.name} ${pkg.version} (dist/browser/standalone.js) | ${pkg.license} License | ` +
  `Copyright (c) Scalar (https://github.com/scalar/scalar).\n` +
  ` * Vendored by web/tools/vendor-docs.mjs (npm run vendor:docs). Do not edit by hand. */\n`;

const output = header + body;
mkdirSync(dirname(target), { recursive: true });
const tmp = `${target}.tmp`;
writeFileSync(tmp, output);
renameSync(tmp, target);
console.log(
  `vendor-docs: ${pkg.name}@${pkg.version} -> ${relative(root, target)} (${Buffer.byteLength(output)} bytes)`,
);
