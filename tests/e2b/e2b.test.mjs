// e2b.test.mjs -- the unmodified e2b SDK against a real sandboxd's
// E2B-compatible API: lifecycle, commands, files, pause and resume, the
// same sandboxes through ARM, and the SDK's error classes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  Sandbox,
  CommandExitError,
  AuthenticationError,
  NotFoundError,
  SandboxError,
  TimeoutError,
  RateLimitError,
} from "e2b";
import { startServer, GROUP } from "./server.mjs";

let server;
let opts; // what E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY would say
const made = new Set();

before(async () => {
  server = await startServer();
  opts = { apiUrl: server.e2bUrl, sandboxUrl: server.e2bUrl, apiKey: server.token };
});

after(async () => {
  for (const id of made) await Sandbox.kill(id, opts).catch(() => {});
  if (server) await server.stop();
});

async function create(extra = {}) {
  const sbx = await Sandbox.create({ ...opts, timeoutMs: 300_000, ...extra });
  made.add(sbx.sandboxId);
  return sbx;
}

async function arm(method, path) {
  const res = await fetch(`${server.armUrl}${GROUP}${path}?api-version=2026-07-01`, {
    method,
    headers: { Authorization: `Bearer ${server.token}` },
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("create, run commands, metadata, list, timeout, ARM view, kill", async () => {
  const sbx = await create({ metadata: { suite: "e2b", run: "one" }, envs: { GREETING: "hej" } });
  assert.match(sbx.sandboxId, /^[a-z0-9]+$/);

  const out = [];
  const r = await sbx.commands.run('echo "$GREETING"; echo oops >&2', {
    onStdout: (d) => out.push(d),
  });
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, "hej\n");
  assert.equal(r.stderr, "oops\n");
  assert.equal(out.join(""), "hej\n");

  await assert.rejects(sbx.commands.run("echo before; exit 7"), (e) => {
    assert.ok(e instanceof CommandExitError, `got ${e}`);
    assert.equal(e.exitCode, 7);
    assert.equal(e.stdout, "before\n");
    return true;
  });
  const cwd = await sbx.commands.run("pwd", { cwd: "/tmp", envs: { X: "1" } });
  assert.equal(cwd.stdout, "/tmp\n");
  // `user` names the account a command runs as; one the image lacks is refused
  const nobody = await sbx.commands.run("id -un; id -u", { user: "nobody", cwd: "/" });
  assert.equal(nobody.stdout, "nobody\n65534\n");
  assert.equal((await sbx.commands.run("id -u", { user: "root" })).stdout, "0\n");
  assert.equal((await sbx.commands.run("id -u")).stdout, "0\n");
  await assert.rejects(sbx.commands.run("true", { user: "nosuchuser" }), (e) => {
    assert.match(String(e), /nosuchuser/);
    return true;
  });

  const info = await sbx.getInfo();
  assert.equal(info.sandboxId, sbx.sandboxId);
  assert.equal(info.templateId, "base");
  assert.deepEqual(info.metadata, { suite: "e2b", run: "one" });
  assert.equal(info.state, "running");

  const other = await create({ metadata: { suite: "e2b", run: "two" } });
  const found = await Sandbox.list({ ...opts, query: { metadata: { run: "one" } } }).nextItems();
  assert.deepEqual(found.map((s) => s.sandboxId), [sbx.sandboxId]);
  const both = await Sandbox.list({ ...opts, query: { metadata: { suite: "e2b" } } }).nextItems();
  assert.equal(both.length, 2);
  const paged = Sandbox.list({ ...opts, limit: 1, query: { metadata: { suite: "e2b" } } });
  const first = await paged.nextItems();
  assert.equal(first.length, 1);
  assert.ok(paged.hasNext);
  const second = await paged.nextItems();
  assert.equal(second.length, 1);
  assert.notEqual(first[0].sandboxId, second[0].sandboxId);

  // setTimeout moves the end; ARM sees it as the sandbox's lifetime.
  await sbx.setTimeout(3_600_000);
  const later = await sbx.getInfo();
  assert.ok(later.endAt - Date.now() > 3_500_000, `endAt ${later.endAt.toISOString()}`);
  const seen = await arm("GET", `/sandboxes/${sbx.sandboxId}`);
  assert.equal(seen.status, 200);
  assert.equal(seen.body.properties.state, "Running");
  assert.ok(seen.body.properties.maxLifetimeSeconds >= 3600);
  assert.equal(seen.body.properties.env.GREETING, "hej");

  // A second client connects by id; a sandbox deleted through ARM is gone
  // for E2B too.
  const again = await Sandbox.connect(sbx.sandboxId, opts);
  assert.equal((await again.commands.run("echo again")).stdout, "again\n");
  assert.equal((await arm("DELETE", `/sandboxes/${other.sandboxId}`)).status, 202);
  await assert.rejects(Sandbox.getInfo(other.sandboxId, opts), NotFoundError);

  assert.equal(await sbx.kill(), true);
  made.delete(sbx.sandboxId);
  await assert.rejects(sbx.getInfo(), NotFoundError);
  assert.equal(await Sandbox.kill(sbx.sandboxId, opts), false);
});

test("files: text, binary, 20 MB, list, exists, makeDir, rename, remove", async () => {
  const sbx = await create();
  const info = await sbx.files.write("/tmp/e2b/hello.txt", "hello, world\n");
  assert.equal(info.path, "/tmp/e2b/hello.txt");
  assert.equal(await sbx.files.read("/tmp/e2b/hello.txt"), "hello, world\n");
  assert.equal((await sbx.commands.run("cat /tmp/e2b/hello.txt")).stdout, "hello, world\n");

  const bin = new Uint8Array(256);
  for (let i = 0; i < 256; i++) bin[i] = i;
  await sbx.files.write("/tmp/e2b/bytes.bin", bin.buffer);
  assert.deepEqual(await sbx.files.read("/tmp/e2b/bytes.bin", { format: "bytes" }), bin);

  const big = randomBytes(20 * 1024 * 1024);
  await sbx.files.write("/tmp/big.bin", new Blob([big]));
  const back = await sbx.files.read("/tmp/big.bin", { format: "bytes" });
  assert.equal(back.length, big.length);
  assert.ok(Buffer.from(back).equals(big), "20 MB came back changed");

  // Relative paths start at the home directory (root's).
  await sbx.files.write("rel.txt", "home");
  assert.equal((await sbx.commands.run("cat /root/rel.txt")).stdout, "home");

  const names = (await sbx.files.list("/tmp/e2b")).map((e) => `${e.name}:${e.type}`).sort();
  assert.deepEqual(names, ["bytes.bin:file", "hello.txt:file"]);
  assert.equal(await sbx.files.exists("/tmp/e2b/hello.txt"), true);
  assert.equal(await sbx.files.exists("/tmp/e2b/none"), false);
  assert.equal(await sbx.files.makeDir("/tmp/e2b/d/e"), true);
  assert.equal(await sbx.files.makeDir("/tmp/e2b/d/e"), false);
  const deep = (await sbx.files.list("/tmp/e2b", { depth: 2 })).map((e) => e.path).sort();
  assert.deepEqual(deep, ["/tmp/e2b/bytes.bin", "/tmp/e2b/d", "/tmp/e2b/d/e", "/tmp/e2b/hello.txt"]);
  const moved = await sbx.files.rename("/tmp/e2b/hello.txt", "/tmp/e2b/d/moved.txt");
  assert.equal(moved.name, "moved.txt");
  assert.equal(moved.type, "file");
  assert.equal(await sbx.files.exists("/tmp/e2b/hello.txt"), false);
  const st = await sbx.files.getInfo("/tmp/e2b/d/moved.txt");
  assert.equal(st.size, 13);
  await sbx.files.remove("/tmp/e2b/d");
  assert.equal(await sbx.files.exists("/tmp/e2b/d"), false);

  await assert.rejects(sbx.files.read("/tmp/e2b/none"), NotFoundError);
  await assert.rejects(sbx.files.list("/nonexistent"), NotFoundError);
  await sbx.kill();
  made.delete(sbx.sandboxId);
});

test("background commands: list, connect by pid, kill", async () => {
  const sbx = await create();
  const bg = await sbx.commands.run("sleep 30; echo late", { background: true, tag: "bg" });
  assert.ok(bg.pid > 0);
  const procs = await sbx.commands.list();
  assert.ok(procs.some((p) => p.pid === bg.pid), JSON.stringify(procs));

  const again = await Sandbox.connect(sbx.sandboxId, opts);
  const handle = await again.commands.connect(bg.pid);
  assert.equal(handle.pid, bg.pid);
  const t0 = Date.now();
  assert.equal(await sbx.commands.kill(bg.pid), true);
  await assert.rejects(bg.wait(), (e) => e instanceof CommandExitError && e.exitCode !== 0);
  await assert.rejects(handle.wait(), (e) => e instanceof CommandExitError);
  assert.ok(Date.now() - t0 < 10000, "the kill did not end the command");
  assert.equal(await sbx.commands.kill(bg.pid), false);
  await assert.rejects(sbx.commands.connect(999999), NotFoundError);
  await sbx.kill();
  made.delete(sbx.sandboxId);
});

// Whether the ARM API has process routes (streamed output, stdin, PTYs).
async function processRoutes(sbx) {
  return (await arm("GET", `/sandboxes/${sbx.sandboxId}/processes`)).status === 200;
}

test("streamed output, stdin and PTYs", async () => {
  const sbx = await create();
  assert.ok(await processRoutes(sbx), "the ARM API serves process routes");
  // Output arrives while the command runs.
  let firstAt = 0;
  const t0 = Date.now();
  const r = await sbx.commands.run("echo first; sleep 2; echo second", {
    onStdout: () => {
      if (!firstAt) firstAt = Date.now();
    },
  });
  const endAt = Date.now();
  assert.equal(r.stdout, "first\nsecond\n");
  assert.ok(firstAt && endAt - firstAt > 1000, `first output ${firstAt - t0} ms, end ${endAt - t0} ms`);

  // stdin, then its end.
  const cat = await sbx.commands.run("cat", { background: true, stdin: true });
  await sbx.commands.sendStdin(cat.pid, "hello ");
  await sbx.commands.sendStdin(cat.pid, "stdin\n");
  await sbx.commands.closeStdin(cat.pid);
  assert.equal((await cat.wait()).stdout, "hello stdin\n");

  // A terminal: input, resize, output.
  const chunks = [];
  const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => chunks.push(Buffer.from(d)) });
  await sbx.pty.resize(pty.pid, { cols: 100, rows: 40 });
  await sbx.pty.sendInput(pty.pid, new TextEncoder().encode("stty size; exit\n"));
  await pty.wait().catch(() => {});
  assert.match(Buffer.concat(chunks).toString(), /40 100/);
  await sbx.kill();
  made.delete(sbx.sandboxId);
});

