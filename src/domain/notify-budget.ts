/**
 * The start-to-close timeout of the notify activity. A webhook's retries all run inside one attempt, and at this
 * deadline Temporal abandons the attempt without a word in the worker's log; so worker start refuses any webhook
 * whose timeout, retries and backoff could outlast it (`createNotifiers`), rather than let long configurations be cut
 * off. Five minutes fits three retries at the longest per-attempt timeout a webhook may set (60 s); it is also how
 * long a dead receiver can hold a finished release open, since the workflow awaits its last notification.
 */
export const NOTIFY_ACTIVITY_TIMEOUT_MS = 5 * 60_000;

/** What a delivery may use of the timeout: timers fire late, and a delivery must end before the attempt is abandoned. */
export const NOTIFY_DELIVERY_BUDGET_MS = NOTIFY_ACTIVITY_TIMEOUT_MS - 5_000;
