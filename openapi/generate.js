#!/usr/bin/env node
// Writes sandboxd's OpenAPI 2.0 (ARM) description: one file per api-version with its examples, and bundled single files.
//
// This script is the source of the description; the JSON under openapi/<api-version>/ and
// openapi/bundled/ is its output, checked in so that Azure's tools (oav, the ARM linter) and
// readers see plain ARM-style files. `node openapi/generate.js --check` fails when the checked-in
// files differ from what the script writes, so the two cannot drift apart.
//
// Azure's part (sandboxGroups, vnetConnections) follows the published 2026-07-01 contract of
// Microsoft.App (@azure/arm-appcontainers 4.x); everything sandboxd adds carries
// `x-sandboxd-extension: true` and says so in its description.
'use strict';

const fs = require('fs');
const path = require('path');

const API_VERSIONS = ['2026-01-01', '2026-07-01'];
const CT = '../common-types/resource-management/v6/types.json';
const MI = '../common-types/resource-management/v6/managedidentity.json';
const EXT = 'x-sandboxd-extension';
const EXT_NOTE = ' (sandboxd extension: not part of Azure\'s Microsoft.App contract.)';

// Names of sandbox groups and of their children, as the server enforces them.
const NAME_PATTERN = '^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$';

const SUB = '/subscriptions/{subscriptionId}';
const RG = SUB + '/resourceGroups/{resourceGroupName}';
const GROUPS = RG + '/providers/Microsoft.App/sandboxGroups';
const GROUP = GROUPS + '/{sandboxGroupName}';
const SANDBOX = GROUP + '/sandboxes/{sandboxName}';

/* ---------- small builders ---------- */

const ref = (r) => ({ $ref: r });
const ct = (name) => ref(CT + '#/definitions/' + name);
const ctParam = (name) => ref(CT + '#/parameters/' + name);
const def = (name) => ref('#/definitions/' + name);
const param = (name) => ref('#/parameters/' + name);

function ext(obj) {
  obj[EXT] = true;
  if (obj.description && !obj.description.endsWith(EXT_NOTE)) obj.description += EXT_NOTE;
  return obj;
}

function provisioningState(resource) {
  return {
    description: 'Provisioning state of the ' + resource + '.',
    type: 'string',
    enum: ['Succeeded', 'Failed', 'Canceled', 'InProgress', 'Updating', 'Deleting'],
    'x-ms-enum': {
      name: resource + 'ProvisioningState',
      modelAsString: true,
      values: [
        { name: 'Succeeded', value: 'Succeeded', description: 'Resource has been created.' },
        { name: 'Failed', value: 'Failed', description: 'Resource creation failed.' },
        { name: 'Canceled', value: 'Canceled', description: 'Resource creation was canceled.' },
        { name: 'InProgress', value: 'InProgress', description: 'The resource is being provisioned.' },
        { name: 'Updating', value: 'Updating', description: 'The resource is being updated.' },
        { name: 'Deleting', value: 'Deleting', description: 'The resource is being deleted.' },
      ],
    },
    readOnly: true,
  };
}

function enumOf(name, values, description) {
  return {
    description,
    type: 'string',
    enum: values.map((v) => v[0]),
    'x-ms-enum': {
      name,
      modelAsString: true,
      values: values.map(([value, desc]) => ({ name: value, value, description: desc })),
    },
  };
}

function listResult(item) {
  return {
    description: 'The response of a ' + item + ' list operation.',
    type: 'object',
    properties: {
      value: { type: 'array', description: 'The ' + item + ' items on this page', items: def(item) },
      nextLink: { type: 'string', format: 'uri', description: 'The link to the next page of items' },
    },
    required: ['value'],
  };
}

const article = (noun) => (/^[AEIOU]/.test(noun) ? 'an ' : 'a ') + noun;

const stringMap = (description) => ({
  type: 'object',
  description,
  additionalProperties: { type: 'string' },
});

/* ---------- headers ---------- */

const H_ASYNC = {
  'Azure-AsyncOperation': {
    type: 'string',
    description: 'Absolute URL of the operation status resource to poll for the outcome.',
  },
};
const H_LOCATION = {
  Location: { type: 'string', description: 'The Location header contains the URL where the status of the long running operation can be checked.' },
};
const H_RETRY = {
  'Retry-After': { type: 'integer', format: 'int32', description: 'The Retry-After header tells the client how many seconds to wait before polling (at least 1).' },
};
const H_ETAG = { ETag: { type: 'string', description: 'The entity tag of the resource, for If-Match and If-None-Match.' } };

/* ---------- responses ---------- */

const DEFAULT_ERROR = { description: 'An unexpected error response.', schema: ct('ErrorResponse') };
const ok = (schema, headers) => ({ description: 'Azure operation completed successfully.', schema, ...(headers ? { headers } : {}) });
const created = (schema, headers) => ({ description: 'Resource \'' + schema.$ref.split('/').pop() + '\' create operation succeeded', schema, headers });
const accepted = (headers) => ({ description: 'Resource operation accepted.', headers });
const noContent = (what) => ({ description: what });

/* ---------- parameters of this file ---------- */

function nameParam(name, what, isExt) {
  const p = {
    name,
    in: 'path',
    required: true,
    type: 'string',
    description: 'The name of the ' + what + '. 1-63 characters: letters, digits and hyphens, not starting with a hyphen; compared case-insensitively.',
    pattern: NAME_PATTERN,
    'x-ms-parameter-location': 'method',
  };
  return isExt ? ext(p) : p;
}

const PARAMETERS = {
  SandboxGroupNameParameter: nameParam('sandboxGroupName', 'SandboxGroup'),
  VnetConnectionNameParameter: nameParam('vnetConnectionName', 'VnetConnection'),
  SandboxNameParameter: nameParam('sandboxName', 'Sandbox', true),
  EgressPolicyNameParameter: nameParam('egressPolicyName', 'EgressPolicy', true),
  IfMatchParameter: {
    name: 'If-Match',
    in: 'header',
    required: false,
    type: 'string',
    description: 'Carry out the request only if the resource\'s ETag matches this value (or, for "*", if the resource exists); otherwise 412 PreconditionFailed.',
    'x-ms-parameter-location': 'method',
    'x-ms-client-name': 'ifMatch',
  },
  IfNoneMatchParameter: {
    name: 'If-None-Match',
    in: 'header',
    required: false,
    type: 'string',
    description: 'Set to "*" to create the resource only if it does not exist yet; otherwise 412 PreconditionFailed.',
    'x-ms-parameter-location': 'method',
    'x-ms-client-name': 'ifNoneMatch',
  },
  ProcessIdParameter: ext({
    name: 'processId',
    in: 'path',
    required: true,
    type: 'string',
    minLength: 1,
    maxLength: 64,
    description: 'The process: its pid in the sandbox (digits), or its tag (the running process with that tag, else the last one started).',
    'x-ms-parameter-location': 'method',
  }),
  ProcessOffsetParameter: ext({
    name: 'offset',
    in: 'query',
    required: false,
    type: 'integer',
    format: 'int64',
    minimum: 0,
    description: 'Byte offset of the output to start from (an event\'s id, to resume after it); default the oldest byte the host still holds.',
    'x-ms-parameter-location': 'method',
  }),
  WatchRecursiveParameter: ext({
    name: 'recursive',
    in: 'query',
    required: false,
    type: 'boolean',
    description: 'Also watch every directory below it (up to 16 levels and 1024 directories in all), including those made while the watch runs.',
    'x-ms-parameter-location': 'method',
  }),
  FilePathParameter: ext({
    name: 'path',
    in: 'query',
    required: true,
    type: 'string',
    minLength: 1,
    maxLength: 4096,
    description: 'Absolute path of the file or directory inside the sandbox.',
    'x-ms-parameter-location': 'method',
  }),
};

/* ---------- definitions ---------- */

const ISOLATION = enumOf('Isolation', [
  ['process', 'Namespaces, cgroups and a seccomp filter on the host kernel (the default).'],
  ['gvisor', 'The process driver behind gVisor\'s user-space kernel.'],
  ['microvm', 'A KVM microVM: hardware isolation.'],
], 'How a sandbox is isolated from its host.');

const LIFETIME_END_ACTION = enumOf('LifetimeEndAction', [
  ['Delete', 'The sandbox is deleted when maxLifetimeSeconds runs out (the default); its lifetime counts from its creation.'],
  ['Suspend', 'The sandbox is suspended when maxLifetimeSeconds runs out and kept; its lifetime counts from its creation or its last resume, so each resume (explicit, or by an exec into it) gives it maxLifetimeSeconds again.'],
], 'What happens to a sandbox when its maxLifetimeSeconds runs out.');

const HOST_FAILURE_POLICY = enumOf('HostFailurePolicy', [
  ['Fail', 'Sandboxes of a host that stops answering become Failed (the default); they come back if the host does.'],
  ['Recreate', 'Sandboxes of a host that stops answering are made again, fresh, on another host.'],
], 'What happens to the sandboxes of a host that stops answering.');

// What a sandbox is made of, as a group's defaults or a sandbox's own properties; the bounds
// are the ones the server enforces.
function sandboxShape() {
  return {
    image: { type: 'string', maxLength: 512, description: 'OCI image reference; without one anywhere, the embedded default image (a POSIX shell and python3) is used.' },
    cpu: { type: 'number', format: 'double', minimum: 0.05, maximum: 64, description: 'CPU cores (decimal, e.g. 0.5).' },
    memoryMiB: { type: 'integer', format: 'int32', minimum: 32, maximum: 262144, description: 'Memory limit in MiB.' },
    diskMiB: { type: 'integer', format: 'int32', minimum: 16, maximum: 65536, description: 'Writable disk limit in MiB (the writable layer lives in host memory).' },
    env: stringMap('Environment variables (at most 256; values at most 32768 characters).'),
    idleTimeoutSeconds: { type: 'integer', format: 'int32', minimum: 0, maximum: 2592000, description: 'Seconds without activity after which a sandbox is suspended; 0 turns auto-suspend off.' },
    maxLifetimeSeconds: { type: 'integer', format: 'int32', minimum: 0, maximum: 31536000, description: 'Seconds after which a sandbox is deleted (or suspended: lifetimeEndAction), whatever it does; 0 means no limit.' },
    lifetimeEndAction: def('LifetimeEndAction'),
    isolation: def('Isolation'),
  };
}

