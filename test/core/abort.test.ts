// lib/core/abort.ts: the one AbortSignal rule (reject at once, the operation
// ends in the background, its outcome discarded).
import t from 'tap';

import { abortable } from '../../lib/core/abort';

t.test('without a signal the operation is returned as is', async (t) => {
  const op = Promise.resolve(1);
  t.equal(abortable(op, undefined), op);
});

t.test('an abort rejects at once; a later success is handed to discard', async (t) => {
  let finish!: (v: string) => void;
  const op = new Promise<string>((r) => (finish = r));
  const ac = new AbortController();
  const discarded: string[] = [];
  const p = abortable(op, ac.signal, undefined, (v) => discarded.push(v));
  ac.abort(new Error('stop'));
  await t.rejects(p, { name: 'AbortError', code: 'ABORT_ERR', cause: { message: 'stop' } });
  t.same(discarded, [], 'nothing discarded while the operation runs');
  finish('fd');
  await op;
  await new Promise((r) => setImmediate(r));
  t.same(discarded, ['fd'], 'its result is discarded when it ends');
});

t.test('an already aborted signal rejects; a failure after an abort is dropped', async (t) => {
  const ac = new AbortController();
  ac.abort();
  let fail!: (e: Error) => void;
  const op = new Promise<number>((_, rej) => (fail = rej));
  const p = abortable(op, ac.signal);
  await t.rejects(p, { name: 'AbortError' });
  fail(new Error('late'));
  await new Promise((r) => setImmediate(r));
  t.pass('no unhandled rejection from the late failure');
});

t.test('settling first wins over a later abort', async (t) => {
  const ac = new AbortController();
  const p = abortable(Promise.resolve(7), ac.signal);
  t.equal(await p, 7);
  ac.abort();
});
