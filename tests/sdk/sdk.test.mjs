// sdk.test.mjs -- the unmodified Azure SDK for JavaScript against a real
// sandboxd: @azure/arm-appcontainers for sandboxGroups and vnetConnections
// (long-running operations polled to the end, paged lists), and
// @azure/arm-resources for generic access by resource id, and
// @azure/arm-authorization for role definitions and assignments.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ContainerAppsAPIClient } from "@azure/arm-appcontainers";
import { ResourceManagementClient } from "@azure/arm-resources";
import { AuthorizationManagementClient } from "@azure/arm-authorization";
import { startServer } from "./server.mjs";

const SUB = "7d1f0a8e-3c5b-4a9e-9f2d-1b6c8e4a2f10";
const RG = "sdk-rg";
const ENV_ID = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/managedEnvironments/pool-a`;
const SUBNET_ID = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/sandboxes`;
const API_VERSION = "2026-07-01";
const POLL = { updateIntervalInMs: 20 };

let server;
let apps;
let resources;
let authz;

before(async () => {
  server = await startServer();
  apps = new ContainerAppsAPIClient(server.credential, SUB, { endpoint: server.url });
  resources = new ResourceManagementClient(server.credential, SUB, { endpoint: server.url });
  authz = new AuthorizationManagementClient(server.adminCredential, SUB, { endpoint: server.url });
});

after(async () => {
  if (server) await server.stop();
});

async function collect(iter) {
  const out = [];
  for await (const item of iter) out.push(item);
  return out;
}

async function assertRestError(promise, status, code) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.name, "RestError", `expected a RestError, got ${e}`);
    assert.equal(e.statusCode, status, e.message);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test("sandbox group: create, get, patch tags, delete, then 404", async () => {
  const created = await apps.sandboxGroups.beginCreateOrUpdateAndWait(
    RG,
    "group-one",
    { location: "westeurope", tags: { team: "ml" }, properties: { environmentId: ENV_ID } },
    POLL,
  );
  assert.equal(created.name, "group-one");
  assert.equal(created.type, "Microsoft.App/sandboxGroups");
  assert.equal(
    created.id,
    `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/sandboxGroups/group-one`,
  );
  assert.equal(created.location, "westeurope");
  assert.deepEqual(created.tags, { team: "ml" });
  assert.equal(created.properties.provisioningState, "Succeeded");
  assert.equal(created.properties.environmentId, ENV_ID);
  assert.equal(created.properties.defaultDomain, "pool-a.sandboxd.internal");
  assert.ok(created.systemData?.createdAt instanceof Date, "systemData.createdAt is a date");

  const got = await apps.sandboxGroups.get(RG, "group-one");
  assert.deepEqual(got.tags, { team: "ml" });
  assert.equal(got.properties.provisioningState, "Succeeded");

  // Names compare case-insensitively and keep the casing they were created with.
  const upper = await apps.sandboxGroups.get(RG.toUpperCase(), "GROUP-ONE");
  assert.equal(upper.name, "group-one");

  const patched = await apps.sandboxGroups.beginUpdateAndWait(
    RG,
    "group-one",
    { tags: { team: "ml", stage: "prod" } },
    POLL,
  );
  assert.deepEqual(patched.tags, { team: "ml", stage: "prod" });
  // A PATCH without environmentId keeps the link.
  assert.equal(patched.properties.environmentId, ENV_ID);
  const again = await apps.sandboxGroups.get(RG, "group-one");
  assert.deepEqual(again.tags, { team: "ml", stage: "prod" });

  await apps.sandboxGroups.beginDeleteAndWait(RG, "group-one", POLL);
  await assertRestError(apps.sandboxGroups.get(RG, "group-one"), 404, "ResourceNotFound");
  // Deleting what is gone succeeds (204).
  await apps.sandboxGroups.beginDeleteAndWait(RG, "group-one", POLL);
});