const DEFINITIONS = {
  SandboxGroup: {
    description: 'A SandboxGroup resource, representing a group of sandboxes that share configuration defaults and quotas.',
    type: 'object',
    properties: {
      properties: { $ref: '#/definitions/SandboxGroupProperties', description: 'The resource-specific properties for this resource.' },
      identity: ext({ $ref: MI + '#/definitions/ManagedServiceIdentity', description: 'The managed service identities assigned to this resource; sandboxes of the group may use them.' }),
    },
    allOf: [ct('TrackedResource')],
  },
  SandboxGroupProperties: {
    description: 'SandboxGroup resource specific properties.',
    type: 'object',
    properties: {
      environmentId: {
        type: 'string',
        format: 'arm-id',
        description: 'The resource ID of the Azure Container Apps environment to link to the sandbox group. A sandbox group can be linked after creation, but the link cannot then be changed or removed. For subsequent create-or-update (PUT) requests, specify the same environment ID; omitting or changing it returns 409 Conflict. Omitting it from an update (PATCH) request leaves the existing link unchanged. In sandboxd an environment names a pool of hosts.',
        'x-ms-arm-id-details': { allowedResources: [{ type: 'Microsoft.App/managedEnvironments' }] },
      },
      defaultDomain: {
        type: 'string',
        description: 'The default domain of the linked Azure Container Apps environment. Sandbox endpoints use subdomains of this domain. This read-only property is populated by the service and is omitted when no environment is linked.',
        readOnly: true,
      },
      provisioningState: def('SandboxGroupProvisioningState'),
      sandboxDefaults: ext({ $ref: '#/definitions/SandboxDefaults', description: 'Defaults for the sandboxes of the group, used where a sandbox does not say otherwise.' }),
      scale: ext({ $ref: '#/definitions/SandboxGroupScale', description: 'Limits and warm pool of the group.' }),
      egressPolicy: ext({ type: 'string', maxLength: 63, description: 'Name of a child egress policy applied to sandboxes that name none; without one, sandboxes reach nothing outside themselves.' }),
      hostFailurePolicy: def('HostFailurePolicy'),
      execPolicy: ext({ $ref: '#/definitions/ExecPolicy', description: 'What execs and process starts in the group\'s sandboxes may run.' }),
    },
  },
  SandboxGroupProvisioningState: provisioningState('SandboxGroup'),
  SandboxGroupPatch: {
    description: 'A SandboxGroup resource for use in patch requests.',
    type: 'object',
    properties: {
      tags: { type: 'object', description: 'Resource tags.', additionalProperties: { type: 'string' } },
      properties: { $ref: '#/definitions/SandboxGroupPatchProperties', description: 'SandboxGroup properties that can be updated.' },
      identity: ext({ $ref: MI + '#/definitions/ManagedServiceIdentity', description: 'The managed service identities assigned to this resource.' }),
    },
  },
  SandboxGroupPatchProperties: {
    description: 'SandboxGroup resource specific properties for patch requests.',
    type: 'object',
    properties: {
      environmentId: {
        type: 'string',
        format: 'arm-id',
        description: 'The resource ID of the Azure Container Apps environment to link to the sandbox group. Omitting it leaves the existing link unchanged.',
        'x-ms-arm-id-details': { allowedResources: [{ type: 'Microsoft.App/managedEnvironments' }] },
      },
      sandboxDefaults: ext({ $ref: '#/definitions/SandboxDefaults', description: 'Defaults for the sandboxes of the group.' }),
      scale: ext({ $ref: '#/definitions/SandboxGroupScale', description: 'Limits and warm pool of the group.' }),
      egressPolicy: ext({ type: 'string', maxLength: 63, description: 'Name of a child egress policy applied by default.' }),
      hostFailurePolicy: def('HostFailurePolicy'),
      execPolicy: ext({ $ref: '#/definitions/ExecPolicy', description: 'What execs and process starts in the group\'s sandboxes may run; omitting it leaves it unchanged.' }),
    },
  },
  SandboxGroupListResult: listResult('SandboxGroup'),
  SandboxDefaults: ext({
    description: 'Defaults applied to the sandboxes of a group.',
    type: 'object',
    properties: sandboxShape(),
  }),
  SandboxGroupScale: ext({
    description: 'Limits and warm pool of a sandbox group.',
    type: 'object',
    properties: {
      maxSandboxes: { type: 'integer', format: 'int32', minimum: 0, maximum: 100000, description: 'Most sandboxes the group may hold; creating one more is 409 MaxSandboxesReached.' },
      readySandboxes: { type: 'integer', format: 'int32', minimum: 0, maximum: 1000, description: 'Sandboxes kept started from the default image, ready to be handed out.' },
    },
  }),
  ExecPolicy: ext({
    description: 'Admission of execs and process starts: an allow list of executables, then an admission webhook. A start either refuses is 403 ExecDenied with the reason.',
    type: 'object',
    properties: {
      allowedExecutables: { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 4096 }, description: 'The commands that may start: absolute paths (matching a command given as that path) or names without a slash (matching a command given as that name, whichever file the sandbox\'s PATH makes it). Absent: any.' },
      webhook: { $ref: '#/definitions/ExecWebhook', description: 'Asked about every start the allow list lets through.' },
    },
  }),
  ExecWebhook: ext({
    description: 'An admission webhook: sandboxd POSTs {kind, subscriptionId, group, sandbox, command, envKeys, cwd?, language?, code?} (code: the program text of python -c, sh -c, node -e and the like) and expects 200 {"allow": bool, "reason": string}.',
    type: 'object',
    properties: {
      url: { type: 'string', maxLength: 2048, description: 'http or https URL, called from sandboxd without a proxy.' },
      timeoutMs: { type: 'integer', format: 'int32', minimum: 50, maximum: 30000, description: 'How long to wait for an answer (default 2000).' },
      failurePolicy: enumOf('ExecWebhookFailurePolicy', [
        ['Allow', 'A webhook that fails (no answer in time, an error, an answer that is not {"allow": bool}) lets the start go on.'],
        ['Deny', 'A webhook that fails refuses the start (the default).'],
      ], 'What a start gets when the webhook fails.'),
      secret: { type: 'string', minLength: 1, maxLength: 256, 'x-ms-secret': true, 'x-ms-mutability': ['create', 'update'], description: 'Write-only: each call carries X-Sandboxd-Signature: sha256=<hex HMAC-SHA256 of the body with it>. Absent in a PUT keeps the stored one; null removes it.' },
      hasSecret: { type: 'boolean', readOnly: true, description: 'Whether a secret is stored.' },
    },
  }),
  Isolation: ext(ISOLATION),
  HostFailurePolicy: ext(HOST_FAILURE_POLICY),
  LifetimeEndAction: ext(LIFETIME_END_ACTION),

  VnetConnection: {
    description: 'A virtual network connection associated with a SandboxGroup.',
    type: 'object',
    properties: {
      properties: { $ref: '#/definitions/VnetConnectionProperties', description: 'The resource-specific properties for this resource.' },
    },
    allOf: [ct('ProxyResource')],
  },
  VnetConnectionProperties: {
    description: 'VnetConnection resource specific properties.',
    type: 'object',
    properties: {
      provisioningState: def('VnetConnectionProvisioningState'),
      subnetId: {
        type: 'string',
        format: 'arm-id',
        description: 'Resource ID of the subnet that sandboxes in the parent SandboxGroup will be connected to. In sandboxd a subnet ID names a network that hosts advertise.',
        'x-ms-arm-id-details': { allowedResources: [{ type: 'Microsoft.Network/virtualNetworks/subnets' }] },
      },
    },
  },
  VnetConnectionProvisioningState: provisioningState('VnetConnection'),
  VnetConnectionListResult: listResult('VnetConnection'),

  Sandbox: ext({
    description: 'A sandbox: an isolated environment that runs untrusted code.',
    type: 'object',
    properties: {
      properties: { $ref: '#/definitions/SandboxProperties', description: 'The resource-specific properties for this resource.' },
    },
    allOf: [ct('ProxyResource')],
  }),
  SandboxProperties: ext({
    description: 'Sandbox resource specific properties. Every writable property is optional: the group\'s sandboxDefaults apply, then the server\'s.',
    type: 'object',
    properties: {
      ...sandboxShape(),
      egressPolicy: { type: 'string', maxLength: 63, description: 'Name of an egress policy of the group; without one (here or in the group), the sandbox reaches nothing outside itself.' },
      identity: { type: 'string', maxLength: 1024, description: 'Which of the group\'s identities the sandbox may use: "system" (or "SystemAssigned") for the group\'s system-assigned identity, or the ARM resource ID of one of the group\'s user-assigned identities; anything else is refused. Without one, the sandbox gets no tokens.' },
      secureEnv: {
        ...stringMap('Secret environment variables: write-only. Accepted on create, never returned (their names are in secureEnvNames), stored encrypted. A PUT without secureEnv keeps the stored values, so a GET-modify-PUT never wipes them; a PUT with it must give the same values as stored (like env, it is fixed once the sandbox exists). A name may not be in both env and secureEnv. Same limits as env.'),
        'x-ms-secret': true,
        'x-ms-mutability': ['create'],
      },
      secureEnvNames: { type: 'array', items: { type: 'string' }, readOnly: true, description: 'Names of the sandbox\'s secureEnv variables, sorted; their values are never returned.' },
      state: def('SandboxState'),
      provisioningState: def('SandboxProvisioningState'),
      host: { type: 'string', readOnly: true, description: 'Name of the host the sandbox runs on.' },
      createdAt: { type: 'string', format: 'date-time', readOnly: true, description: 'When the sandbox was created (UTC).' },
      lastActivityAt: { type: 'string', format: 'date-time', readOnly: true, description: 'When the sandbox last did something (UTC).' },
      lifetimeStartedAt: { type: 'string', format: 'date-time', readOnly: true, description: 'With lifetimeEndAction Suspend, when the sandbox was last resumed: its maxLifetimeSeconds counts from then (absent: from createdAt).' },
      statusMessage: { type: 'string', readOnly: true, description: 'Human-readable detail on the state, e.g. why it failed.' },
    },
  }),
  SandboxState: ext({
    ...enumOf('SandboxState', [
      ['Pending', 'Accepted, not yet placed on a host.'],
      ['Starting', 'Being started on its host.'],
      ['Running', 'Its processes are live.'],
      ['Suspending', 'Being suspended.'],
      ['Suspended', 'Suspended: frozen, or its memory saved to disk.'],
      ['Resuming', 'Being resumed.'],
      ['Stopping', 'Being stopped.'],
      ['Stopped', 'Stopped; its files are kept.'],
      ['Failed', 'Failed; see statusMessage.'],
    ], 'Runtime state of a sandbox.'),
    readOnly: true,
  }),
  SandboxProvisioningState: ext(provisioningState('Sandbox')),
  SandboxListResult: ext(listResult('Sandbox')),
  ExecRequest: ext({
    description: 'A command to run inside a sandbox.',
    type: 'object',
    properties: {
      command: { type: 'array', minItems: 1, maxItems: 4096, items: { type: 'string' }, description: 'Program and arguments, run without a shell (use ["sh", "-c", "..."] for one); the program is looked up in the sandbox\'s PATH.' },
      env: stringMap('Extra environment variables for this command.'),
      cwd: { type: 'string', description: 'Absolute working directory (default "/").' },
      stdin: { type: 'string', description: 'Bytes written to the command\'s standard input (UTF-8).' },
      user: { type: 'string', maxLength: 32, description: 'Who the command runs as: a user name of the sandbox or a uid (digits, 0..65535), resolved from the sandbox\'s own /etc/passwd and /etc/group (never the host\'s) into its uid, gid and supplementary groups; HOME, USER and LOGNAME are set from the entry unless env sets them. A uid with no entry runs with gid 0 and no other groups. Default "root": the sandbox\'s root, which holds no capabilities and is an unprivileged user of the host. A name the sandbox does not have is 400 UserNotFound. Every isolation honours it (gvisor through the runsc process spec, microvm through its guest agent).' },
      timeoutSeconds: { type: 'integer', format: 'int32', minimum: 1, maximum: 3600, description: 'Seconds (default 30) after which the command\'s process tree is killed and timedOut is true.' },
    },
    required: ['command'],
  }),
  ExecResult: ext({
    description: 'The outcome of a command run inside a sandbox.',
    type: 'object',
    properties: {
      exitCode: { type: 'integer', format: 'int32', description: 'Exit status of the command; -1 when a signal killed it (see signal).' },
      signal: { type: 'integer', format: 'int32', description: 'The signal that killed the command, when one did.' },
      stdout: { type: 'string', description: 'Standard output, at most 1 MiB; ill-formed UTF-8 replaced by U+FFFD (use files for binary data).' },
      stderr: { type: 'string', description: 'Standard error, at most 1 MiB; ill-formed UTF-8 replaced by U+FFFD.' },
      stdoutTruncated: { type: 'boolean', description: 'True when stdout was cut at the cap.' },
      stderrTruncated: { type: 'boolean', description: 'True when stderr was cut at the cap.' },
      timedOut: { type: 'boolean', description: 'True when the command was killed at timeoutSeconds.' },
      durationMs: { type: 'integer', format: 'int64', description: 'Wall-clock run time in milliseconds.' },
    },
    required: ['exitCode', 'stdout', 'stderr', 'timedOut', 'durationMs'],
  }),
  ProcessStartRequest: ext({
    description: 'A command to start in a sandbox, running on its own until it exits or is signalled, whoever is attached to it.',
    type: 'object',
    properties: {
      command: { type: 'array', minItems: 1, maxItems: 4096, items: { type: 'string' }, description: 'Program and arguments, run without a shell; the program is looked up in the sandbox\'s PATH.' },
      env: stringMap('Extra environment variables for this process.'),
      cwd: { type: 'string', description: 'Absolute working directory (default "/").' },
      user: { type: 'string', maxLength: 32, description: 'Who the command runs as: a user name of the sandbox or a uid (digits, 0..65535), resolved from the sandbox\'s own /etc/passwd and /etc/group (never the host\'s) into its uid, gid and supplementary groups; HOME, USER and LOGNAME are set from the entry unless env sets them. A uid with no entry runs with gid 0 and no other groups. Default "root": the sandbox\'s root, which holds no capabilities and is an unprivileged user of the host. A name the sandbox does not have is 400 UserNotFound. Every isolation honours it (gvisor through the runsc process spec, microvm through its guest agent).' },
      tag: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z_][A-Za-z0-9_.-]{0,63}$', description: 'A name to find the process by; unique among the sandbox\'s running processes.' },
      stdin: { type: 'boolean', description: 'Keep stdin open for .../stdin (default false: stdin is at its end at once).' },
      pty: {
        type: 'object',
        description: 'Run on a terminal of this size (stdin, stdout and stderr are the terminal; its output comes as pty events).',
        properties: {
          rows: { type: 'integer', format: 'int32', minimum: 1, maximum: 1000, description: 'Rows (default 24).' },
          cols: { type: 'integer', format: 'int32', minimum: 1, maximum: 1000, description: 'Columns (default 80).' },
        },
      },
      timeoutSeconds: { type: 'integer', format: 'int32', minimum: 1, maximum: 604800, description: 'Seconds after which the process tree is killed (default: none).' },
    },
    required: ['command'],
  }),
  Process: ext({
    description: 'A process started in a sandbox, running or ended (exit records are kept 10 minutes, at most 64 a sandbox).',
    type: 'object',
    properties: {
      pid: { type: 'integer', format: 'int32', description: 'Its pid in the sandbox.' },
      tag: { type: 'string', 'x-nullable': true, description: 'Its tag, or null.' },
      command: { type: 'array', items: { type: 'string' }, description: 'Program and arguments.' },
      pty: { type: 'boolean', description: 'Whether it runs on a terminal.' },
      running: { type: 'boolean', description: 'Whether it still runs.' },
      startedAt: { type: 'string', format: 'date-time', description: 'When it started.' },
      endedAt: { type: 'string', format: 'date-time', description: 'When it ended.' },
      exitCode: { type: 'integer', format: 'int32', description: 'Its exit status once ended; -1 when a signal killed it (see signal) or its status was lost.' },
      signal: { type: 'integer', format: 'int32', description: 'The signal that killed it, when one did.' },
      timedOut: { type: 'boolean', description: 'True when it was killed at timeoutSeconds.' },
      statusLost: { type: 'boolean', description: 'True when its exit status could not be known.' },
      output: {
        type: 'object',
        description: 'The output the host holds: byte offsets [start, end) of the last 1 MiB of stdout and stderr (or the terminal) together.',
        properties: {
          start: { type: 'integer', format: 'int64', description: 'Offset of the oldest byte held; bytes before it are gone.' },
          end: { type: 'integer', format: 'int64', description: 'Offset after the newest byte.' },
        },
      },
    },
    required: ['pid', 'command', 'running', 'startedAt'],
  }),
  ProcessListResult: ext({
    description: 'The processes of a sandbox.',
    type: 'object',
    properties: {
      value: { type: 'array', items: def('Process'), description: 'The processes, running and ended.' },
      nextLink: { type: 'string', description: 'Never set: one page holds them all.' },
    },
    required: ['value'],
  }),
  ProcessStdinRequest: ext({
    description: 'Bytes for a process\'s stdin (data or dataBase64), and whether that is the end of it.',
    type: 'object',
    properties: {
      data: { type: 'string', description: 'Text to write (UTF-8).' },
      dataBase64: { type: 'string', description: 'Bytes to write, base64-encoded.' },
      eof: { type: 'boolean', description: 'Close stdin after writing (on a terminal: send ^D).' },
    },
  }),
  ProcessStdinResult: ext({
    description: 'What was written to a process\'s stdin.',
    type: 'object',
    properties: { written: { type: 'integer', format: 'int64', description: 'Bytes written.' } },
    required: ['written'],
  }),
  ProcessSignalRequest: ext({
    description: 'A signal for a process (sent to its process group; SIGKILL also ends everything it started).',
    type: 'object',
    properties: {
      signal: { type: 'string', description: 'A name (SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT, SIGSTOP, SIGTSTP, SIGWINCH, SIGALRM; SIG optional) or a number 1..64 as a JSON number.' },
    },
    required: ['signal'],
  }),
  ProcessResizeRequest: ext({
    description: 'A new size for a process\'s terminal.',
    type: 'object',
    properties: {
      rows: { type: 'integer', format: 'int32', minimum: 1, maximum: 1000, description: 'Height of the terminal in lines.' },
      cols: { type: 'integer', format: 'int32', minimum: 1, maximum: 1000, description: 'Width of the terminal in characters.' },
    },
    required: ['rows', 'cols'],
  }),
  FileEntry: ext({
    description: 'One entry of a directory inside a sandbox.',
    type: 'object',
    properties: {
      name: { type: 'string', description: 'Name of the entry (no directory part).' },
      type: enumOf('FileType', [
        ['file', 'A regular file.'],
        ['dir', 'A directory.'],
        ['symlink', 'A symbolic link (not followed).'],
        ['other', 'Anything else (device, socket, fifo).'],
      ], 'Kind of the entry.'),
      size: { type: 'integer', format: 'int64', description: 'Size in bytes.' },
      mode: { type: 'integer', format: 'int32', minimum: 0, maximum: 4095, description: 'Permission bits as a number, e.g. 420 for 0644.' },
      modifiedAt: { type: 'string', format: 'date-time', description: 'Last modification time (UTC).' },
    },
    required: ['name', 'type'],
  }),
  EgressDecision: ext({
    description: 'One decision the sandbox\'s host took on a connection or a name the sandbox asked for.',
    type: 'object',
    properties: {
      time: { type: 'string', format: 'date-time', description: 'When (UTC).' },
      destination: { type: 'string', description: 'The name asked for (TLS SNI, HTTP Host or DNS question); empty when none was seen.' },
      address: { type: 'string', description: 'The IPv4 or IPv6 address connected to or asked for (for a DNS question, the first address answered); empty when none.' },
      port: { type: 'integer', format: 'int32', minimum: 0, maximum: 65535, description: 'Destination port (0 when none).' },
      protocol: enumOf('EgressProtocol', [
        ['tcp', 'A TCP connection.'], ['udp', 'A UDP datagram.'], ['icmp', 'An ICMP packet.'],
        ['icmpv6', 'An ICMPv6 packet.'], ['ip', 'Another IP protocol.'],
        ['dns', 'A question to the sandbox\'s resolver over UDP.'],
        ['dns-tcp', 'A question to the sandbox\'s resolver over TCP.']], 'What was tried.'),
      rule: { type: 'string', 'x-nullable': true, description: 'Name of the rule that decided; null when the default action (or a fixed denial) did.' },
      action: def('EgressAction'),
      reason: { type: 'string', description: 'Why, in words (e.g. "TLS SNI", "no rule allows this name", "no policy reaches the host itself").' },
    },
    required: ['time', 'destination', 'address', 'port', 'protocol', 'action', 'reason'],
  }),
  EgressDecisions: ext({
    description: 'What the sandbox\'s egress policy decided: counters since the sandbox was placed on its host, and the latest decisions of each kind (newest first, at most 50 each). Packet-level denials are sampled (at most 100 a second per rule).',
    type: 'object',
    properties: {
      allowed: { type: 'integer', format: 'int64', description: 'Decisions that allowed (by the proxy and the resolver; connections a CIDR rule lets through directly are not counted).' },
      denied: { type: 'integer', format: 'int64', description: 'Decisions that denied.' },
      recentAllowed: { type: 'array', items: def('EgressDecision'), description: 'The latest allowed decisions.', 'x-ms-identifiers': [] },
      recentDenied: { type: 'array', items: def('EgressDecision'), description: 'The latest denied decisions.', 'x-ms-identifiers': [] },
      policy: { type: 'object', 'x-nullable': true, description: 'The policy the host enforces now ({defaultAction, rules}); null when none.' },
      enforced: { type: 'boolean', description: 'False when the host does not enforce egress (no egress pool configured): the sandbox then reaches nothing.' },
    },
    required: ['allowed', 'denied', 'recentAllowed', 'recentDenied'],
  }),
  SandboxMetrics: ext({
    description: 'What a sandbox uses now, as its host reports it. CPU time is cumulative: a rate takes two readings.',
    type: 'object',
    properties: {
      timestamp: { type: 'string', format: 'date-time', description: 'When the reading was taken (UTC).' },
      cpu: { type: 'number', format: 'double', description: 'The CPU cores the sandbox may use.' },
      cpuUsedMicroseconds: { type: 'integer', format: 'int64', description: 'CPU time its processes have used, in microseconds, since it was started on its host.' },
      memoryUsedBytes: { type: 'integer', format: 'int64', description: 'Memory charged to it (its processes, page cache and writable layer).' },
      memoryLimitBytes: { type: 'integer', format: 'int64', description: 'Its memory limit.' },
      diskUsedBytes: { type: 'integer', format: 'int64', description: 'Bytes used in its writable layer; 0 where the layer is not a file system of its own (gvisor, microvm).' },
      diskLimitBytes: { type: 'integer', format: 'int64', description: 'Size of its writable layer; 0 as for diskUsedBytes.' },
    },
    required: ['timestamp', 'cpu', 'cpuUsedMicroseconds', 'memoryUsedBytes', 'memoryLimitBytes', 'diskUsedBytes', 'diskLimitBytes'],
  }),
  FileWriteResult: ext({
    description: 'What a file write stored.',
    type: 'object',
    properties: {
      path: { type: 'string', description: 'Absolute path of the file inside the sandbox.' },
      size: { type: 'integer', format: 'int64', description: 'Bytes written.' },
    },
    required: ['path', 'size'],
  }),
  FileListResult: ext({
    description: 'The entries of a directory inside a sandbox.',
    type: 'object',
    properties: {
      value: { type: 'array', description: 'The entries.', items: def('FileEntry'), 'x-ms-identifiers': ['name'] },
      nextLink: { type: 'string', format: 'uri', description: 'The link to the next page of entries' },
    },
    required: ['value'],
  }),

  EgressPolicy: ext({
    description: 'An egress policy: what sandboxes that use it may reach outside themselves.',
    type: 'object',
    properties: {
      properties: { $ref: '#/definitions/EgressPolicyProperties', description: 'The resource-specific properties for this resource.' },
    },
    allOf: [ct('ProxyResource')],
  }),
  EgressPolicyProperties: ext({
    description: 'EgressPolicy resource specific properties. Rules are tried in order; the first that matches decides, and defaultAction decides the rest.',
    type: 'object',
    properties: {
      defaultAction: def('EgressAction'),
      rules: { type: 'array', maxItems: 100, description: 'Ordered rules (at most 100).', items: def('EgressRule'), 'x-ms-identifiers': ['name'] },
      provisioningState: def('EgressPolicyProvisioningState'),
    },
  }),
  EgressAction: ext({
    ...enumOf('EgressAction', [['Allow', 'Let the traffic through.'], ['Deny', 'Drop the traffic.']],
      'What happens to matching traffic. The default action of a policy is Deny unless Allow is written explicitly.'),
  }),
  EgressRule: ext({
    description: 'One egress rule: traffic to any of the FQDNs or CIDRs, on any of the ports (all ports when none are given).',
    type: 'object',
    properties: {
      name: { type: 'string', pattern: NAME_PATTERN, description: 'Name of the rule, unique in its policy (compared case-insensitively); the same rule as resource names.' },
      action: def('EgressAction'),
      fqdns: { type: 'array', maxItems: 100, items: { type: 'string' }, description: 'Host names; a leading "*." matches any subdomain, e.g. "*.githubusercontent.com".' },
      cidrs: { type: 'array', maxItems: 100, items: { type: 'string' }, description: 'IPv4 or IPv6 address ranges, e.g. "10.0.0.0/8" or "2001:db8::/32"; a bare address is a single host. IPv4 ranges match only IPv4 traffic and IPv6 ranges only IPv6, so a rule with IPv4 ranges alone allows no IPv6. Unique local IPv6 (fc00::/7) is reached only through a range that names it, never through a rule without CIDRs or the default action; loopback, link-local, multicast, IPv4-mapped and NAT64 IPv6, cloud metadata addresses and other sandboxes are never reached.' },
      ports: { type: 'array', maxItems: 100, items: { type: 'integer', format: 'int32', minimum: 1, maximum: 65535 }, description: 'Destination TCP/UDP ports.' },
    },
    required: ['name', 'action'],
  }),
  EgressPolicyProvisioningState: ext(provisioningState('EgressPolicy')),
  EgressPolicyListResult: ext(listResult('EgressPolicy')),
};

