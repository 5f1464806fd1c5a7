// server.mjs -- starts the real sandboxd (with its local agent) over HTTPS
// with the E2B-compatible API on a second port, for the e2b SDK tests, and
// stops it again, checking that it shuts down cleanly.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const GROUP =
  "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/e2b/providers/Microsoft.App/sandboxGroups/e2b";

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set; run the tests through tests/e2b/run.sh`);
  return v;
}

function tail(log) {
  const lines = log.split("\n").filter((l) => !l.includes('"module":"access"'));
  return lines.slice(-80).join("\n");
}

// Resolves with the ARM and E2B ports once both listen (from the start-up
// log lines).
export async function startServer(extraArgs = []) {
  const binDir = required("SBX_BIN_DIR");
  const tlsDir = required("SBX_TLS_DIR");
  const bin = join(binDir, "sandboxd");
  if (!existsSync(bin)) throw new Error(`no sandboxd in ${binDir}`);
  const dataDir = mkdtempSync(join(tmpdir(), "sbx-e2b-"));
  const args = [
    "--listen", "127.0.0.1:0",
    "--e2b-listen", "127.0.0.1:0",
    "--data-dir", dataDir,
    "--tls-cert", join(tlsDir, "server.pem"),
    "--tls-key", join(tlsDir, "server.key"),
    ...extraArgs,
  ];
  if (process.env.SBX_DEFAULT_IMAGE) args.push("--default-image", process.env.SBX_DEFAULT_IMAGE);
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const ports = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sandboxd did not start:\n${tail(log)}`)), 20000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const arm = /listening on https:\/\/\S+ \(port (\d+)\)/.exec(log);
      const e2b = /E2B-compatible API on https:\/\/\S+ \(port (\d+)\)/.exec(log);
      if (arm && e2b) {
        clearTimeout(timer);
        resolve({ arm: Number(arm[1]), e2b: Number(e2b[1]) });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`sandboxd exited with ${code}:\n${tail(log)}`));
    });
  });
  const token = readFileSync(join(dataDir, "dev-token"), "utf8").trim();
  const armUrl = `https://127.0.0.1:${ports.arm}`;
  // Deletes every sandbox of the E2B group through ARM and waits until
  // they are gone: sandboxd leaves sandboxes running when it stops.
  async function drain() {
    const list = `${armUrl}${GROUP}/sandboxes?api-version=2026-07-01`;
    const headers = { Authorization: `Bearer ${token}` };
    const end = Date.now() + 30000;
    for (;;) {
      const res = await fetch(list, { headers });
      const value = res.status === 200 ? (await res.json()).value : [];
      if (value.length === 0) return;
      for (const sb of value) {
        if (sb.properties.provisioningState !== "Deleting")
          await fetch(`${armUrl}${sb.id}?api-version=2026-07-01`, { method: "DELETE", headers });
      }
      if (Date.now() > end) throw new Error(`sandboxes left: ${value.map((s) => s.name)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    armUrl,
    e2bUrl: `https://127.0.0.1:${ports.e2b}`,
    token,
    log: () => log,
    async stop() {
      let drained = null;
      try {
        await drain();
      } catch (e) {
        drained = e;
      }
      child.kill("SIGTERM");
      const { code, signal } = await exited;
      rmSync(dataDir, { recursive: true, force: true });
      if (code !== 0) throw new Error(`sandboxd exited with ${code ?? signal}:\n${tail(log)}`);
      if (drained) throw drained;
    },
  };
}
