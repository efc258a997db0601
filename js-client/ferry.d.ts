// Type declarations for ferry.js, the browser client for ferry sessions: what the classic
// script defines as the global `ferry`, and what require() returns. The ES module ferry.mjs
// exports less; its declarations are ferry.d.mts.

export type Transport = 'websocket' | 'longpoll';
export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface Options {
  /** 'auto' (WebSocket, falling back to long-polling and probing back up), or one forced. */
  transport?: 'auto' | Transport;
  /** ms for a connection to complete ferry's handshake: a WebSocket then falls back, a
   *  long-poll handshake is retried. Default 5000. */
  connectTimeout?: number;
  /** Reconnect backoff: full jitter in [0, min(maxDelay, minDelay * 2^attempt)). 250 / 15000.
   *  After a refusal retrying cannot fix (see ErrorCode) the wait is in [maxDelay / 2, maxDelay). */
  minDelay?: number;
  maxDelay?: number;
  /** ms a connection must stay up before the backoff starts over. Default 5000. */
  minUptime?: number;
  /** ms between WebSocket probes while long-polling in 'auto'. Default 20000. */
  probeInterval?: number;
  /** Messages sent but not yet acknowledged; send() throws beyond it. Default 1000. */
  maxOutbox?: number;
  /** ms before acknowledging received messages (sooner at half the server's send window). Default 2000. */
  ackDelay?: number;
  /** ms without any frame from the server before the client pings it. Default 8000.
   *  0: follow the server's welcome instead (ping after its `hb`, give up at its `timeout`). */
  pingInterval?: number;
  /** ms to wait after that ping for any frame before the connection is taken for lost and
   *  resumed on a new one. Default 5000: a silent drop is noticed within 13 s. */
  pingTimeout?: number;
  /** Sent in every handshake (new session or resume). A function is called each time. */
  token?: string | null | (() => string | Promise<string>);
  /** Constructors to use instead of the globals (tests, non-browser use). */
  WebSocket?: unknown;
  fetch?: (input: string, init?: object) => Promise<{ status: number; text(): Promise<string> }>;
}

export interface OpenInfo { resumed: boolean; transport: Transport }
export interface MessageInfo { seq: number; topic?: string }
/** The server could not continue the session: resync. `messages`: the data of the client's
 *  messages the old session did not deliver, in order (for reason 'unknown' an upper bound:
 *  some may have arrived); `unsent` is their count. They may be sent again. */
export interface ResetInfo {
  reason: 'unknown' | 'expired' | 'overflow' | 'closed' | 'server' | 'shutdown' | 'forked';
  unsent: number;
  messages: unknown[];
}
/** Error codes. Refusing a handshake: 'origin' and 'unauthorized' (and 'bad_version',
 *  'handshake', 'bad_field', ...) are retried after maxDelay / 2 to maxDelay; 'capacity',
 *  'rate_limited' and 'internal' after the usual growing backoff. After the handshake:
 *  'forbidden' (a refused subscribe) and the frame errors of docs/PROTOCOL.md. */
export type ErrorCode =
  | 'origin' | 'unauthorized' | 'capacity' | 'rate_limited' | 'internal' | 'forbidden'
  | 'too_big' | 'bad_json' | 'too_deep' | 'duplicate_key' | 'bad_field' | 'unknown_type'
  | 'bad_version' | 'handshake' | 'bad_ack' | 'seq_gap';
/** The server refused something: a handshake (the client retries) or a frame. With `data`:
 *  a message the server will never take, dropped from the outbox (docs/CLIENT.md, Limits). */
export interface ErrorInfo { t: 'error'; code: ErrorCode | string; text: string; data?: unknown }
/** The session ended for good: 'client' (close()), 'closed' or 'server'. A server that stops
 *  ('shutdown') is a reset instead. `messages`: the data of the client's messages the session
 *  did not deliver, in order, by the server's close; for close() the ones not acknowledged
 *  yet (an upper bound: some may have arrived). `unsent` is their count. */
export interface CloseInfo {
  reason: 'client' | 'closed' | 'server' | string;
  unsent: number;
  messages: unknown[];
}

/** A snapshot of the session's counters, for diagnostics (a new object on every call). */
export interface Stats {
  /** The seq of the last server message received, in order. */
  lastSeq: number;
  /** The seq of the last message send() numbered. */
  outSeq: number;
  /** Messages sent but not yet acknowledged by the server. */
  outbox: number;
  /** Date.now() when the last frame came from the server; 0 before the first. */
  lastRx: number;
}

export interface Client {
  readonly state: State;
  readonly transport: Transport | null;
  readonly sessionId: string | null;
  /** Queues a message (any JSON value); delivered once, in order. Returns its seq. Throws
   *  when the outbox is full or the message is over the server's max_frame. */
  send(data: unknown): number;
  /** Asks the server to subscribe this session; kept across reconnects. Throws for a name
   *  outside 1 to 128 characters of A-Z a-z 0-9 _ . : / - */
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  /** Ends the session for good. */
  close(): void;
  /** The session's counters now. */
  stats(): Stats;
  on(event: 'open', fn: (info: OpenInfo) => void): () => void;
  on(event: 'message', fn: (data: any, info: MessageInfo) => void): () => void;
  on(event: 'reset', fn: (info: ResetInfo) => void): () => void;
  on(event: 'state', fn: (state: State) => void): () => void;
  on(event: 'transport', fn: (transport: Transport) => void): () => void;
  on(event: 'error', fn: (error: ErrorInfo) => void): () => void;
  on(event: 'close', fn: (info: CloseInfo) => void): () => void;
  off(event: string, fn: (...args: any[]) => void): void;
}

/** Connects to a ferry mount, e.g. '/ferry' or 'https://example.org/ferry'. */
export function connect(url: string, options?: Options): Client;
/** The reconnect delay for an attempt (exposed for tests). */
export function backoff(attempt: number, min: number, max: number, random?: () => number): number;
export const version: number;

/** Loaded as a classic <script>, the same API is the global `ferry`. */
export as namespace ferry;