/* ---------- operations ---------- */

const api = ctParam('ApiVersionParameter');
const sub = ctParam('SubscriptionIdParameter');
const rg = ctParam('ResourceGroupNameParameter');
const groupName = param('SandboxGroupNameParameter');

function op(o) {
  const out = {
    operationId: o.id,
    tags: [o.id.split('_')[0]],
    description: o.description,
    parameters: o.parameters,
    responses: { ...o.responses, default: DEFAULT_ERROR },
  };
  if (o.consumes) out.consumes = o.consumes;
  if (o.produces) out.produces = o.produces;
  if (o.lro) {
    out['x-ms-long-running-operation-options'] = { 'final-state-via': o.lro };
    out['x-ms-long-running-operation'] = true;
  }
  if (o.pageable) out['x-ms-pageable'] = { nextLinkName: 'nextLink' };
  out['x-ms-examples'] = { [o.exampleTitle]: { $ref: './examples/' + o.id + '.json' } };
  if (o.ext) ext(out);
  return out;
}

function body(name, schemaName, description) {
  return { name, in: 'body', description, required: true, schema: def(schemaName) };
}

// The CRUD operations of one child resource kind of a sandbox group.
function childOperations(c) {
  const item = GROUP + '/' + c.segment + '/{' + c.param + '}';
  const list = GROUP + '/' + c.segment;
  const named = [api, sub, rg, groupName, param(c.paramDef)];
  const putResponses = c.putAsync
    ? { 200: ok(def(c.type), H_ETAG), 201: created(def(c.type), { ...H_ETAG, ...H_ASYNC, ...H_RETRY }) }
    : { 200: ok(def(c.type), H_ETAG), 201: created(def(c.type), H_ETAG) };
  const deleteResponses = c.deleteAsync
    ? { 202: accepted({ ...H_LOCATION, ...H_ASYNC, ...H_RETRY }), 204: noContent('Resource does not exist.') }
    : { 200: noContent('Resource deleted successfully.'), 204: noContent('Resource does not exist.') };
  return {
    [list]: {
      get: op({
        id: c.plural + '_ListBySandboxGroup', ext: c.ext, pageable: true,
        description: 'List all ' + c.type + 's in the specified SandboxGroup.',
        exampleTitle: 'List the ' + c.plural + ' of a SandboxGroup',
        parameters: [api, sub, rg, groupName],
        responses: { 200: ok(def(c.type + 'ListResult')) },
      }),
    },
    [item]: {
      get: op({
        id: c.plural + '_Get', ext: c.ext,
        description: 'Get the properties of ' + article(c.type) + '.',
        exampleTitle: 'Get ' + article(c.type),
        parameters: named,
        responses: { 200: ok(def(c.type), H_ETAG) },
      }),
      put: op({
        id: c.plural + '_CreateOrUpdate', ext: c.ext, lro: c.putAsync ? 'azure-async-operation' : undefined,
        description: 'Create or update ' + article(c.type) + '.' + (c.putDescription || ''),
        exampleTitle: 'Create or update ' + article(c.type),
        parameters: [...named, param('IfMatchParameter'), param('IfNoneMatchParameter'),
          body('resource', c.type, 'Resource create parameters.')],
        responses: putResponses,
      }),
      delete: op({
        id: c.plural + '_Delete', ext: c.ext, lro: c.deleteAsync ? 'location' : undefined,
        description: 'Delete ' + article(c.type) + '.',
        exampleTitle: 'Delete ' + article(c.type),
        parameters: [...named, param('IfMatchParameter')],
        responses: deleteResponses,
      }),
    },
  };
}

