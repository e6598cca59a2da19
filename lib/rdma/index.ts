/** RDMA verbs, one module per verbs object as in rdma-core's pyverbs; rdma_cm is cm.ts. */
export * from './qp';
