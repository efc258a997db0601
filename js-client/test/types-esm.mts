// Type-checked with tsc --noEmit, never run: ferry.mjs as ferry.d.mts declares it, and the
// lists in api.mjs equal to its exports.
import ferry, { connect } from '../ferry.mjs';
import type { Client, Options, Stats } from '../ferry.mjs';
import { ESM, MODULE } from './api.mjs';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const esmKeys: Same<(typeof ESM)[number], keyof typeof import('../ferry.mjs')> = true;
export const defaultKeys: Same<(typeof MODULE)[number], keyof typeof ferry> = true;

const options: Options = { transport: 'websocket' };
const c: Client = connect('/ferry', options);
const d: Client = ferry.connect('/ferry');
const stats: Stats = c.stats();
const delay: number = ferry.backoff(1, 250, 15000);
const v: number = ferry.version;
c.close();
d.close();

export { stats, delay, v };