// suspend, resume, stop, start: answered once the host has done it, with the sandbox as it
// now is (also when it already was in that state).
function sandboxAction(verb, description) {
  const Verb = verb[0].toUpperCase() + verb.slice(1);
  return {
    [SANDBOX + '/' + verb]: {
      post: op({
        id: 'Sandboxes_' + Verb, ext: true,
        description,
        exampleTitle: Verb + ' a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter')],
        responses: { 200: ok(def('Sandbox'), H_ETAG) },
      }),
    },
  };
}

function paths() {
  const group = [api, sub, rg, groupName];
  const p = {
    '/providers/Microsoft.App/operations': {
      get: op({
        id: 'Operations_List', pageable: true,
        description: 'List the operations for the provider',
        exampleTitle: 'List the operations of Microsoft.App',
        parameters: [api],
        responses: { 200: ok(ct('OperationListResult')) },
      }),
    },
    [SUB + '/providers/Microsoft.App/sandboxGroups']: {
      get: op({
        id: 'SandboxGroups_ListBySubscription', pageable: true,
        description: 'Get all SandboxGroups for a subscription.',
        exampleTitle: 'List the SandboxGroups of a subscription',
        parameters: [api, sub],
        responses: { 200: ok(def('SandboxGroupListResult')) },
      }),
    },
    [SUB + '/providers/Microsoft.App/locations/{location}/operationStatuses/{operationId}']: {
      get: op({
        id: 'OperationStatuses_Get', ext: true,
        description: 'Get the status of an asynchronous operation: the URL given in Azure-AsyncOperation.',
        exampleTitle: 'Get the status of an operation',
        parameters: [api, sub, ctParam('LocationParameter'), ctParam('OperationIdParameter')],
        responses: { 200: ok(ct('OperationStatusResult')) },
      }),
    },
    [SUB + '/providers/Microsoft.App/locations/{location}/operationResults/{operationId}']: {
      get: op({
        id: 'OperationResults_Get', ext: true,
        description: 'Poll an asynchronous operation: the URL given in Location. 202 while it runs, 204 once it succeeded, and the operation\'s error (with its status) if it failed.',
        exampleTitle: 'Poll an operation',
        parameters: [api, sub, ctParam('LocationParameter'), ctParam('OperationIdParameter')],
        responses: {
          202: accepted({ ...H_LOCATION, ...H_ASYNC, ...H_RETRY }),
          204: noContent('The operation succeeded.'),
        },
      }),
    },
    [GROUPS]: {
      get: op({
        id: 'SandboxGroups_ListByResourceGroup', pageable: true,
        description: 'Get all SandboxGroups in a resource group.',
        exampleTitle: 'List the SandboxGroups of a resource group',
        parameters: [api, sub, rg],
        responses: { 200: ok(def('SandboxGroupListResult')) },
      }),
    },
    [GROUP]: {
      get: op({
        id: 'SandboxGroups_Get',
        description: 'Get the properties of a SandboxGroup.',
        exampleTitle: 'Get a SandboxGroup',
        parameters: group,
        responses: { 200: ok(def('SandboxGroup'), H_ETAG) },
      }),
      put: op({
        id: 'SandboxGroups_CreateOrUpdate', lro: 'azure-async-operation',
        description: 'Create or update a SandboxGroup.',
        exampleTitle: 'Create or update a SandboxGroup',
        parameters: [...group, param('IfMatchParameter'), param('IfNoneMatchParameter'),
          body('resource', 'SandboxGroup', 'Resource create parameters.')],
        responses: {
          200: ok(def('SandboxGroup'), H_ETAG),
          201: created(def('SandboxGroup'), { ...H_ETAG, ...H_ASYNC, ...H_RETRY }),
        },
      }),
      patch: op({
        id: 'SandboxGroups_Update', lro: 'location',
        description: 'Patches a SandboxGroup.',
        exampleTitle: 'Update a SandboxGroup',
        parameters: [...group, param('IfMatchParameter'),
          body('properties', 'SandboxGroupPatch', 'The resource properties to be updated.')],
        responses: {
          200: ok(def('SandboxGroup'), H_ETAG),
          202: accepted({ ...H_LOCATION, ...H_ASYNC, ...H_RETRY }),
        },
      }),
      delete: op({
        id: 'SandboxGroups_Delete', lro: 'location',
        description: 'Delete a SandboxGroup.',
        exampleTitle: 'Delete a SandboxGroup',
        parameters: [...group, param('IfMatchParameter')],
        responses: {
          202: accepted({ ...H_LOCATION, ...H_ASYNC, ...H_RETRY }),
          204: noContent('Resource does not exist.'),
        },
      }),
    },
    ...childOperations({
      type: 'VnetConnection', plural: 'VnetConnections', segment: 'vnetConnections',
      param: 'vnetConnectionName', paramDef: 'VnetConnectionNameParameter',
      putAsync: false, deleteAsync: true,
    }),
    ...childOperations({
      type: 'Sandbox', plural: 'Sandboxes', segment: 'sandboxes', ext: true,
      param: 'sandboxName', paramDef: 'SandboxNameParameter',
      putAsync: true, deleteAsync: true,
      putDescription: ' A created sandbox starts Pending and is placed on a host asynchronously; a PUT to an existing sandbox changes only what can change without recreating it.',
    }),
    [SANDBOX + '/exec']: {
      post: op({
        id: 'Sandboxes_Exec', ext: true,
        description: 'Run a command inside a sandbox and wait for it. A suspended sandbox is resumed first; a stopped one is 409. With Accept: text/event-stream the reply is instead the command\'s output as it is produced, the events of Sandboxes_StreamProcess (the command is a process of the sandbox, listed with the others), and timeoutSeconds kills it as here.',
        exampleTitle: 'Run a command in a Sandbox',
        produces: ['application/json', 'text/event-stream'],
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'),
          body('body', 'ExecRequest', 'The command to run.')],
        responses: { 200: ok(def('ExecResult')) },
      }),
    },
    [SANDBOX + '/processes']: {
      get: op({
        id: 'Sandboxes_ListProcesses', ext: true, pageable: true,
        description: 'List the processes started in a sandbox (through processes or a streamed exec), running and ended.',
        exampleTitle: 'List the processes of a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter')],
        responses: { 200: ok(def('ProcessListResult')) },
      }),
      post: op({
        id: 'Sandboxes_StartProcess', ext: true,
        description: 'Start a process in a sandbox and return once it runs. A suspended sandbox is resumed first; a stopped one is 409; a command that is not there is 400 CommandNotFound; at most 64 run at once in a sandbox (409 TooManyProcesses); a tag a running process has is 409 ProcessTagConflict.',
        exampleTitle: 'Start a process in a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'),
          body('body', 'ProcessStartRequest', 'The process to start.')],
        responses: { 201: { description: 'The process runs.', schema: def('Process') } },
      }),
    },
    [SANDBOX + '/processes/{processId}']: {
      get: op({
        id: 'Sandboxes_GetProcess', ext: true,
        description: 'A process of a sandbox, by pid or tag.',
        exampleTitle: 'Get a process of a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('ProcessIdParameter')],
        responses: { 200: ok(def('Process')) },
      }),
    },
    [SANDBOX + '/processes/{processId}/stream']: {
      get: op({
        id: 'Sandboxes_StreamProcess', ext: true,
        description: 'Attach to a process\'s output, from any offset the host still holds, until it ends: a text/event-stream of the output as it is produced. Events: start {pid}; stdout, stderr and pty {data: base64 bytes}, each with id the byte offset after it; gap {from, to} for output dropped before this reader took it; exit {exitCode, signal?, timedOut, statusLost?, endedAt}, the last. A comment line comes every 15 s while the process is silent. A slow reader slows the stream (and, while it is a whole 1 MiB ring behind, the process\'s writes); one that takes nothing for 10 s stops holding the process back. Closing the stream never ends the process; an ended process\'s stream sends what is held and its exit. WebSocket (RFC 6455): the same GET with Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key is answered 101 Switching Protocols (a malformed handshake 400, another version 426; an unknown process 404 before any upgrade). Server to client: binary frames of one stream tag byte (1 stdout, 2 stderr, 3 pty) then the output bytes; text frames of JSON {type: start|gap|exit|error, ...} with the fields of the events above (error: {status, error: {code, message}} for a refused message; the session goes on); after exit a close frame 1000. Client to server (frames must be masked): binary frames are stdin bytes; text frames are JSON {type: stdin, data | dataBase64}, {type: eof}, {type: resize, rows, cols} or {type: signal, signal}. Messages are at most 256 KiB (1009 beyond); unmasked frames, unknown opcodes, reserved bits and broken fragmentation are closed with 1002, text that is not UTF-8 with 1007. The server answers pings, sends one after 20 s without a frame from the client and closes (1001) after 60 s without. A slow reader slows the stream as above; a client that leaves, with or without a close, never ends the process.',
        exampleTitle: 'Attach to a process of a Sandbox',
        produces: ['text/event-stream', 'application/json'],
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('ProcessIdParameter'), param('ProcessOffsetParameter')],
        responses: { 200: ok({ type: 'string' }) },
      }),
    },
    [SANDBOX + '/processes/{processId}/stdin']: {
      post: op({
        id: 'Sandboxes_ProcessStdin', ext: true,
        description: 'Write to a process\'s stdin (started with stdin true or a pty): 409 StdinClosed once it is closed, 503 StdinBlocked when the process takes none of it for 10 s.',
        exampleTitle: 'Write to the stdin of a process of a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('ProcessIdParameter'),
          body('body', 'ProcessStdinRequest', 'The bytes.')],
        responses: { 200: ok(def('ProcessStdinResult')) },
      }),
    },
    [SANDBOX + '/processes/{processId}/signal']: {
      post: op({
        id: 'Sandboxes_SignalProcess', ext: true,
        description: 'Send a signal to a running process (its process group); 409 ProcessEnded once it has ended.',
        exampleTitle: 'Signal a process of a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('ProcessIdParameter'),
          body('body', 'ProcessSignalRequest', 'The signal.')],
        responses: { 200: ok(def('Process')) },
      }),
    },
    [SANDBOX + '/processes/{processId}/resize']: {
      post: op({
        id: 'Sandboxes_ResizeProcess', ext: true,
        description: 'Resize a process\'s terminal (400 NoTerminal for a process started without one).',
        exampleTitle: 'Resize the terminal of a process of a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('ProcessIdParameter'),
          body('body', 'ProcessResizeRequest', 'The new size.')],
        responses: { 200: ok(def('Process')) },
      }),
    },
    ...sandboxAction('suspend', 'Suspend a sandbox: it keeps its state and stops using CPU.'),
    ...sandboxAction('resume', 'Resume a suspended sandbox.'),
    ...sandboxAction('stop', 'Stop a sandbox: its processes end; its files are kept.'),
    ...sandboxAction('start', 'Start a stopped sandbox.'),
    [SANDBOX + '/egressDecisions']: {
      get: op({
        id: 'Sandboxes_GetEgressDecisions', ext: true,
        description: 'What the sandbox\'s egress policy allowed and denied lately, and by which rule, so a failed call can be explained.',
        exampleTitle: 'Egress decisions of a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter')],
        responses: { 200: ok(def('EgressDecisions')) },
      }),
    },
    [SANDBOX + '/watch']: {
      get: op({
        id: 'Sandboxes_WatchDirectory', ext: true,
        description: 'Watch a directory inside a sandbox: a text/event-stream of its changes as they happen. Events: start {}; fs {name, type, isDir} with name relative to the directory and type create | write (a file closed after writing) | remove | rename (once for the old name, once for the new) | chmod; overflow {} when the host dropped events; end {reason} when the directory itself is removed or moved, or the sandbox is deleted, the last. A comment line comes every 15 s while nothing happens. The directory is resolved inside the sandbox\'s root; 404 when it is not there. Reading names inside the sandbox needs the same right as reading files. A sandbox has at most 16 watches open at once; one more is refused with 429 TooManyWatches.',
        exampleTitle: 'Watch a directory of a Sandbox',
        produces: ['text/event-stream', 'application/json'],
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('FilePathParameter'), param('WatchRecursiveParameter')],
        responses: { 200: ok({ type: 'string' }) },
      }),
    },
    [SANDBOX + '/metrics']: {
      get: op({
        id: 'Sandboxes_GetMetrics', ext: true,
        description: 'What the sandbox uses now: CPU time, memory and its writable layer, read from its host.',
        exampleTitle: 'Metrics of a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter')],
        responses: { 200: ok(def('SandboxMetrics')) },
      }),
    },
    [SANDBOX + '/files']: {
      get: op({
        id: 'Sandboxes_GetFile', ext: true,
        description: 'Read a file inside a sandbox.',
        exampleTitle: 'Read a file of a Sandbox',
        produces: ['application/octet-stream', 'application/json'],
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('FilePathParameter')],
        responses: { 200: ok({ type: 'file' }) },
      }),
      put: op({
        id: 'Sandboxes_PutFile', ext: true,
        description: 'Write a file inside a sandbox, creating or replacing it (parent directories must exist).',
        exampleTitle: 'Write a file of a Sandbox',
        consumes: ['application/octet-stream'],
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('FilePathParameter'),
          { name: 'content', in: 'body', required: true, description: 'The bytes of the file.', schema: { type: 'string', format: 'binary' } }],
        responses: { 201: { description: 'The file was written.', schema: def('FileWriteResult') } },
      }),
      delete: op({
        id: 'Sandboxes_DeleteFile', ext: true,
        description: 'Remove a file (or an empty directory) inside a sandbox; removing what does not exist succeeds too.',
        exampleTitle: 'Remove a file of a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('FilePathParameter')],
        responses: { 204: noContent('The file is gone.') },
      }),
    },
    ...childOperations({
      type: 'EgressPolicy', plural: 'EgressPolicies', segment: 'egressPolicies', ext: true,
      param: 'egressPolicyName', paramDef: 'EgressPolicyNameParameter',
      putAsync: false, deleteAsync: true,
    }),
  };
  return p;
}

