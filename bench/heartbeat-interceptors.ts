import type { WorkflowInterceptorsFactory } from '@temporalio/workflow';

/**
 * For the release whose analysis double takes its stretch's time on the time-skipping server's clock: the double
 * cannot heartbeat on that clock (the SDK throttles heartbeats in real time), so its heartbeat timeout is left out.
 * Activity options add no event, so the release's history is what it would be with it.
 */
export const interceptors: WorkflowInterceptorsFactory = () => ({
  outbound: [
    {
      scheduleActivity(input, next) {
        if (input.activityType !== 'analyze') return next(input);
        const { heartbeatTimeout: _dropped, ...options } = input.options;
        return next({ ...input, options });
      },
    },
  ],
});
