// Port state events on rxe0: its netdev (eth0) taken down and up with `ip
// link set` raises IBV_EVENT_PORT_ERR and IBV_EVENT_PORT_ACTIVE on the
// context's events. It takes the guest's only network link down, so
// scripts/guest-suite.sh runs it exclusively, and the link comes back up
// whatever happens here.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { Rdma, type RdmaAsyncEvent, type RdmaContext } from '../../lib';
import { ports } from '../../lib/rdma/device';
import { guest } from './helpers';
import { DEV, onPvrdma } from './rdma-helpers';

const rxeOnly = guest.skip ? guest : { skip: onPvrdma ? 'pvrdma lane: its port never changes state' : false };

function link(netdev: string, state: 'up' | 'down'): void {
  execFileSync('ip', ['link', 'set', netdev, state]);
}

/** The next event of `type` (others, such as GID changes, are passed over), or a timeout. */
async function next(ctx: RdmaContext, type: string, seen: string[]): Promise<RdmaAsyncEvent> {
  const signal = AbortSignal.timeout(20_000);
  for (;;) {
    const e = await ctx.nextEvent({ signal });
    seen.push(e.type);
    if (e.type === type) return e;
  }
}

t.test("eth0 down -> IBV_EVENT_PORT_ERR; up -> IBV_EVENT_PORT_ACTIVE, on the context's events", rxeOnly, async (t) => {
  const netdev = fs.readFileSync(`/sys/class/infiniband/${DEV}/parent`, 'utf8').trim();
  const ctx = Rdma.open(DEV);
  let down = false;
  t.teardown(() => {
    if (down) link(netdev, 'up');
    ctx.close();
  });
  t.equal(ctx.queryPort(1).state, 'ACTIVE');
  const seen: string[] = [];
  down = true;
  link(netdev, 'down');
  const err = await next(ctx, 'IBV_EVENT_PORT_ERR', seen);
  t.equal(err.portNum, 1);
  t.match(err.description, /port error/i);
  t.equal(ctx.queryPort(1).state, 'DOWN', 'ibv_query_port agrees');
  t.equal(ports(DEV, '/sys')[0].state, 'DOWN', 'and sysfs');
  link(netdev, 'up');
  down = false;
  const up = await next(ctx, 'IBV_EVENT_PORT_ACTIVE', seen);
  t.equal(up.portNum, 1);
  t.equal(ctx.queryPort(1).state, 'ACTIVE');
  t.equal(ports(DEV, '/sys')[0].stateText, '4: ACTIVE', "sysfs' own text, kept beside the stripped state");
  t.comment(`events seen: ${seen.join(', ')}`);
});
