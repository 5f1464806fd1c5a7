#!/usr/bin/env node
// Drives a running sandboxd through the ARM operations of its description and records every exchange as JSON lines, for validate-traffic.js.
//
// Usage: node record-traffic.js BASE_URL OUT.jsonl [TOKEN]
//   e.g. node record-traffic.js http://127.0.0.1:8080 /tmp/traffic.jsonl
// Needs only a server: sandbox actions answer whatever the server answers without a host
// (the validator then checks those replies too). Exits 1 if the server cannot be reached.
'use strict';

const fs = require('fs');
const crypto = require('crypto');

const [base, out, token] = process.argv.slice(2);
if (!base || !out) {
  console.error('usage: record-traffic.js BASE_URL OUT.jsonl [TOKEN]');
  process.exit(2);
}

const SUB = crypto.randomUUID();
const RG = 'rg-conformance';
const GROUP = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/sandboxGroups/g1`;
const V = 'api-version=2026-07-01';

const lines = [];

async function call(method, path, body, headers = {}) {
  const h = { ...headers };
  if (token) h.Authorization = 'Bearer ' + token;
  let payload;
  if (body !== undefined) {
    if (Buffer.isBuffer(body)) {
      payload = body;
      h['Content-Type'] ||= 'application/octet-stream';
    } else {
      payload = JSON.stringify(body);
      h['Content-Type'] ||= 'application/json';
    }
  }
  const url = base.replace(/\/$/, '') + path;
  const res = await fetch(url, { method, headers: h, body: payload, redirect: 'manual' });
  const text = await res.text();
  const recordedHeaders = { ...h };
  delete recordedHeaders.Authorization;
  lines.push(JSON.stringify({
    method, url, status: res.status,
    requestHeaders: recordedHeaders,
    responseHeaders: Object.fromEntries(res.headers.entries()),
    requestBody: payload === undefined ? '' : payload.toString(),
    responseBody: text,
  }));
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: res.status, headers: res.headers, json };
}

// Poll an Azure-AsyncOperation URL until the operation ends (bounded).
async function settle(r) {
  const url = r.headers.get('azure-asyncoperation');
  if (!url) return;
  const u = new URL(url);
  for (let i = 0; i < 120; i++) {
    const s = await call('GET', u.pathname + u.search);
    if (!s.json || s.json.status !== 'InProgress') return;
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

async function main() {
  const q = '?' + V;
  const sb = GROUP + '/sandboxes/sb1';
  await call('GET', '/providers/Microsoft.App/operations' + q);
  let r = await call('PUT', GROUP + q, {
    location: 'local', tags: { team: 'conformance' },
    properties: { sandboxDefaults: { cpu: 0.5, memoryMiB: 256, env: { A: 'b' }, isolation: 'process' }, scale: { maxSandboxes: 5 } },
  }, { 'x-ms-client-request-id': crypto.randomUUID() });
  await settle(r);
  const g = await call('GET', GROUP + q);
  if (g.headers.get('etag')) await call('GET', GROUP + q, undefined, { 'If-None-Match': g.headers.get('etag') });
  await call('PATCH', GROUP + q, { tags: { team: 'conformance', more: 'x' } });
  if (g.json) await call('PUT', GROUP + q, g.json); // GET, change nothing, PUT back (az resource update)
  await call('GET', `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/sandboxGroups` + q);
  await call('GET', `/subscriptions/${SUB}/providers/Microsoft.App/sandboxGroups` + q);
  await call('GET', `//subscriptions/${SUB}/providers/Microsoft.App/sandboxGroups` + q);

  await call('PUT', GROUP + '/egressPolicies/pypi' + q, { properties: { rules: [{ name: 'pypi', action: 'Allow', fqdns: ['pypi.org'], ports: [443] }] } });
  await call('GET', GROUP + '/egressPolicies/pypi' + q);
  await call('GET', GROUP + '/egressPolicies' + q);
  await call('PUT', GROUP + '/vnetConnections/v1' + q, { properties: { subnetId: `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Network/virtualNetworks/vn/subnets/s1` } });
  await call('GET', GROUP + '/vnetConnections/v1' + q);
  await call('GET', GROUP + '/vnetConnections' + q);

  r = await call('PUT', sb + q, { properties: { cpu: 0.25, memoryMiB: 128, env: { K: 'V' }, egressPolicy: 'pypi', idleTimeoutSeconds: 60 } });
  await settle(r);
  await call('GET', sb + q);
  await call('GET', GROUP + '/sandboxes' + q);
  await call('POST', sb + '/exec' + q, { command: ['sh', '-c', 'echo hi'], timeoutSeconds: 10 });
  for (const verb of ['suspend', 'resume', 'stop', 'start']) await call('POST', sb + '/' + verb + q);
  await call('PUT', sb + '/files' + q + '&path=/tmp/a.txt', Buffer.from('hello\n'));
  await call('GET', sb + '/files' + q + '&path=/tmp/a.txt');
  await call('GET', sb + '/files' + q + '&path=/tmp&list=true');
  await call('DELETE', sb + '/files' + q + '&path=/tmp/a.txt');
  await call('GET', sb + '/egressDecisions' + q);
  await call('DELETE', GROUP + '/egressPolicies/pypi' + q); // 409: the sandbox uses it

  // Errors the description documents.
  await call('GET', GROUP);
  await call('GET', GROUP + '?api-version=2020-01-01');
  await call('GET', GROUP.replace('/g1', '/nothere') + q);
  await call('GET', GROUP + '/sandboxes/nothere' + q);
  await call('PUT', GROUP.replace('/g1', '/-bad') + q, { location: 'local' });
  await call('PUT', GROUP + q, '{not json');
  await call('PUT', GROUP + q, { location: 'local' }, { 'Content-Type': 'text/plain' });
  await call('PUT', GROUP + q, { location: 'local', tags: { a: 1 } });
  await call('GET', GROUP + q, undefined, { 'If-Match': '"nope"' });
  await call('PUT', GROUP + q, { location: 'local' }, { 'If-Match': '"nope"' });
  await call('PUT', GROUP.replace('/g1', '/g2') + '/sandboxes/x' + q, { properties: {} });
  await call('GET', `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/unknownThings` + q);
  await call('POST', GROUP + q);

  // Tear down, then the resource is gone.
  r = await call('DELETE', sb + q);
  await settle(r);
  await call('DELETE', GROUP + '/vnetConnections/v1' + q);
  await call('DELETE', GROUP + '/egressPolicies/pypi' + q);
  r = await call('DELETE', GROUP + q);
  if (r.headers.get('location')) {
    const u = new URL(r.headers.get('location'));
    await call('GET', u.pathname + u.search);
  }
  await settle(r);
  await call('DELETE', GROUP + q);
  await call('GET', '/openapi.json');

  fs.writeFileSync(out, lines.join('\n') + '\n');
  console.log(`recorded ${lines.length} exchanges in ${out}`);
}

main().catch((e) => {
  if (lines.length) fs.writeFileSync(out, lines.join('\n') + '\n');
  console.error('record-traffic: ' + (e && e.message ? e.message : e));
  process.exit(1);
});
