export const RELEASE_EVENTS = [
  'release-started',
  'canary-started',
  'check-failed',
  'awaiting-approval',
  'rolled-back',
  /** Every wave is out; production is watched before the release counts as promoted. */
  'watch-started',
  'rolled-back-after-promotion',
  'promoted',
  'aborted',
] as const;
export type ReleaseEvent = (typeof RELEASE_EVENTS)[number];

export interface ReleaseNotification {
  event: ReleaseEvent;
  service: string;
  version: string;
  stage: 'staging' | 'canary' | 'production' | 'done';
  /** Where the traffic that triggered the event was served; canary events must be told apart from production. */
  track: 'staging' | 'canary' | 'production';
  releaseId: string;
  message: string;
  /** ISO 8601. */
  at: string;
  stableVersion?: string;
  /** The release runs on the dry-run target: nothing is really deployed. */
  dryRun?: true;
  details?: Record<string, unknown>;
}

/** Tells people about a release. Implementations never throw: a lost notification must not fail a release. */
export interface Notifier {
  readonly kind: string;
  notify(n: ReleaseNotification): Promise<void>;
}
