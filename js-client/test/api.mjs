// The public API, as ferry.d.ts and ferry.d.mts declare it. types.ts checks these lists
// against the declarations, both ways; api.test.mjs checks them against what ferry.js and
// ferry.mjs export at run time. So the declarations and the code cannot drift apart.
export const MODULE = /** @type {const} */ (['connect', 'backoff', 'version']);
export const ESM = /** @type {const} */ (['connect', 'default']);
export const CLIENT = /** @type {const} */ ([
  'state', 'transport', 'sessionId', 'send', 'subscribe', 'unsubscribe', 'close', 'stats', 'on', 'off',
]);
export const STATS = /** @type {const} */ (['lastSeq', 'outSeq', 'outbox', 'lastRx']);
