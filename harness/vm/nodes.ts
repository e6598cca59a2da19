/**
 * Two test guests on one network (`vm run --nodes 2`), the pure part: who
 * each node is, its address and NIC, and what its command is told.
 *
 * The network is QEMU's `-netdev dgram` between two Unix datagram sockets in
 * the run's directory, one per node, each node sending to the other's: a
 * point-to-point Ethernet wire that needs no host networking, no free port
 * and no start order (a frame sent before the peer is up is dropped, as on
 * a cable, and ARP retries).
 */
import * as path from 'node:path';

export type NodeRole = 'a' | 'b';
export const NODE_ROLES: readonly NodeRole[] = ['a', 'b'];

/** The fabric's /24: node a is .1, node b is .2. */
export const FABRIC_PREFIX = '10.0.3';

/** One node's NIC on the fabric. */
export interface FabricNic {
  /** Distinct per node: both on one wire with QEMU's default MAC would clash. */
  mac: string;
  /** The node's own datagram socket (QEMU binds it). */
  localSocket: string;
  /** The peer's. */
  remoteSocket: string;
}

export interface NodePlan {
  role: NodeRole;
  address: string;
  peerAddress: string;
  /** The node's results directory (console.log, dmesg, NVMe images). */
  resultsDir: string;
  fabric: FabricNic;
  /** What the node's command is told (beside the run's own env). */
  env: Record<string, string>;
}

const ROLE_INDEX: Record<NodeRole, number> = { a: 1, b: 2 };

function socketPath(runDir: string, role: NodeRole): string {
  return path.join(runDir, `fabric-${role}.sock`);
}

/** The two nodes of a run whose directory is `runDir`. */
export function nodePlans(runDir: string): NodePlan[] {
  return NODE_ROLES.map((role) => {
    const peer: NodeRole = role === 'a' ? 'b' : 'a';
    const address = `${FABRIC_PREFIX}.${ROLE_INDEX[role]}`;
    const peerAddress = `${FABRIC_PREFIX}.${ROLE_INDEX[peer]}`;
    return {
      role,
      address,
      peerAddress,
      resultsDir: path.join(runDir, `node-${role}`),
      fabric: {
        mac: `52:54:00:00:03:0${ROLE_INDEX[role]}`,
        localSocket: socketPath(runDir, role),
        remoteSocket: socketPath(runDir, peer),
      },
      env: {
        P2PDMA_NODE_ROLE: role,
        P2PDMA_NODE_ADDR: address,
        P2PDMA_PEER_ADDR: peerAddress,
      },
    };
  });
}

/** The QEMU arguments of a node's fabric NIC (virtio-net, which carries rxe0). */
export function fabricArgs(nic: FabricNic): string[] {
  return [
    '-netdev', `dgram,id=n0,local.type=unix,local.path=${nic.localSocket},remote.type=unix,remote.path=${nic.remoteSocket}`,
    '-device', `virtio-net-pci,netdev=n0,mac=${nic.mac}`,
  ];
}

/**
 * `vm run --node-env N:NAME=VALUE` values, per node (N is a or b): what only
 * that node's command gets, over --env's.
 */
export function parseNodeEnv(specs: readonly string[]): Record<NodeRole, Record<string, string>> {
  const out: Record<NodeRole, Record<string, string>> = { a: {}, b: {} };
  for (const spec of specs) {
    const m = /^([ab]):([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(spec);
    if (!m) throw new TypeError(`--node-env wants N:NAME=VALUE with N a or b, got '${spec}'`);
    out[m[1] as NodeRole][m[2]] = m[3];
  }
  return out;
}
