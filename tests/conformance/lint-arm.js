#!/usr/bin/env node
// Runs Azure's ARM lint rules (the Spectral and native rule sets of @microsoft.azure/openapi-validator) on OpenAPI files, offline and without AutoRest.
//
// AutoRest's openapi-validator plugin does the same two passes: Spectral with the az-arm rule set
// (which extends az-common), then the native rules through openapi-validator-core's lint(). This
// script drives both directly, reads $refs from the local disk only, and applies the
// suppressions listed in openapi/suppressions.json (each with its reason).
//
// Usage: node lint-arm.js [--staging] FILE...   Exit status 1 when an unsuppressed error remains.
'use strict';

const fs = require('fs');
const path = require('path');
const { Spectral, Ruleset, Document } = require('@stoplight/spectral-core');
const Parsers = require('@stoplight/spectral-parsers');
const { Resolver } = require('@stoplight/json-ref-resolver');
const {
  spectralRulesets, nativeRulesets, getNamesOfRulesInPayloadWithPropertySetToTrue,
  deleteRulesPropertiesInPayloadNotValidForSpectralRules, disableRulesInRuleset,
} = require('@microsoft.azure/openapi-validator-rulesets');
const { lint, OpenApiTypes } = require('@microsoft.azure/openapi-validator-core');

const SUPPRESSIONS_FILE = path.join(__dirname, '..', '..', 'openapi', 'suppressions.json');
const SEVERITY = ['error', 'warning', 'info', 'hint'];

function localOnlyResolver() {
  const file = {
    resolve: (ref) => {
      const p = decodeURIComponent(ref.path());
      return fs.promises.readFile(p, 'utf8');
    },
  };
  const refuse = { resolve: (ref) => Promise.reject(new Error('offline: refusing to fetch ' + ref.toString())) };
  return new Resolver({ resolvers: { file, http: refuse, https: refuse } });
}

function armRuleset(staging) {
  const payload = spectralRulesets.azARM;
  const stagingOnly = getNamesOfRulesInPayloadWithPropertySetToTrue(payload, 'stagingOnly');
  deleteRulesPropertiesInPayloadNotValidForSpectralRules(payload);
  const ruleset = new Ruleset(payload, { severity: 'recommended' });
  if (!staging) disableRulesInRuleset(ruleset, stagingOnly);
  return ruleset;
}

async function spectralPass(file, ruleset) {
  const spectral = new Spectral({ resolver: localOnlyResolver() });
  spectral.setRuleset(ruleset);
  // A Document rather than the parsed object (as the AutoRest plugin passes): it carries the
  // file's location, which the resolver needs to follow relative $refs.
  const results = await spectral.run(new Document(fs.readFileSync(file, 'utf8'), Parsers.Json, file));
  return results.map((r) => ({
    engine: 'spectral', code: String(r.code), severity: SEVERITY[r.severity] || 'info',
    message: r.message, jsonpath: r.path || [], source: r.source || file,
  }));
}

async function nativePass(files) {
  const rules = {};
  for (const set of Object.values(nativeRulesets)) Object.assign(rules, set.rules);
  const fileSystem = {
    read: async (uri) => {
      const p = uri.startsWith('file://') ? decodeURIComponent(new URL(uri).pathname) : uri;
      if (/[\\/]examples[\\/]/.test(p)) return '';
      if (/^https?:/.test(p)) throw new Error('offline: refusing to fetch ' + p);
      return fs.promises.readFile(p, 'utf8');
    },
  };
  const out = [];
  await lint(files, { ruleSet: { documentationUrl: '', rules }, fileSystem, openapiType: OpenApiTypes.arm }, (m) => {
    out.push({
      engine: 'native', code: String(m.code), severity: m.type, message: m.message,
      jsonpath: m.jsonpath || [], source: (m.sources && m.sources[0]) || '',
    });
  });
  return out;
}

function loadSuppressions() {
  if (!fs.existsSync(SUPPRESSIONS_FILE)) return [];
  return JSON.parse(fs.readFileSync(SUPPRESSIONS_FILE, 'utf8')).suppressions || [];
}

// A suppression names a rule and, optionally, a JSON path prefix (an array of keys, where '*'
// in a key matches any run of characters) and a substring of the message; a finding matches
// when all of those given match.
function keyMatches(pattern, key) {
  const re = new RegExp('^' + String(pattern).split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return re.test(String(key));
}

function suppressed(finding, suppressions) {
  return suppressions.find((s) => {
    if (s.code !== finding.code) return false;
    if (s.where) {
      const prefix = s.where;
      if (prefix.length > finding.jsonpath.length) return false;
      for (let i = 0; i < prefix.length; i++) {
        if (!keyMatches(prefix[i], finding.jsonpath[i])) return false;
      }
    }
    if (s.message && !finding.message.includes(s.message)) return false;
    return true;
  });
}

async function main() {
  const args = process.argv.slice(2);
  const staging = args.includes('--staging');
  const files = args.filter((a) => !a.startsWith('--')).map((f) => path.resolve(f));
  if (!files.length) {
    console.error('usage: lint-arm.js [--staging] FILE...');
    process.exit(2);
  }
  const suppressions = loadSuppressions();
  const used = new Set();
  const ruleset = armRuleset(staging);
  const findings = [];
  for (const file of files) findings.push(...await spectralPass(file, ruleset));
  findings.push(...await nativePass(files));

  let errors = 0;
  let warnings = 0;
  let muted = 0;
  for (const f of findings) {
    // Findings inside the common types are Azure's concern, not ours (AutoRest skips them too).
    if (/common-types[\\/]resource-management/.test(f.source)) continue;
    const s = suppressed(f, suppressions);
    if (s) {
      used.add(s);
      muted++;
      continue;
    }
    if (f.severity === 'error' || f.severity === 'fatal') errors++;
    else if (f.severity === 'warning') warnings++;
    else continue;
    console.log(`${f.severity.toUpperCase()} ${f.code} [${f.engine}] ${f.message}\n    at ${JSON.stringify(f.jsonpath)} in ${path.relative(process.cwd(), f.source.replace(/^file:\/\//, ''))}`);
  }
  for (const s of suppressions) {
    if (!used.has(s)) console.log(`NOTE unused suppression: ${s.code} ${JSON.stringify(s.where || [])}`);
  }
  console.log(`lint: ${errors} errors, ${warnings} warnings, ${muted} suppressed (${files.length} files)`);
  process.exit(errors ? 1 : 0);
}

main().catch((e) => {
  console.error('lint-arm: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
