// Type-checked with tsc --noEmit (make test-js), never run: every part of the public API used
// as ferry.d.ts declares it, and the lists in api.mjs, which api.test.mjs checks against the
// code, equal to the declarations.
import ferryGlobal = require('../ferry.js');
import { backoff, connect, version } from '../ferry.js';
import type {
  Client, CloseInfo, ErrorInfo, MessageInfo, OpenInfo, Options, ResetInfo, State, Stats, Transport,
} from '../ferry.js';
import { CLIENT, MODULE, STATS } from './api.mjs';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const moduleKeys: Same<(typeof MODULE)[number], keyof typeof ferryGlobal> = true;
export const clientKeys: Same<(typeof CLIENT)[number], keyof Client> = true;
export const statsKeys: Same<(typeof STATS)[number], keyof Stats> = true;

declare function request(input: string, init?: object): Promise<{ status: number; text(): Promise<string> }>;
class NoSocket {}

const options: Options = {
  transport: 'auto', connectTimeout: 5000, minDelay: 250, maxDelay: 15000, minUptime: 5000,
  probeInterval: 20000, maxOutbox: 1000, ackDelay: 2000, pingInterval: 8000, pingTimeout: 5000,
  token: () => Promise.resolve('token'), WebSocket: NoSocket, fetch: request,
};
const forced: Options = { transport: 'longpoll', token: 'token' };
const none: Options = { token: null };

const c: Client = connect('/ferry', options);
connect('https://example.org/ferry', forced).close();
connect('/ferry', none).close();
connect('/ferry').close();

const seq: number = c.send({ hello: 'world' });
c.subscribe('news');
c.unsubscribe('news');
const state: State = c.state;
const transport: Transport | null = c.transport;
const sid: string | null = c.sessionId;
const stats: Stats = c.stats();
const counts: number[] = [stats.lastSeq, stats.outSeq, stats.outbox, stats.lastRx];

const offs: Array<() => void> = [
  c.on('open', (o: OpenInfo) => { const r: boolean = o.resumed; const t: Transport = o.transport; void r; void t; }),
  c.on('message', (data: unknown, info: MessageInfo) => {
    const s: number = info.seq; const topic: string | undefined = info.topic; void data; void s; void topic;
  }),
  c.on('reset', (r: ResetInfo) => { const n: number = r.unsent; const m: unknown[] = r.messages; void r.reason; void n; void m; }),
  c.on('state', (s: State) => { void s; }),
  c.on('transport', (t: Transport) => { void t; }),
  c.on('error', (e: ErrorInfo) => { const code: string = e.code; const text: string = e.text; void e.data; void code; void text; }),
  c.on('close', (i: CloseInfo) => { const r: string = i.reason; const n: number = i.unsent; const m: unknown[] = i.messages; void r; void n; void m; }),
];
const handler = (...args: unknown[]) => { void args; };
c.on('state', handler);
c.off('state', handler);
for (const off of offs) off();
c.close();

const delay: number = backoff(3, 250, 15000, Math.random) + backoff(0, 1, 2);
const v: number = version;
const same: typeof connect = ferryGlobal.connect;

// @ts-expect-error: an unknown transport
connect('/ferry', { transport: 'sse' });
// @ts-expect-error: stats are read-only counters, not a method of the module
ferryGlobal.stats();

export { seq, state, transport, sid, counts, delay, v, same };
