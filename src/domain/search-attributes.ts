import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Custom search attributes, typed into the Temporal UI and `temporal workflow list --query` by users. */
export const TollgateService = defineSearchAttributeKey('TollgateService', SearchAttributeType.KEYWORD);
export const TollgateVersion = defineSearchAttributeKey('TollgateVersion', SearchAttributeType.KEYWORD);
export const TollgateStage = defineSearchAttributeKey('TollgateStage', SearchAttributeType.KEYWORD);
export const TollgateState = defineSearchAttributeKey('TollgateState', SearchAttributeType.KEYWORD);

export const SEARCH_ATTRIBUTES = [TollgateService, TollgateVersion, TollgateStage, TollgateState] as const;
