// needs: udmabuf
// A dma-buf over memfd pages, mapped without a copy, written between the
// CPU-access brackets, named, and seen by the inspector (`p2pdma dmabuf ls`).
import { Udmabuf, dmabufs } from 'p2pdma';

using buf = Udmabuf.createSync({ size: 1 << 16 });   // DmaBuf over a new sealed memfd
using map = buf.map();                               // zero-copy Mapping
buf.withCpuAccess('write', () => new Uint8Array(map.buffer).fill(7));
buf.setName('frames');                               // shows in fdinfo and `p2pdma dmabuf ls`
console.log(buf.info());                             // { size, count, exporter: 'udmabuf', name: 'frames', ... }
console.log(dmabufs({ pid: process.pid }).buffers.map((b) => `${b.exporter} ${b.name} ${b.size}`));
