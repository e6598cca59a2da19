'use strict';
/**
 * n copies of one work request posted on qp with `depth` in flight, as
 * ib_write_bw keeps its queue full: the completions one CQ drain delivers are
 * replaced by one chain (the batch form of qp.post), posted after them.
 * Resolves when all n have completed; rejects with the first failure.
 */
function keepInFlight(qp, wr, n, depth) {
  return new Promise((resolve, reject) => {
    let posted = 0;
    let done = 0;
    let free = 0;
    let flushing = false;
    const post = (k) => {
      posted += k;
      for (const p of qp.post(new Array(k).fill(wr))) p.then(onDone, reject);
    };
    const flush = () => {
      flushing = false;
      const k = Math.min(free, n - posted);
      free = 0;
      if (k > 0) post(k);
    };
    const onDone = () => {
      if (++done === n) return resolve();
      free++;
      if (!flushing) {
        flushing = true;
        queueMicrotask(flush);
      }
    };
    post(Math.min(depth, n));
  });
}

module.exports = { keepInFlight };
