import { formatDuration } from './duration';
import type { RollbackWindow } from './policy';

/** One promoted release of a service, as Temporal's visibility recorded it. */
export interface PromotedRelease {
  version: string;
  /** When it closed promoted (ISO). */
  promotedAt: string;
  releaseId: string;
}

/** Why a release skips its canary bake: the version was stable here recently. */
export interface RollbackWindowMatch {
  /** The promoted release that made the version stable. */
  releaseId: string;
  promotedAt: string;
  /** When it stopped being stable (the next promotion), or absent while it still is. */
  stableUntil?: string;
  /** Promotions of other versions since (0: it is the current stable version). */
  releasesAgo: number;
}

/** The most promoted releases a lookup reads: the window's `releases` bound is at most 50. */
export const PROMOTED_LOOKUP_LIMIT = 51;

/**
 * Whether `version` was stable for this service within the window: among the last `releases` promotions before the
 * current one, and stable until at most `within` ago. `promoted` is newest first; an entry's stable time ends when the
 * next newer one was promoted.
 */
export function inRollbackWindow(
  window: RollbackWindow,
  version: string,
  promoted: readonly PromotedRelease[],
  now: number,
): RollbackWindowMatch | undefined {
  const newestFirst = [...promoted].sort((a, b) => Date.parse(b.promotedAt) - Date.parse(a.promotedAt));
  const index = newestFirst.findIndex((r) => r.version === version);
  if (index < 0) return undefined;
  const release = newestFirst[index]!;
  const stableUntil = index > 0 ? newestFirst[index - 1]!.promotedAt : undefined;
  if (window.releases !== undefined && index > window.releases) return undefined;
  if (window.within !== undefined && stableUntil !== undefined && now - Date.parse(stableUntil) > window.within)
    return undefined;
  return {
    releaseId: release.releaseId,
    promotedAt: release.promotedAt,
    ...(stableUntil !== undefined && { stableUntil }),
    releasesAgo: index,
  };
}

/** The audit trail's words for a match. */
export function describeMatch(version: string, match: RollbackWindowMatch, window: RollbackWindow): string {
  const when = match.stableUntil ? `stable until ${match.stableUntil}` : 'the stable version';
  const bounds = [
    ...(window.releases !== undefined ? [`${window.releases} release(s)`] : []),
    ...(window.within !== undefined ? [formatDuration(window.within)] : []),
  ].join(' and ');
  return (
    `${version} was ${when} (promoted ${match.promotedAt} by ${match.releaseId}, ${match.releasesAgo} release(s) ago), ` +
    `within the rollback window of ${bounds}: the canary bake is skipped`
  );
}