// Operations whose path differs from another only in its query (swagger 2 allows one
// operation per path and method).
function xmsPaths() {
  return {
    [SANDBOX + '/files?list=true']: {
      get: op({
        id: 'Sandboxes_ListFiles', ext: true, pageable: true,
        description: 'List a directory inside a sandbox.',
        exampleTitle: 'List a directory of a Sandbox',
        parameters: [api, sub, rg, groupName, param('SandboxNameParameter'), param('FilePathParameter')],
        responses: { 200: ok(def('FileListResult')) },
      }),
    },
  };
}

const ERROR_CODES = [
  ['MissingApiVersionParameter', 400, 'the api-version query parameter is missing'],
  ['InvalidApiVersionParameter', 400, 'the api-version is not one this server serves'],
  ['InvalidSubscriptionId', 400, 'the subscription ID is not a GUID'],
  ['InvalidResourceGroupName', 400, 'the resource group name breaks ARM\'s rule'],
  ['InvalidResourceName', 400, 'a name in the path breaks the naming rule'],
  ['InvalidRequestContent', 400, 'the body is not JSON, or a value has the wrong type or is out of range'],
  ['InvalidParameter', 400, 'a query parameter (e.g. $top) is not valid'],
  ['InvalidUrl', 400, 'the URL carries %00 (a NUL), which no name or path may contain'],
  ['InvalidPath', 400, 'the files API\'s path is missing, not absolute or too long'],
  ['CommandNotFound', 400, 'the command is not in the sandbox'],
  ['CommandNotExecutable', 400, 'the command is not an executable file'],
  ['NoTerminal', 400, 'the process runs without a terminal'],
  ['UserNotFound', 400, 'the user is not in the sandbox\'s /etc/passwd (or its uid or gid is outside 0..65535)'],
  ['InvalidWebSocketRequest', 400, 'a WebSocket handshake on a process stream is malformed (not a GET, no Connection: Upgrade, a bad Sec-WebSocket-Key)'],
  ['UnsupportedWebSocketVersion', 426, 'a WebSocket handshake asks for a version other than 13'],
  ['ImageNotFound', 400, 'the sandbox\'s image does not exist'],
  ['InvalidImage', 400, 'the sandbox\'s image cannot be used'],
  ['InvalidTags', 400, 'tags are not an object of strings, or break ARM\'s limits'],
  ['LocationRequired', 400, 'a tracked resource is created without a location'],
  ['BadRequest', 400, 'any other invalid request'],
  ['AuthenticationFailed', 401, 'no credentials were given'],
  ['InvalidAuthenticationToken', 401, 'the bearer token is not valid'],
  ['AuthorizationFailed', 403, 'the caller holds no role that allows the action at this scope'],
  ['Forbidden', 403, 'the caller may not do this'],
  ['ResourceNotFound', 404, 'the resource does not exist'],
  ['ParentResourceNotFound', 404, 'the parent (sandbox group) does not exist'],
  ['ProcessNotFound', 404, 'the sandbox has no process with that pid or tag (or its exit record is gone)'],
  ['SandboxNotFound', 404, 'the sandbox\'s host no longer has it'],
  ['FileNotFound', 404, 'no such file in the sandbox'],
  ['OperationNotFound', 404, 'no such asynchronous operation'],
  ['NotFound', 404, 'no such route'],
  ['MethodNotAllowed', 405, 'the route exists but not with this method'],
  ['Conflict', 409, 'the request conflicts with the resource\'s current state'],
  ['EnvironmentIdCannotChange', 409, 'a PUT omits or changes a linked environmentId'],
  ['PropertyCannotChange', 409, 'a PUT changes a property that is fixed once the resource exists'],
  ['InvalidResourceLocation', 409, 'a PUT changes the location of an existing resource'],
  ['ResourceDeleting', 409, 'the resource or its sandbox group is being deleted'],
  ['SandboxFailed', 409, 'the sandbox failed (its statusMessage says why); delete it and create another'],
  ['SandboxNotReady', 409, 'the sandbox is still being created'],
  ['SandboxDeleting', 409, 'the sandbox is being deleted'],
  ['ProcessTagConflict', 409, 'a running process of the sandbox has that tag'],
  ['TooManyProcesses', 409, 'the sandbox runs 64 processes, the most it may'],
  ['TooManyWatches', 429, 'the sandbox has 16 directory watches open, the most it may'],
  ['ProcessEnded', 409, 'the process has ended'],
  ['StdinClosed', 409, 'the process\'s stdin is closed'],
  ['ExecDenied', 403, 'the group\'s execPolicy refuses the command (its allow list or admission webhook); the message says why'],
  ['SandboxConflict', 409, 'the sandbox\'s host holds a different sandbox under its ID'],
  ['EgressPolicyInUse', 409, 'the egress policy is named by its group or by sandboxes (the message lists them)'],
  ['MaxSandboxesReached', 409, 'the group already holds scale.maxSandboxes sandboxes'],
  ['PreconditionFailed', 412, 'If-Match or If-None-Match did not hold'],
  ['RequestEntityTooLarge', 413, 'the body is larger than the server accepts'],
  ['UnsupportedMediaType', 415, 'the Content-Type is not one the operation consumes'],
  ['InternalServerError', 500, 'the server failed; the request may be retried'],
  ['SandboxCreateFailed', 0, 'the host refused the sandbox (in an operation\'s error)'],
  ['HostCallFailed', 502, 'the sandbox\'s host did not answer, or failed'],
  ['HostUnavailable', 503, 'the sandbox\'s host is down'],
  ['NoHostAvailable', 503, 'no host can take the sandbox (in an operation\'s error)'],
  ['InsufficientCapacity', 503, 'the hosts are full (in an operation\'s error)'],
  ['ServiceUnavailable', 503, 'no scheduler or host can serve the request now; retry later'],
  ['GatewayTimeout', 504, 'a host did not answer in time'],
  ['OperationFailed', 0, 'an asynchronous operation failed (in its status\' error, or from its operationResults URL)'],
];

