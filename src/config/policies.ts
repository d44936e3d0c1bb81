import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { z } from 'zod';
import { orgPolicySchema, servicePolicySchema, type OrgPolicy, type ServicePolicy } from '../domain/policy';
import { serviceNameSchema } from '../domain/release';
import { DEFAULT_METRIC_NAMES, type MetricNames } from '../domain/metric-names';
import { describeZodError } from '../domain/zod-errors';
import { ConfigError } from './env';

/** A policy file that is missing, unreadable or invalid; the message names the file and the field. */
export class PolicyFileError extends Error {
  override readonly name = 'PolicyFileError';
}

async function readYaml<T extends z.ZodTypeAny>(path: string, schema: T, what: string): Promise<z.output<T>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PolicyFileError(
      code === 'ENOENT' ? `no ${what} at ${path}` : `cannot read ${path}: ${code ?? String(err)}`,
    );
  }
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    throw new PolicyFileError(`${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const parsed = schema.safeParse(data ?? {});
  if (!parsed.success) throw new PolicyFileError(`${path}: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

/**
 * Policy files: `<dir>/org.yaml` and `<dir>/services/<service>.yaml`. Read on every release, so an edited policy
 * applies to the next release without restarting the worker.
 */
export class PolicyStore {
  constructor(readonly dir: string) {}

  orgPath = () => join(this.dir, 'org.yaml');
  servicePath = (service: string) => join(this.dir, 'services', `${service}.yaml`);

  org(): Promise<OrgPolicy> {
    return readYaml(this.orgPath(), orgPolicySchema, 'org policy');
  }

  /**
   * The org's metric and label names for a process that reads them once at start (the receiver, `alert-rules`):
   * the defaults without an org file; a broken one is a configuration error naming TOLLGATE_POLICY_DIR.
   */
  async metricNames(): Promise<MetricNames> {
    if (!existsSync(this.orgPath())) return DEFAULT_METRIC_NAMES;
    try {
      return (await this.org()).metrics;
    } catch (err) {
      if (err instanceof PolicyFileError)
        throw new ConfigError(`invalid configuration: TOLLGATE_POLICY_DIR: ${err.message}`);
      throw err;
    }
  }

  async service(service: string): Promise<ServicePolicy> {
    const name = serviceNameSchema.safeParse(service);
    if (!name.success) throw new PolicyFileError(`invalid service "${service}": ${describeZodError(name.error)}`);
    const path = this.servicePath(service);
    const policy = await readYaml(path, servicePolicySchema, `policy for service "${service}"`);
    if (policy.service !== service)
      throw new PolicyFileError(`${path}: service: says "${policy.service}", expected "${service}"`);
    return policy;
  }
}
