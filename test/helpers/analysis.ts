/** The release a canary analysis round judges, for tests that call `analysisRound` directly. */
export const canaryContext = {
  releaseId: 'r',
  service: 'checkout',
  version: '2.0.0',
  stableVersion: '1.0.0',
  stage: 'canary' as const,
  track: 'canary' as const,
};