function document(version) {
  const codes = ERROR_CODES.map(([c, s, why]) => '- `' + c + '`' + (s ? ' (' + s + ')' : '') + ': ' + why).join('\n');
  return {
    swagger: '2.0',
    info: {
      title: 'sandboxd',
      version,
      description: 'sandboxd: a self-hosted control plane for sandboxes running untrusted code, speaking the Azure Resource Manager protocol for Microsoft.App/sandboxGroups. sandboxGroups and vnetConnections follow Azure\'s published Microsoft.App contract; everything marked x-sandboxd-extension is sandboxd\'s own.\n\nErrors are `{"error":{"code","message","target"?,"details"?}}`. The stable error codes are:\n' + codes,
    },
    host: 'localhost',
    schemes: ['https'],
    consumes: ['application/json'],
    produces: ['application/json'],
    security: [{ azure_auth: ['user_impersonation'] }],
    securityDefinitions: {
      azure_auth: {
        type: 'oauth2',
        description: 'Azure Active Directory OAuth2 Flow. sandboxd takes a bearer token in the Authorization header.',
        flow: 'implicit',
        authorizationUrl: 'https://login.microsoftonline.com/common/oauth2/authorize',
        scopes: { user_impersonation: 'impersonate your user account' },
      },
    },
    tags: [
      { name: 'Operations' }, { name: 'OperationStatuses' }, { name: 'SandboxGroups' },
      { name: 'VnetConnections' }, { name: 'Sandboxes' }, { name: 'EgressPolicies' },
    ],
    'x-sandboxd-error-codes': ERROR_CODES.map(([code, status, why]) => ({ code, ...(status ? { status } : {}), description: why })),
    paths: paths(),
    'x-ms-paths': xmsPaths(),
    definitions: DEFINITIONS,
    parameters: PARAMETERS,
  };
}

