import { join } from 'node:path';
import { PolicyStore } from '../../src/config/policies';
import { resolvePolicy } from '../../src/domain/policy-resolution';

/** The demo's policies are what a new user copies first: they must parse, meet the org's minimums and resolve. */
it('the shipped org and service policies resolve, with the watch and the rollback window the demo shows', async () => {
  const store = new PolicyStore(join(__dirname, '..', '..', 'policies'));
  const resolved = resolvePolicy(await store.org(), await store.service('checkout'), undefined, {
    org: store.orgPath(),
    service: store.servicePath('checkout'),
  });
  expect(resolved.production.watch).toMatchObject({ duration: 60_000, keepPrevious: true });
  expect(resolved.production.watch?.analysis.checks.map((c) => c.name)).toEqual(['error-slo', 'latency-vs-before']);
  expect(resolved.production.rollbackWindow).toEqual({ releases: 3, within: 7 * 86_400_000 });
});