test("pause and resume keep files and a running process", async () => {
  const sbx = await create();
  await sbx.files.write("/tmp/kept.txt", "kept");
  // A process of its own (not the command's): it keeps a value in memory
  // and writes it out on SIGUSR1.
  await sbx.commands.run(
    "nohup python3 -c 'import os,signal,time\nv=os.urandom(8).hex()\nopen(\"/tmp/v0\",\"w\").write(v)\nsignal.signal(signal.SIGUSR1, lambda *a: open(\"/tmp/v1\",\"w\").write(v))\nopen(\"/tmp/pid\",\"w\").write(str(os.getpid()))\nwhile True: time.sleep(1)' >/dev/null 2>&1 &",
  );
  await until("the process", async () => (await sbx.files.exists("/tmp/pid")) && (await sbx.files.exists("/tmp/v0")));
  const pid = (await sbx.files.read("/tmp/pid")).trim();
  const v0 = await sbx.files.read("/tmp/v0");

  assert.equal(await sbx.pause(), true);
  assert.equal((await sbx.getInfo()).state, "paused");
  assert.equal((await arm("GET", `/sandboxes/${sbx.sandboxId}`)).body.properties.state, "Suspended");
  const paused = await Sandbox.list({ ...opts, query: { state: ["paused"] } }).nextItems();
  assert.ok(paused.some((s) => s.sandboxId === sbx.sandboxId));
  assert.equal(await Sandbox.pause(sbx.sandboxId, opts), false); // already paused

  const back = await Sandbox.connect(sbx.sandboxId, opts);
  assert.equal((await back.getInfo()).state, "running");
  assert.equal(await back.files.read("/tmp/kept.txt"), "kept");
  await back.commands.run(`kill -USR1 ${pid}`);
  await until("the value", () => back.files.exists("/tmp/v1"));
  assert.equal(await back.files.read("/tmp/v1"), v0);
  await back.kill();
  made.delete(sbx.sandboxId);
});