/* ---------- examples ---------- */

const EX = {
  sub: '8f2c6b1e-3d4a-4e5f-9a0b-1c2d3e4f5a6b',
  rg: 'rg1',
  group: 'agents',
  location: 'local',
  time: '2026-07-01T10:00:00Z',
  time2: '2026-07-01T10:00:03Z',
  opid: '6b1f0c1e-2b7a-4f0e-9d57-0c5a0f3e8a11',
};
const groupId = () => '/subscriptions/' + EX.sub + '/resourceGroups/' + EX.rg + '/providers/Microsoft.App/sandboxGroups/' + EX.group;
const base = (version) => 'https://localhost/subscriptions/' + EX.sub + '/providers/Microsoft.App/locations/' + EX.location;
const asyncHeaders = (version, withLocation) => ({
  ...(withLocation ? { Location: base(version) + '/operationResults/' + EX.opid + '?api-version=' + version } : {}),
  'Azure-AsyncOperation': base(version) + '/operationStatuses/' + EX.opid + '?api-version=' + version,
  'Retry-After': '1',
});
const systemData = () => ({
  createdBy: 'dev@example.com', createdByType: 'User', createdAt: EX.time,
  lastModifiedBy: 'dev@example.com', lastModifiedByType: 'User', lastModifiedAt: EX.time,
});
const etag = '"0x8DCA1B2C3D4E5F6"';

function sandboxGroup(state) {
  return {
    id: groupId(), name: EX.group, type: 'Microsoft.App/sandboxGroups', location: EX.location,
    tags: { team: 'research' },
    identity: { type: 'SystemAssigned', principalId: '1a2b3c4d-0000-4000-8000-000000000001', tenantId: '1a2b3c4d-0000-4000-8000-000000000002' },
    systemData: systemData(),
    properties: {
      environmentId: '/subscriptions/' + EX.sub + '/resourceGroups/' + EX.rg + '/providers/Microsoft.App/managedEnvironments/pool-a',
      defaultDomain: 'pool-a.sandboxes.example.com',
      provisioningState: state,
      sandboxDefaults: { image: 'docker.io/library/python:3.12-slim', cpu: 0.5, memoryMiB: 512, diskMiB: 1024, env: { PIP_NO_CACHE_DIR: '1' }, idleTimeoutSeconds: 300, maxLifetimeSeconds: 86400, isolation: 'process' },
      scale: { maxSandboxes: 100, readySandboxes: 2 },
      egressPolicy: 'pypi-only',
    },
  };
}
const vnetConnection = (state) => ({
  id: groupId() + '/vnetConnections/vnet1', name: 'vnet1', type: 'Microsoft.App/sandboxGroups/vnetConnections', systemData: systemData(),
  properties: { provisioningState: state, subnetId: '/subscriptions/' + EX.sub + '/resourceGroups/' + EX.rg + '/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/sandboxes' },
});
const sandbox = (state, provisioning) => ({
  id: groupId() + '/sandboxes/sb1', name: 'sb1', type: 'Microsoft.App/sandboxGroups/sandboxes', systemData: systemData(),
  properties: {
    image: 'docker.io/library/python:3.12-slim', cpu: 0.5, memoryMiB: 256, env: { MODE: 'test' }, egressPolicy: 'pypi-only',
    identity: 'SystemAssigned', idleTimeoutSeconds: 300, maxLifetimeSeconds: 3600, lifetimeEndAction: 'Suspend', isolation: 'process', secureEnvNames: ['API_TOKEN'],
    state, provisioningState: provisioning, host: 'host-1', createdAt: EX.time, lastActivityAt: EX.time2,
    ...(state === 'Pending' ? {} : { statusMessage: state }),
  },
});
const egressPolicy = () => ({
  id: groupId() + '/egressPolicies/pypi-only', name: 'pypi-only', type: 'Microsoft.App/sandboxGroups/egressPolicies', systemData: systemData(),
  properties: {
    defaultAction: 'Deny',
    rules: [{ name: 'pypi', action: 'Allow', fqdns: ['pypi.org', 'files.pythonhosted.org'], ports: [443] },
      { name: 'internal', action: 'Deny', cidrs: ['10.0.0.0/8'] }],
    provisioningState: 'Succeeded',
  },
});
const writable = (r) => {
  // What a client sends: no read-only parts.
  const out = JSON.parse(JSON.stringify(r));
  for (const k of ['id', 'name', 'type', 'systemData']) delete out[k];
  if (out.identity) { delete out.identity.principalId; delete out.identity.tenantId; }
  if (out.properties) {
    for (const k of ['provisioningState', 'defaultDomain', 'state', 'host', 'createdAt', 'lastActivityAt', 'lifetimeStartedAt', 'statusMessage']) delete out.properties[k];
    if (out.properties.secureEnvNames) {
      // Sent as values, answered as names.
      out.properties.secureEnv = Object.fromEntries(out.properties.secureEnvNames.map((n) => [n, '<secret>']));
      delete out.properties.secureEnvNames;
    }
  }
  return out;
};