test("sandbox group: the environment link cannot change", async () => {
  await apps.sandboxGroups.beginCreateOrUpdateAndWait(
    RG,
    "linked",
    { location: "westeurope", properties: { environmentId: ENV_ID } },
    POLL,
  );
  await assertRestError(
    apps.sandboxGroups.beginCreateOrUpdateAndWait(RG, "linked", { location: "westeurope" }, POLL),
    409,
    "EnvironmentIdCannotChange",
  );
  await assertRestError(
    apps.sandboxGroups.beginCreateOrUpdateAndWait(RG, "bad name!", { location: "westeurope" }, POLL),
    400,
    "InvalidResourceName",
  );
  await apps.sandboxGroups.beginDeleteAndWait(RG, "linked", POLL);
});

test("vnet connections: create, get, list, delete", async () => {
  await apps.sandboxGroups.beginCreateOrUpdateAndWait(RG, "with-net", { location: "westeurope" }, POLL);
  const conn = await apps.vnetConnections.createOrUpdate(RG, "with-net", "conn1", {
    properties: { subnetId: SUBNET_ID },
  });
  assert.equal(conn.name, "conn1");
  assert.equal(conn.type, "Microsoft.App/sandboxGroups/vnetConnections");
  assert.equal(conn.properties.subnetId, SUBNET_ID);
  assert.equal(conn.properties.provisioningState, "Succeeded");

  const got = await apps.vnetConnections.get(RG, "with-net", "conn1");
  assert.equal(got.id, conn.id);

  await apps.vnetConnections.createOrUpdate(RG, "with-net", "conn2", {
    properties: { subnetId: SUBNET_ID.replace("sandboxes", "other") },
  });
  const listed = await collect(apps.vnetConnections.listBySandboxGroup(RG, "with-net"));
  assert.deepEqual(listed.map((c) => c.name).sort(), ["conn1", "conn2"]);

  await apps.vnetConnections.beginDeleteAndWait(RG, "with-net", "conn1", POLL);
  await assertRestError(apps.vnetConnections.get(RG, "with-net", "conn1"), 404, "ResourceNotFound");
  const left = await collect(apps.vnetConnections.listBySandboxGroup(RG, "with-net"));
  assert.deepEqual(left.map((c) => c.name), ["conn2"]);

  // Deleting the group takes its children with it.
  await apps.sandboxGroups.beginDeleteAndWait(RG, "with-net", POLL);
  await assertRestError(apps.vnetConnections.get(RG, "with-net", "conn2"), 404, "ResourceNotFound");
  await assertRestError(
    apps.vnetConnections.createOrUpdate(RG, "with-net", "conn3", { properties: { subnetId: SUBNET_ID } }),
    404,
    "ParentResourceNotFound",
  );
});

test("lists: by resource group and by subscription, across pages", async () => {
  // More groups than one page (100) holds, so the SDK follows nextLink.
  const rg = "sdk-many";
  const n = 105;
  const names = Array.from({ length: n }, (_, i) => `g-${String(i).padStart(3, "0")}`);
  for (let i = 0; i < n; i += 15) {
    await Promise.all(
      names.slice(i, i + 15).map((name) =>
        apps.sandboxGroups.beginCreateOrUpdateAndWait(rg, name, { location: "eastus" }, POLL),
      ),
    );
  }
  await apps.sandboxGroups.beginCreateOrUpdateAndWait(RG, "elsewhere", { location: "eastus" }, POLL);

  const byRg = await collect(apps.sandboxGroups.listByResourceGroup(rg));
  assert.deepEqual(byRg.map((g) => g.name).sort(), names);

  let pages = 0;
  const bySub = [];
  for await (const page of apps.sandboxGroups.listBySubscription().byPage()) {
    pages++;
    bySub.push(...page);
  }
  assert.ok(pages >= 2, `expected more than one page, got ${pages}`);
  const subNames = bySub.map((g) => g.name);
  assert.equal(new Set(subNames).size, subNames.length, "no group listed twice");
  assert.deepEqual(subNames.sort(), [...names, "elsewhere"].sort());

  await Promise.all(
    ["elsewhere"].map((name) => apps.sandboxGroups.beginDeleteAndWait(RG, name, POLL)),
  );
  for (let i = 0; i < n; i += 15) {
    await Promise.all(
      names.slice(i, i + 15).map((name) => apps.sandboxGroups.beginDeleteAndWait(rg, name, POLL)),
    );
  }
  assert.deepEqual(await collect(apps.sandboxGroups.listByResourceGroup(rg)), []);
});

