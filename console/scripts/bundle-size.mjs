// Prints the built console's size, gzipped, and fails past the budget: the console is an
// operator tool embedded in every api binary, and it should load fast on a phone at 3 a.m.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET_JS_GZIP = 100 * 1024;
const dir = new URL("../dist/assets/", import.meta.url).pathname;
let js = 0;
let css = 0;
const lines = [];
for (const name of readdirSync(dir).sort()) {
  const path = join(dir, name);
  if (!statSync(path).isFile()) continue;
  const raw = readFileSync(path);
  const gz = gzipSync(raw, { level: 9 }).length;
  if (name.endsWith(".js")) js += gz;
  if (name.endsWith(".css")) css += gz;
  lines.push(`  ${name}: ${(raw.length / 1024).toFixed(1)} KiB, ${(gz / 1024).toFixed(1)} KiB gzipped`);
}
console.log(`console bundle:\n${lines.join("\n")}\n  JS total ${(js / 1024).toFixed(1)} KiB gzipped, CSS ${(css / 1024).toFixed(1)} KiB gzipped (budget: JS ${BUDGET_JS_GZIP / 1024} KiB)`);
if (js > BUDGET_JS_GZIP) {
  console.error(`console bundle: ${(js / 1024).toFixed(1)} KiB of gzipped JS is over the ${BUDGET_JS_GZIP / 1024} KiB budget`);
  process.exit(1);
}
