// needs: udmabuf drm:vgem
// DRM PRIME: a dma-buf imported into vgem as a GEM handle, a vgem fence on it
// that the dma-buf's own poll waits for, and the buffer exported back.
import { Drm, Udmabuf } from 'p2pdma';

using buf = Udmabuf.createSync({ size: 1 << 16 });
using gpu = Drm.open({ driver: 'vgem' });            // card node; { type: 'render' } for renderD*
using bo = gpu.importBuffer(buf);                    // PRIME_FD_TO_HANDLE
const fence = gpu.vgemFenceAttach(bo, { write: true });
const idle = buf.waitIdle('read');                   // polls the dma-buf on the event loop
gpu.vgemFenceSignal(fence);
await idle;
using again = gpu.exportBuffer(bo);                  // PRIME_HANDLE_TO_FD: the same buffer
console.log(again.info().inode === buf.info().inode); // true