function examples(version, doc) {
  const titles = {};
  for (const section of [doc.paths, doc['x-ms-paths']]) {
    for (const ops of Object.values(section)) {
      for (const o of Object.values(ops)) titles[o.operationId] = Object.keys(o['x-ms-examples'])[0];
    }
  }
  const common = { 'api-version': version, subscriptionId: EX.sub, resourceGroupName: EX.rg, sandboxGroupName: EX.group };
  const sb = { ...common, sandboxName: 'sb1' };
  const ex = {};
  const add = (id, parameters, responses) => {
    if (!titles[id]) throw new Error('example for unknown operation ' + id);
    ex[id] = { title: titles[id], operationId: id, parameters, responses };
  };
  const list = (item) => ({ 200: { body: { value: [item] } } });

  add('Operations_List', { 'api-version': version }, {
    200: { body: { value: [{ name: 'Microsoft.App/sandboxGroups/read', isDataAction: false, display: { provider: 'Microsoft.App', resource: 'sandboxGroups', operation: 'Get SandboxGroup', description: 'Gets a SandboxGroup.' }, origin: 'user,system' }] } },
  });
  add('OperationStatuses_Get', { 'api-version': version, subscriptionId: EX.sub, location: EX.location, operationId: EX.opid }, {
    200: { body: { id: '/subscriptions/' + EX.sub + '/providers/Microsoft.App/locations/' + EX.location + '/operationStatuses/' + EX.opid, name: EX.opid, status: 'Succeeded', startTime: EX.time, endTime: EX.time2, percentComplete: 100 } },
  });
  add('OperationResults_Get', { 'api-version': version, subscriptionId: EX.sub, location: EX.location, operationId: EX.opid }, {
    202: { headers: asyncHeaders(version, true) },
    204: {},
  });
  add('SandboxGroups_ListBySubscription', { 'api-version': version, subscriptionId: EX.sub }, list(sandboxGroup('Succeeded')));
  add('SandboxGroups_ListByResourceGroup', { 'api-version': version, subscriptionId: EX.sub, resourceGroupName: EX.rg }, list(sandboxGroup('Succeeded')));
  add('SandboxGroups_Get', common, { 200: { headers: { ETag: etag }, body: sandboxGroup('Succeeded') } });
  add('SandboxGroups_CreateOrUpdate', { ...common, resource: writable(sandboxGroup('Succeeded')) }, {
    200: { headers: { ETag: etag }, body: sandboxGroup('Succeeded') },
    201: { headers: { ETag: etag, ...asyncHeaders(version, false) }, body: sandboxGroup('InProgress') },
  });
  add('SandboxGroups_Update', { ...common, properties: { tags: { team: 'research' }, properties: { scale: { maxSandboxes: 200 } } } }, {
    200: { headers: { ETag: etag }, body: sandboxGroup('Succeeded') },
    202: { headers: asyncHeaders(version, true) },
  });
  add('SandboxGroups_Delete', common, { 202: { headers: asyncHeaders(version, true) }, 204: {} });

  const vc = { ...common, vnetConnectionName: 'vnet1' };
  add('VnetConnections_ListBySandboxGroup', common, list(vnetConnection('Succeeded')));
  add('VnetConnections_Get', vc, { 200: { headers: { ETag: etag }, body: vnetConnection('Succeeded') } });
  add('VnetConnections_CreateOrUpdate', { ...vc, resource: writable(vnetConnection('Succeeded')) }, {
    200: { headers: { ETag: etag }, body: vnetConnection('Succeeded') },
    201: { headers: { ETag: etag }, body: vnetConnection('Succeeded') },
  });
  add('VnetConnections_Delete', vc, { 202: { headers: asyncHeaders(version, true) }, 204: {} });

  add('Sandboxes_ListBySandboxGroup', common, list(sandbox('Running', 'Succeeded')));
  add('Sandboxes_Get', sb, { 200: { headers: { ETag: etag }, body: sandbox('Running', 'Succeeded') } });
  add('Sandboxes_CreateOrUpdate', { ...sb, resource: writable(sandbox('Running', 'Succeeded')) }, {
    200: { headers: { ETag: etag }, body: sandbox('Running', 'Succeeded') },
    201: { headers: { ETag: etag, ...asyncHeaders(version, false) }, body: sandbox('Pending', 'InProgress') },
  });
  add('Sandboxes_Delete', sb, { 202: { headers: asyncHeaders(version, true) }, 204: {} });
  add('Sandboxes_Exec', { ...sb, body: { command: ['sh', '-c', 'echo hi'], env: {}, cwd: '/', stdin: '', timeoutSeconds: 30 } }, {
    200: { body: { exitCode: 0, stdout: 'hi\n', stderr: '', timedOut: false, durationMs: 3, stdoutTruncated: false, stderrTruncated: false } },
  });
  const proc = { pid: 7, tag: 'server', command: ['python3', '-m', 'http.server'], pty: false, running: true, startedAt: EX.time, output: { start: 0, end: 58 } };
  const ended = { ...proc, running: false, endedAt: EX.time2, exitCode: -1, signal: 15, timedOut: false };
  const pp = { ...sb, processId: 'server' };
  add('Sandboxes_ListProcesses', sb, list(proc));
  add('Sandboxes_StartProcess', { ...sb, body: { command: ['python3', '-m', 'http.server'], tag: 'server', env: {}, cwd: '/tmp' } }, { 201: { body: proc } });
  add('Sandboxes_GetProcess', pp, { 200: { body: proc } });
  add('Sandboxes_StreamProcess', { ...pp, offset: 0 }, {
    200: { body: 'event: start\ndata: {"pid":7}\n\nid: 58\nevent: stderr\ndata: {"data":"U2VydmluZyBIVFRQIG9uIDAuMC4wLjAgcG9ydCA4MDAwIC4uLgo="}\n\n' },
  });
  add('Sandboxes_ProcessStdin', { ...pp, body: { data: 'hello\n', eof: true } }, { 200: { body: { written: 6 } } });
  add('Sandboxes_SignalProcess', { ...pp, body: { signal: 'SIGTERM' } }, { 200: { body: ended } });
  add('Sandboxes_ResizeProcess', { ...sb, processId: 'shell', body: { rows: 50, cols: 120 } }, {
    200: { body: { ...proc, tag: 'shell', command: ['sh'], pty: true } },
  });
  const stateAfter = { Suspend: 'Suspended', Resume: 'Running', Stop: 'Stopped', Start: 'Running' };
  for (const verb of ['Suspend', 'Resume', 'Stop', 'Start']) {
    add('Sandboxes_' + verb, sb, { 200: { headers: { ETag: etag }, body: sandbox(stateAfter[verb], 'Succeeded') } });
  }
  add('Sandboxes_GetFile', { ...sb, path: '/tmp/a.txt' }, { 200: { body: 'hello\n' } });
  add('Sandboxes_PutFile', { ...sb, path: '/tmp/a.txt', content: 'hello\n' }, {
    201: { body: { path: '/tmp/a.txt', size: 6 } },
  });
  add('Sandboxes_DeleteFile', { ...sb, path: '/tmp/a.txt' }, { 204: {} });
  add('Sandboxes_ListFiles', { ...sb, path: '/tmp' }, {
    200: { body: { value: [{ name: 'a.txt', type: 'file', size: 6, mode: 420, modifiedAt: EX.time2 }, { name: 'data', type: 'dir', size: 4096, mode: 493, modifiedAt: EX.time }] } },
  });

  add('Sandboxes_WatchDirectory', { ...sb, path: '/tmp', recursive: true }, {
    200: { body: 'event: start\ndata: {}\n\nevent: fs\ndata: {"name":"a.txt","type":"create","isDir":false}\n\nevent: fs\ndata: {"name":"a.txt","type":"write","isDir":false}\n\n' },
  });
  add('Sandboxes_GetMetrics', sb, {
    200: { body: { timestamp: EX.time2, cpu: 0.5, cpuUsedMicroseconds: 1250000, memoryUsedBytes: 31457280, memoryLimitBytes: 268435456, diskUsedBytes: 1048576, diskLimitBytes: 1073741824 } },
  });
  add('Sandboxes_GetEgressDecisions', sb, {
    200: { body: {
      allowed: 1, denied: 2,
      recentAllowed: [{ time: EX.time2, destination: 'pypi.org', address: '151.101.0.223', port: 443, protocol: 'tcp', rule: 'pypi', action: 'Allow', reason: 'TLS SNI' }],
      recentDenied: [
        { time: EX.time2, destination: 'evil.example', address: '', port: 53, protocol: 'dns', rule: null, action: 'Deny', reason: 'no rule allows this name' },
        { time: EX.time, destination: '', address: '169.254.169.254', port: 80, protocol: 'tcp', rule: null, action: 'Deny', reason: 'no policy reaches this address (loopback, link-local, metadata, multicast or another sandbox)' },
      ],
      policy: { defaultAction: 'Deny', rules: [{ name: 'pypi', action: 'Allow', fqdns: ['pypi.org'], ports: [443] }] },
      enforced: true,
    } },
  });

  const ep = { ...common, egressPolicyName: 'pypi-only' };
  add('EgressPolicies_ListBySandboxGroup', common, list(egressPolicy()));
  add('EgressPolicies_Get', ep, { 200: { headers: { ETag: etag }, body: egressPolicy() } });
  add('EgressPolicies_CreateOrUpdate', { ...ep, resource: writable(egressPolicy()) }, {
    200: { headers: { ETag: etag }, body: egressPolicy() },
    201: { headers: { ETag: etag }, body: egressPolicy() },
  });
  add('EgressPolicies_Delete', ep, { 202: { headers: asyncHeaders(version, true) }, 204: {} });
  return ex;
}

/* ---------- bundling ---------- */

// One self-contained file (no external $ref, no examples), e.g. for GET /openapi.json.
function bundle(doc, dir) {
  const out = JSON.parse(JSON.stringify(doc));
  const loaded = {};
  const load = (file) => (loaded[file] ||= JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')));
  const pending = [];
  const rewrite = (node) => {
    if (Array.isArray(node)) return node.forEach(rewrite);
    if (!node || typeof node !== 'object') return;
    delete node['x-ms-examples'];
    if (typeof node.$ref === 'string' && !node.$ref.startsWith('#')) {
      const [file, pointer] = node.$ref.split('#');
      const [, section, name] = pointer.split('/');
      node.$ref = '#/' + section + '/' + name;
      pending.push([file, section, name]);
    }
    for (const v of Object.values(node)) rewrite(v);
  };
  rewrite(out);
  while (pending.length) {
    const [file, section, name] = pending.shift();
    out[section] ||= {};
    if (out[section][name]) continue;
    const copy = JSON.parse(JSON.stringify(load(file)[section][name]));
    out[section][name] = copy;
    // Local references inside the common file stay local, but must come along too.
    const walk = (node) => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (!node || typeof node !== 'object') return;
      if (typeof node.$ref === 'string' && node.$ref.startsWith('#')) {
        const [, s, n] = node.$ref.split('/');
        pending.push([file, s, n]);
      }
      for (const v of Object.values(node)) walk(v);
    };
    walk(copy);
  }
  return out;
}

/* ---------- output ---------- */

const ROOT = __dirname;
const json = (v) => JSON.stringify(v, null, 2) + '\n';

function outputs() {
  const files = {};
  for (const version of API_VERSIONS) {
    const doc = document(version);
    files[path.join(version, 'sandboxGroups.json')] = json(doc);
    for (const [id, ex] of Object.entries(examples(version, doc))) {
      files[path.join(version, 'examples', id + '.json')] = json(ex);
    }
    files[path.join('bundled', version + '.json')] = json(bundle(doc, path.join(ROOT, version)));
  }
  return files;
}

function main() {
  const check = process.argv.includes('--check');
  const files = outputs();
  let stale = 0;
  for (const [rel, text] of Object.entries(files)) {
    const file = path.join(ROOT, rel);
    const current = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    if (current === text) continue;
    if (check) {
      console.error('stale: openapi/' + rel + ' (run node openapi/generate.js)');
      stale++;
    } else {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
    }
  }
  // Examples of operations that no longer exist would otherwise linger unnoticed.
  for (const version of API_VERSIONS) {
    const dir = path.join(ROOT, version, 'examples');
    for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      const rel = path.join(version, 'examples', name);
      if (files[rel]) continue;
      if (check) {
        console.error('stray: openapi/' + rel);
        stale++;
      } else {
        fs.unlinkSync(path.join(ROOT, rel));
      }
    }
  }
  process.exit(stale ? 1 : 0);
}

if (require.main === module) main();
module.exports = { document, examples, bundle, API_VERSIONS, NAME_PATTERN };