test("arm-resources: generic access by resource id", async () => {
  const group = await apps.sandboxGroups.beginCreateOrUpdateAndWait(
    RG,
    "generic",
    { location: "westeurope", tags: { via: "arm-resources" } },
    POLL,
  );
  const res = await resources.resources.getById(group.id, API_VERSION);
  assert.equal(res.id, group.id);
  assert.equal(res.name, "generic");
  assert.equal(res.type, "Microsoft.App/sandboxGroups");
  assert.equal(res.location, "westeurope");
  assert.deepEqual(res.tags, { via: "arm-resources" });
  assert.equal(res.properties.provisioningState, "Succeeded");

  const byParts = await resources.resources.get(
    RG, "Microsoft.App", "", "sandboxGroups", "generic", API_VERSION,
  );
  assert.equal(byParts.id, group.id);

  await assert.rejects(resources.resources.getById(group.id, "2020-01-01"), (e) => {
    assert.equal(e.statusCode, 400);
    assert.equal(e.code, "InvalidApiVersionParameter");
    return true;
  });

  await resources.resources.beginDeleteByIdAndWait(group.id, API_VERSION, POLL);
  await assert.rejects(resources.resources.getById(group.id, API_VERSION), (e) => {
    assert.equal(e.statusCode, 404);
    assert.equal(e.code, "ResourceNotFound");
    return true;
  });
});

test("a wrong token is refused", async () => {
  const wrong = {
    getToken: async () => ({ token: "not-the-token", expiresOnTimestamp: Date.now() + 3600 * 1000 }),
  };
  const client = new ContainerAppsAPIClient(wrong, SUB, { endpoint: server.url });
  await assertRestError(client.sandboxGroups.get(RG, "anything"), 401, "InvalidAuthenticationToken");
});

test("arm-authorization: find a role, assign it, list, get, delete", async () => {
  const scope = `/subscriptions/${SUB}/resourceGroups/${RG}`;
  const readers = await collect(authz.roleDefinitions.list(scope, { filter: "roleName eq 'Reader'" }));
  assert.equal(readers.length, 1);
  assert.equal(readers[0].roleName, "Reader");
  assert.equal(readers[0].roleType, "BuiltInRole");
  const name = "0c7e4b2a-9d1f-4e3a-8b6c-5a2d1f0e9c87";
  const made = await authz.roleAssignments.create(scope, name, {
    roleDefinitionId: readers[0].id,
    principalId: "sdk-reader",
    principalType: "User",
  });
  assert.equal(made.name, name);
  assert.equal(made.scope, scope);
  assert.equal(made.roleDefinitionId, readers[0].id);
  assert.equal(made.principalType, "User");
  const got = await authz.roleAssignments.get(scope, name);
  assert.equal(got.principalId, "sdk-reader");
  const listed = await collect(authz.roleAssignments.listForScope(scope, { filter: "principalId eq 'sdk-reader'" }));
  assert.deepEqual(listed.map((a) => a.name), [name]);
  await assertRestError(
    authz.roleAssignments.create(scope, "not-a-guid", { roleDefinitionId: readers[0].id, principalId: "x" }),
    400,
    "InvalidRoleAssignmentId",
  );
  const gone = await authz.roleAssignments.delete(scope, name);
  assert.equal(gone.name, name);
  await assertRestError(authz.roleAssignments.get(scope, name), 404, "RoleAssignmentNotFound");
});
