/**
 * Loaded once into the SDK's shared workflow context (see PRELOAD_MODULES in src/worker.ts), so every cached release
 * shares one zod instead of evaluating its own copy (≈1 MiB of heap each). The SDK deep-freezes shared modules after
 * preloading, and zod sets some module state lazily on first use; one parse here sets it before the freeze.
 */
import { z } from 'zod';

z.object({ warm: z.string().min(1) })
  .strict()
  .safeParse({ warm: 1, extra: true });
