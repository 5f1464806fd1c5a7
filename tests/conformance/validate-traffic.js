#!/usr/bin/env node
// Checks recorded HTTP exchanges with sandboxd against its OpenAPI description (oav's LiveValidator plus ARM protocol rules), printing each mismatch.
//
// Input: JSON lines, one exchange each:
//   {"method","url","status","requestHeaders":{},"responseHeaders":{},"requestBody","responseBody"}
// Bodies may be JSON values or raw strings (parsed when they hold JSON).
//
// For every exchange on an ARM route (/subscriptions/..., /providers/...):
//   - the operation is found in openapi/<api-version>/sandboxGroups.json by oav's LiveValidator,
//     and the response body is validated against its schema (types, enums, formats, no
//     properties the description does not name);
//   - a success status must be one the operation declares; an error status must carry ARM's
//     error envelope {"error":{"code","message"}} with a code from the stable set;
//   - the headers the description declares for that status must be present (Azure-AsyncOperation,
//     Location, Retry-After, ETag), Retry-After an integer of at least 1, polling URLs absolute;
//   - x-ms-request-id on every reply, x-ms-client-request-id echoed when sent;
//   - 304 is accepted for a GET that carried If-None-Match (with an ETag), as HTTP allows.
// With --strict-requests, a request that breaks the description but got a success reply is a
// mismatch too (the server accepted what it should have refused).
//
// Usage: node validate-traffic.js [--strict-requests] [--quiet] FILE.jsonl...
// Exit status: 0 when every exchange matches, 1 on any mismatch, 2 on bad usage.
'use strict';

require('./offline');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { LiveValidator } = require('oav');

const OPENAPI_DIR = path.resolve(__dirname, '..', '..', 'openapi');
const SPEC_FILE = 'sandboxGroups.json';
const TERMINAL_STATES = new Set(['Succeeded', 'Failed', 'Canceled']);
// Headers whose absence is fine when the work they point at is already over.
const ASYNC_HEADERS = new Set(['azure-asyncoperation', 'location', 'retry-after']);

function apiVersions() {
  return fs.readdirSync(OPENAPI_DIR)
    .filter((d) => /^\d{4}-\d{2}-\d{2}(-preview)?$/.test(d) && fs.existsSync(path.join(OPENAPI_DIR, d, SPEC_FILE)));
}

// Every operation of every api-version, by "version operationId".
function loadOperations(versions) {
  const ops = new Map();
  let errorCodes = new Set();
  for (const v of versions) {
    const doc = JSON.parse(fs.readFileSync(path.join(OPENAPI_DIR, v, SPEC_FILE), 'utf8'));
    for (const section of [doc.paths || {}, doc['x-ms-paths'] || {}]) {
      for (const [p, item] of Object.entries(section)) {
        for (const [method, op] of Object.entries(item)) {
          if (op && op.operationId) ops.set(v + ' ' + op.operationId, { path: p, method, op });
        }
      }
    }
    errorCodes = new Set([...errorCodes, ...(doc['x-sandboxd-error-codes'] || []).map((c) => c.code)]);
  }
  return { ops, errorCodes };
}

// A copy of the description for the validator in which every enum is closed. The description
// marks enums modelAsString (clients must accept values added later, as ARM asks), and oav
// then lets any string through; the server itself must send only the values it documents.
function closedEnumCopy() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-openapi-'));
  const close = (node) => {
    if (Array.isArray(node)) return node.forEach(close);
    if (!node || typeof node !== 'object') return;
    if (node['x-ms-enum']) node['x-ms-enum'].modelAsString = false;
    delete node['x-ms-examples'];
    Object.values(node).forEach(close);
  };
  const copy = (rel) => {
    const src = path.join(OPENAPI_DIR, rel);
    if (fs.statSync(src).isDirectory()) {
      if (path.basename(src) === 'examples') return;
      fs.mkdirSync(path.join(dir, rel), { recursive: true });
      for (const name of fs.readdirSync(src)) copy(path.join(rel, name));
    } else if (rel.endsWith('.json')) {
      const doc = JSON.parse(fs.readFileSync(src, 'utf8'));
      close(doc);
      fs.writeFileSync(path.join(dir, rel), JSON.stringify(doc));
    }
  };
  for (const name of fs.readdirSync(OPENAPI_DIR)) copy(name);
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const lower = (headers) => Object.fromEntries(
  Object.entries(headers || {}).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v.join(', ') : String(v)]));