test("watchDir: events as they happen, recursive, stop", async () => {
  const sbx = await create();
  await sbx.files.makeDir("/tmp/w/sub");
  const seen = [];
  const handle = await sbx.files.watchDir("/tmp/w", (e) => seen.push(`${e.type} ${e.name}`), { recursive: true });
  await sbx.files.write("/tmp/w/a.txt", "a");
  await sbx.files.write("/tmp/w/sub/b.txt", "b");
  await sbx.commands.run("mv /tmp/w/a.txt /tmp/w/c.txt && rm /tmp/w/c.txt && mkdir /tmp/w/sub/d && touch /tmp/w/sub/d/e");
  const want = ["rename c.txt", "remove c.txt", "create sub/d", "create sub/d/e"];
  await until("the events", () => want.every((w) => seen.includes(w)) && seen.some((e) => e.endsWith(" sub/b.txt")))
    .catch((e) => assert.fail(`${e.message}; seen: ${seen.join(", ")}`));
  assert.ok(seen.some((e) => e.endsWith(" a.txt")), seen.join(","));
  await handle.stop();

  // Not recursive: nothing from below; a directory that is not there.
  const top = [];
  const h2 = await sbx.files.watchDir("/tmp/w", (e) => top.push(e.name));
  await sbx.files.write("/tmp/w/sub/x", "x");
  await sbx.files.write("/tmp/w/y", "y");
  await until("the top event", () => top.includes("y"));
  assert.ok(!top.some((n) => n.includes("/")), top.join(","));
  await h2.stop();
  await assert.rejects(sbx.files.watchDir("/tmp/none", () => {}), NotFoundError);
  await sbx.kill();
  made.delete(sbx.sandboxId);
});

