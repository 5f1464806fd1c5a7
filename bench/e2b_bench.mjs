// e2b_bench.mjs -- Sandbox.create to the first commands.run result through
// the unmodified e2b SDK, beside the same through the ARM API (PUT, poll
// GET until Running, POST exec of the same command) in the same run,
// against one sandboxd.  Prints medians and p99s.  Run by e2b_bench.sh.
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";

const here = dirname(fileURLToPath(import.meta.url));
const { Sandbox } = await import(
  pathToFileURL(join(here, "../tests/e2b/node_modules/e2b/dist/index.mjs")).href
);

const N = Number(process.env.N || 50);
const arm = process.env.ARM_URL;
const e2b = process.env.E2B_URL;
const token = readFileSync(process.env.TOKEN_FILE, "utf8").trim();
const opts = { apiUrl: e2b, sandboxUrl: e2b, apiKey: token };
const GROUP =
  "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/e2b/providers/Microsoft.App/sandboxGroups/e2b";
const V = "api-version=2026-07-01";
const H = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
// What commands.run sends: bash as a login shell.
const CMD = ["/bin/bash", "-l", "-c", "true"];

async function viaSdk() {
  const t0 = performance.now();
  const sbx = await Sandbox.create(opts);
  const t1 = performance.now();
  const r = await sbx.commands.run("true");
  const t2 = performance.now();
  if (r.exitCode !== 0) throw new Error("command failed");
  await sbx.kill();
  return [t2 - t0, t1 - t0];
}

let seq = 0;
async function viaArm() {
  const name = `bench${process.pid}x${seq++}`;
  const url = `${arm}${GROUP}/sandboxes/${name}`;
  const t0 = performance.now();
  let res = await fetch(`${url}?${V}`, { method: "PUT", headers: H, body: JSON.stringify({ properties: {} }) });
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT ${res.status}`);
  for (;;) {
    res = await fetch(`${url}?${V}`, { headers: H });
    const sb = await res.json();
    if (sb.properties?.state === "Running") break;
    if (sb.properties?.provisioningState === "Failed") throw new Error("create failed");
    await new Promise((r) => setTimeout(r, 1));
  }
  const t1 = performance.now();
  res = await fetch(`${url}/exec?${V}`, { method: "POST", headers: H, body: JSON.stringify({ command: CMD }) });
  const out = await res.json();
  const t2 = performance.now();
  if (out.exitCode !== 0) throw new Error(`exec ${JSON.stringify(out)}`);
  await fetch(`${url}?${V}`, { method: "DELETE", headers: H });
  return [t2 - t0, t1 - t0];
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
  return { median: q(0.5), p99: q(0.99) };
}

// One of each first: the group is created and the image unpacked.
await viaSdk();
await viaArm();
const sdk = [], sdkCreate = [], armAll = [], armCreate = [];
for (let i = 0; i < N; i++) {
  const [a, b] = await viaSdk();
  sdk.push(a);
  sdkCreate.push(b);
  const [c, d] = await viaArm();
  armAll.push(c);
  armCreate.push(d);
}
const f = (x) => `${x.toFixed(1)} ms`;
const row = (what, xs) => {
  const { median, p99 } = stats(xs);
  console.log(`${what.padEnd(46)} median ${f(median).padStart(10)}   p99 ${f(p99).padStart(10)}`);
  return median;
};
console.log(`${N} runs each, alternating; command ${JSON.stringify(CMD)}`);
const m1 = row("e2b SDK: Sandbox.create to commands.run result", sdk);
row("e2b SDK: Sandbox.create alone", sdkCreate);
const m2 = row("ARM: PUT to exec result (poll GET every 1 ms)", armAll);
row("ARM: PUT to Running", armCreate);
console.log(`ratio of medians, SDK / ARM: ${(m1 / m2).toFixed(2)} (E2B's published figure for its cloud: ~150 ms)`);

// sandboxd leaves sandboxes running when it stops: wait for the deletes.
for (let i = 0; ; i++) {
  const res = await fetch(`${arm}${GROUP}/sandboxes?${V}`, { headers: H });
  if ((await res.json()).value.length === 0) break;
  if (i > 600) throw new Error("sandboxes were not deleted");
  await new Promise((r) => setTimeout(r, 100));
}
