// Type declarations for ferry.mjs, the ES module every mount serves: ferry.js with two
// exports, `connect` and, as default, the whole API (the global `ferry`). The types are
// those of ferry.d.ts.
import type { backoff, connect } from './ferry.js';

export type {
  Client, CloseInfo, ErrorCode, ErrorInfo, MessageInfo, OpenInfo, Options, ResetInfo, State, Stats,
  Transport,
} from './ferry.js';
export { connect } from './ferry.js';

declare const ferry: { connect: typeof connect; backoff: typeof backoff; version: number };
export default ferry;
