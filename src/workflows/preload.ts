/**
 * Loaded once into the SDK's shared workflow context (see PRELOAD_MODULES in src/worker.ts), so every cached release
 * shares one zod instead of evaluating its own copy (≈1 MiB of heap each), and one copy of Unicode's confusables
 * table (6,300 entries) behind identity comparisons. The SDK deep-freezes shared modules after preloading, and zod
 * sets some module state lazily on first use; one parse here sets it before the freeze.
 */
import { z } from 'zod';
import { sameIdentity } from '../domain/identity';

z.object({ warm: z.string().min(1) })
  .strict()
  .safeParse({ warm: 1, extra: true });
sameIdentity('warm', 'up');
