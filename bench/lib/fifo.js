'use strict';
// Both ends of a FIFO (a pipe: the same kernel code as pipe(2), which Node
// cannot make) with one byte in it, for the ioctl loops (FIONREAD). In the
// temporary directory: the work directory may be a guest's share of a host
// directory, which holds no FIFOs.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

let made = 0;

/** { r, w }: the read end non-blocking, the FIFO already unlinked. */
function openPipe() {
  const fifo = path.join(os.tmpdir(), `p2pdma-bench-fifo-${process.pid}-${made++}`);
  execFileSync('mkfifo', [fifo]);
  const r = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const w = fs.openSync(fifo, fs.constants.O_WRONLY);
  fs.unlinkSync(fifo);
  fs.writeSync(w, 'x');
  return { r, w };
}

module.exports = { openPipe };
