// server.mjs -- starts the real sandboxd over HTTPS for the SDK tests and
// stops it again, checking that it shuts down cleanly.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set; run the tests through tests/sdk/run.sh`);
  return v;
}

// The end of the server's log, without the access lines, for a failure message.
function tail(log) {
  const lines = log.split("\n").filter((l) => !l.includes('"module":"access"'));
  return lines.slice(-80).join("\n");
}

// Starts sandboxd on a free loopback port with the certificate run.sh made
// and resolves once it listens; the port comes from its start-up log line.
export async function startServer() {
  const binDir = required("SBX_BIN_DIR");
  const tlsDir = required("SBX_TLS_DIR");
  const bin = join(binDir, "sandboxd");
  if (!existsSync(bin)) throw new Error(`no sandboxd in ${binDir}`);
  const dataDir = mkdtempSync(join(tmpdir(), "sbx-sdk-"));
  const child = spawn(
    bin,
    [
      "--listen", "127.0.0.1:0",
      "--data-dir", dataDir,
      "--no-local-agent",
      "--tls-cert", join(tlsDir, "server.pem"),
      "--tls-key", join(tlsDir, "server.key"),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sandboxd did not start:\n${tail(log)}`)), 20000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const m = /\(port (\d+)\)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`sandboxd exited with ${code}:\n${tail(log)}`));
    });
  });
  const token = readFileSync(join(dataDir, "dev-token"), "utf8").trim();
  return {
    url: `https://127.0.0.1:${port}`,
    token,
    // The dev token as an Azure TokenCredential, as DefaultAzureCredential
    // would hand one out.
    credential: {
      getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3600 * 1000 }),
    },
    // The admin token (Owner on the ARM API), for managing access.
    adminCredential: {
      getToken: async () => ({
        token: readFileSync(join(dataDir, "admin-token"), "utf8").trim(),
        expiresOnTimestamp: Date.now() + 3600 * 1000,
      }),
    },
    log: () => log,
    // SIGTERM must end in exit 0: a clean shutdown, and under the
    // sanitizers no leak or error found on the way.
    async stop() {
      child.kill("SIGTERM");
      const { code, signal } = await exited;
      rmSync(dataDir, { recursive: true, force: true });
      if (code !== 0) throw new Error(`sandboxd exited with ${code ?? signal}:\n${tail(log)}`);
    },
  };
}