test("metrics: CPU, memory and disk from the host", async () => {
  const sbx = await create();
  await sbx.files.write("/tmp/blob", randomBytes(3 << 20));
  // Busy for a while, so two readings see CPU used.
  const busy = await sbx.commands.run("timeout 3 sh -c 'while :; do :; done'", { background: true });
  const [m] = await sbx.getMetrics();
  assert.ok(m, "no metric");
  assert.ok(m.timestamp instanceof Date && Math.abs(m.timestamp - Date.now()) < 60_000);
  assert.equal(m.cpuCount, 1);
  assert.ok(m.memUsed > 0 && m.memUsed <= m.memTotal, `mem ${m.memUsed}/${m.memTotal}`);
  assert.equal(m.memTotal, 512 << 20);
  assert.equal(m.diskTotal, 1024 << 20);
  assert.ok(m.diskUsed >= 3 << 20, `disk ${m.diskUsed}`);
  await new Promise((r) => setTimeout(r, 300));
  const [m2] = await sbx.getMetrics();
  assert.ok(m2.cpuUsedPct > 10 && m2.cpuUsedPct <= 100, `cpu ${m2.cpuUsedPct}%`);
  await busy.kill();
  assert.deepEqual(await sbx.getMetrics({ end: new Date(Date.now() - 3_600_000) }), []);
  await sbx.kill();
  made.delete(sbx.sandboxId);
  await assert.rejects(Sandbox.getMetrics(sbx.sandboxId, opts), NotFoundError);
});