function parseBody(body, contentType) {
  if (body === undefined || body === null || body === '') return undefined;
  if (typeof body !== 'string') return body;
  if (/json/i.test(contentType || '') || /^\s*[{[]/.test(body)) {
    try { return JSON.parse(body); } catch { /* not JSON: keep the text */ }
  }
  return body;
}

// SDKs sometimes send a doubled leading slash; the server accepts it, so the check does too.
function normaliseUrl(raw) {
  const u = new URL(raw, 'http://localhost');
  u.pathname = u.pathname.replace(/^\/{2,}/, '/');
  return u;
}

// Microsoft.Authorization (roleAssignments, roleDefinitions) is Azure's own
// provider's shape, not described by our sandboxGroups description; the
// Check tests (test_auth) assert on those replies instead.
const isArmRoute = (p) =>
  /^\/(subscriptions|providers)\//i.test(p) && !/\/providers\/Microsoft\.Authorization\//i.test(p);
const isAbsoluteUrl = (s) => /^https?:\/\/[^/]+\//i.test(s || '');

function checkErrorEnvelope(x, errorCodes, problems) {
  const e = x.responseBody && typeof x.responseBody === 'object' ? x.responseBody.error : undefined;
  if (!e || typeof e !== 'object') {
    problems.push('error reply without an ARM error body {"error":{"code","message"}}');
    return;
  }
  if (typeof e.code !== 'string' || !e.code) problems.push('error.code missing or not a string');
  else if (errorCodes.size && !errorCodes.has(e.code)) problems.push(`error.code "${e.code}" is not in the stable set (x-sandboxd-error-codes)`);
  if (typeof e.message !== 'string') problems.push('error.message missing or not a string');
}

function checkDeclaredHeaders(x, response, problems) {
  const provisioning = x.responseBody && x.responseBody.properties && x.responseBody.properties.provisioningState;
  const finished = x.status === 201 && TERMINAL_STATES.has(provisioning);
  for (const name of Object.keys(response.headers || {})) {
    const key = name.toLowerCase();
    const value = x.responseHeaders[key];
    if (value === undefined) {
      if (finished && ASYNC_HEADERS.has(key)) continue;
      problems.push(`header ${name} missing (declared for ${x.status})`);
      continue;
    }
    if (key === 'retry-after' && !(/^\d+$/.test(value) && Number(value) >= 1)) {
      problems.push(`Retry-After "${value}" is not a whole number of seconds >= 1`);
    }
    if ((key === 'azure-asyncoperation' || key === 'location') && !isAbsoluteUrl(value)) {
      problems.push(`${name} "${value}" is not an absolute URL`);
    }
  }
}

function checkArmHeaders(x, problems) {
  if (!x.responseHeaders['x-ms-request-id']) problems.push('header x-ms-request-id missing');
  const sent = x.requestHeaders['x-ms-client-request-id'];
  if (sent !== undefined && x.responseHeaders['x-ms-client-request-id'] !== sent) {
    problems.push(`x-ms-client-request-id not echoed (sent "${sent}", got "${x.responseHeaders['x-ms-client-request-id'] || ''}")`);
  }
}

function describeIssue(i) {
  const where = (i.jsonPathsInPayload && i.jsonPathsInPayload[0]) || (i.pathsInPayload && i.pathsInPayload[0]) || '';
  return `${i.code}: ${i.message}${where ? ' at ' + where : ''}`;
}

async function checkExchange(lv, catalog, x, options) {
  const problems = [];
  const url = normaliseUrl(x.url);
  if (!isArmRoute(url.pathname)) return { skipped: true, problems };

  checkArmHeaders(x, problems);
  const pair = {
    liveRequest: { url: url.pathname + url.search, method: x.method.toLowerCase(), headers: x.requestHeaders, body: x.requestBody },
    liveResponse: { statusCode: String(x.status), headers: x.responseHeaders, body: x.responseBody },
  };
  const r = await lv.validateLiveRequestResponse(pair);
  const res = r.responseValidationResult || {};
  const info = res.operationInfo || {};
  const found = catalog.ops.get(info.apiVersion + ' ' + info.operationId);

  if (!found) {
    // No operation: an unknown route, method or api-version. Only an error reply is right.
    if (x.status < 400) {
      const why = (res.runtimeException && res.runtimeException.message) || 'no matching operation';
      problems.push(`success status ${x.status} for a request the description has no operation for (${why})`);
    } else {
      checkErrorEnvelope(x, catalog.errorCodes, problems);
    }
    return { problems };
  }

  // A conditional GET answered "not modified" (If-None-Match): plain HTTP, valid for any GET.
  if (x.status === 304 && x.method === 'GET' && x.requestHeaders['if-none-match'] !== undefined) {
    if (!x.responseHeaders.etag) problems.push('304 without an ETag header');
    return { operationId: info.operationId, problems };
  }
  const declared = found.op.responses[String(x.status)];
  if (x.status >= 400) {
    checkErrorEnvelope(x, catalog.errorCodes, problems);
  } else if (!declared) {
    const statuses = Object.keys(found.op.responses).filter((s) => s !== 'default').join(', ');
    problems.push(`status ${x.status} is not declared for ${info.operationId} (declared: ${statuses})`);
  } else {
    checkDeclaredHeaders(x, declared, problems);
  }
  for (const issue of res.errors || []) problems.push('response ' + describeIssue(issue));
  if (res.runtimeException) problems.push('response: ' + res.runtimeException.message);

  if (options.strictRequests && x.status < 400) {
    const req = r.requestValidationResult || {};
    for (const issue of req.errors || []) problems.push('accepted an invalid request: ' + describeIssue(issue));
  }
  return { operationId: info.operationId, problems };
}

function readExchanges(file) {
  const out = [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${file}:${i + 1}`;
    let raw;
    try {
      raw = JSON.parse(line);
    } catch (e) {
      out.push({ where, invalid: 'not JSON: ' + e.message });
      return;
    }
    if (typeof raw.method !== 'string' || typeof raw.url !== 'string' || !Number.isInteger(Number(raw.status))) {
      out.push({ where, invalid: 'needs "method", "url" and "status"' });
      return;
    }
    const requestHeaders = lower(raw.requestHeaders);
    const responseHeaders = lower(raw.responseHeaders);
    out.push({
      where,
      method: raw.method.toUpperCase(),
      url: raw.url,
      status: Number(raw.status),
      requestHeaders,
      responseHeaders,
      requestBody: parseBody(raw.requestBody, requestHeaders['content-type']),
      responseBody: parseBody(raw.responseBody, responseHeaders['content-type']),
    });
  });
  return out;
}

async function main() {
  const args = process.argv.slice(2);
  const options = { strictRequests: args.includes('--strict-requests'), quiet: args.includes('--quiet') };
  const files = args.filter((a) => !a.startsWith('--'));
  if (!files.length) {
    console.error('usage: validate-traffic.js [--strict-requests] [--quiet] FILE.jsonl...');
    process.exit(2);
  }
  const versions = apiVersions();
  const catalog = loadOperations(versions);
  const lv = new LiveValidator({
    directory: closedEnumCopy(),
    swaggerPathsPattern: versions.map((v) => v + '/' + SPEC_FILE),
    git: { shouldClone: false },
    isPathCaseSensitive: false,
    loadValidatorInInitialize: true,
    loadValidatorInBackground: false,
  }, () => {});
  await lv.initialize();

  let checked = 0;
  let skipped = 0;
  let bad = 0;
  const seen = new Set();
  for (const file of files) {
    for (const x of readExchanges(file)) {
      if (x.invalid) {
        bad++;
        console.log(`MISMATCH ${x.where}: ${x.invalid}`);
        continue;
      }
      const result = await checkExchange(lv, catalog, x, options);
      if (result.skipped) {
        skipped++;
        continue;
      }
      checked++;
      if (result.operationId) seen.add(result.operationId);
      if (!result.problems.length) continue;
      bad++;
      console.log(`MISMATCH ${x.where}: ${x.method} ${normaliseUrl(x.url).pathname} -> ${x.status}${result.operationId ? ' (' + result.operationId + ')' : ''}`);
      for (const p of result.problems) console.log('    ' + p);
    }
  }
  if (!options.quiet) {
    const ops = [...catalog.ops.values()].filter((o) => o.op.operationId).map((o) => o.op.operationId);
    const unseen = [...new Set(ops)].filter((id) => !seen.has(id)).sort();
    if (unseen.length) console.log(`operations not exercised: ${unseen.join(', ')}`);
  }
  console.log(`traffic: ${checked} exchanges checked, ${skipped} not ARM routes, ${bad} with mismatches`);
  process.exit(bad ? 1 : 0);
}

main().catch((e) => {
  console.error('validate-traffic: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
