import { startControlPlane } from '../../scripts/kubernetes-control-plane';
import { openShop, type Shop } from './kubernetes';

/** A control plane with the shop open, for the tests of the enclosing `describe` (or file): up before, down after. */
export function shopForTests(options: { gatewayApi?: boolean } = {}): { readonly shop: Shop } {
  let shop: Shop | undefined;
  beforeAll(async () => {
    shop = await openShop(await startControlPlane(options));
  }, 240_000);
  afterAll(async () => {
    await shop?.plane.stop();
  });
  return {
    get shop() {
      if (!shop) throw new Error('the control plane is not up (beforeAll failed?)');
      return shop;
    },
  };
}