test("lifecycle onTimeout pause: the timeout pauses, connect resumes with a new timeout", async () => {
  const sbx = await create({ timeoutMs: 2000, lifecycle: { onTimeout: "pause", autoResume: false } });
  const id = sbx.sandboxId;
  assert.deepEqual((await sbx.getInfo()).lifecycle, { onTimeout: "pause", autoResume: false });
  assert.equal((await arm("GET", `/sandboxes/${id}`)).body.properties.lifetimeEndAction, "Suspend");
  await sbx.files.write("/tmp/kept.txt", "kept");

  const state = async () => (await Sandbox.getInfo(id, opts)).state;
  await until("the timeout to pause it", async () => (await state()) === "paused");
  const seen = (await arm("GET", `/sandboxes/${id}`)).body.properties;
  assert.equal(seen.state, "Suspended");
  assert.match(seen.statusMessage, /maxLifetimeSeconds/);

  // connect resumes it, and its timeout counts from the resume.
  const back = await Sandbox.connect(id, { ...opts, timeoutMs: 3000 });
  const info = await back.getInfo();
  assert.equal(info.state, "running");
  const left = info.endAt - Date.now();
  assert.ok(left > 0 && left <= 4000, `endAt ${info.endAt.toISOString()}`);
  assert.ok((await arm("GET", `/sandboxes/${id}`)).body.properties.lifetimeStartedAt);
  assert.equal(await back.files.read("/tmp/kept.txt"), "kept");
  // ... and it is paused again, not killed, at its new end.
  await until("the second pause", async () => (await state()) === "paused");
  await back.kill();
  made.delete(id);
});

test("errors: bad key, unknown sandbox, unknown template, expired sandbox", async () => {
  await assert.rejects(Sandbox.create({ ...opts, apiKey: "not-the-key" }), AuthenticationError);
  await assert.rejects(Sandbox.list({ ...opts, apiKey: "not-the-key" }).nextItems(), AuthenticationError);
  await assert.rejects(Sandbox.connect("inosuchsandbox000000", opts), NotFoundError);
  await assert.rejects(Sandbox.getInfo("inosuchsandbox000000", opts), NotFoundError);
  await assert.rejects(Sandbox.create("no-such-template", opts), (e) => {
    assert.ok(e instanceof SandboxError, `got ${e}`);
    assert.match(e.message, /404.*template/);
    return true;
  });

  // The access token is per sandbox.
  const sbx = await create({ timeoutMs: 2000 });
  const forged = new Sandbox({ ...opts, sandboxId: sbx.sandboxId, envdVersion: "0.5.7", envdAccessToken: "0".repeat(64) });
  await assert.rejects(forged.files.read("/etc/hostname"), AuthenticationError);
  await assert.rejects(forged.commands.run("true"), AuthenticationError);

  // Past its timeout the sandbox is deleted; calls into it time out the
  // way the SDK reports an expired sandbox.
  await until("the sandbox to expire", async () => {
    try {
      await Sandbox.getInfo(sbx.sandboxId, opts);
      return false;
    } catch (e) {
      return e instanceof NotFoundError;
    }
  });
  made.delete(sbx.sandboxId);
  await assert.rejects(sbx.files.read("/etc/hostname"), TimeoutError);
  await assert.rejects(sbx.commands.run("true"), (e) => e instanceof TimeoutError || e instanceof NotFoundError);
});

test("rate limits: the SDK raises RateLimitError", async () => {
  const limited = await startServer(["--max-in-flight", "1", "--no-local-agent"]);
  try {
    const o = { apiUrl: limited.e2bUrl, sandboxUrl: limited.e2bUrl, apiKey: limited.token, retries: 0 };
    // Many calls at once against one admission slot: the others are told
    // 429 at once.
    const all = await Promise.allSettled(
      Array.from({ length: 20 }, () => Sandbox.getInfo("inosuchsandbox000000", o)),
    );
    const names = all.map((r) => r.reason?.name ?? "ok");
    assert.ok(all.some((r) => r.reason instanceof RateLimitError), names.join(","));
    assert.ok(all.every((r) => r.reason instanceof RateLimitError || r.reason instanceof NotFoundError),
      names.join(","));
  } finally {
    await limited.stop();
  }
});
