// Preloaded into oav (node -r ./offline.js): serves the schemas oav would fetch from the network from the installed @autorest/schemas package, and refuses every other URL at once.
'use strict';

const fs = require('fs');
const path = require('path');

const vfs = require('@azure-tools/openapi-tools-common/dist/libs/virtual-fs');
const schemasDir = path.dirname(require.resolve('@autorest/schemas/package.json'));
const readFile = vfs.readFile;

// oav's own schemas point at these files in Azure/autorest on GitHub, under several paths
// (master/schema/..., main/packages/libs/autorest-schemas/...); the package ships the same files.
const AUTOREST_SCHEMA = /^https:\/\/raw\.githubusercontent\.com\/Azure\/autorest\/[^?#]*\/([\w.-]+\.json)$/;

vfs.readFile = async (pathStr) => {
  if (vfs.urlParse(pathStr) === undefined) return readFile(pathStr);
  const m = AUTOREST_SCHEMA.exec(pathStr);
  if (m && fs.existsSync(path.join(schemasDir, m[1]))) {
    return fs.readFileSync(path.join(schemasDir, m[1]), 'utf8');
  }
  throw new Error('offline: refusing to fetch ' + pathStr);
};
