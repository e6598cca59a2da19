/*
 * The bench scripts' C anchors, compiled (gcc -O2) once per source hash into
 * $P2PDMA_BENCH_DIR or os.tmpdir()/p2pdma-bench. `p2pdma bench` compiles
 * them on the host first (node bench/suites.js --prepare), into a directory
 * its guests share: a TCG guest compiles slowly.
 */
'use strict';
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const workDir = () => process.env.P2PDMA_BENCH_DIR || path.join(os.tmpdir(), 'p2pdma-bench');

/** bench/<source> compiled to <workDir>/<name>-<hash>; returns the binary's path. */
function buildC(source, name) {
  const src = path.join(__dirname, '..', source);
  const hash = crypto.createHash('sha256').update(fs.readFileSync(src)).digest('hex').slice(0, 12);
  const bin = path.join(workDir(), `${name}-${hash}`);
  if (!fs.existsSync(bin)) {
    fs.mkdirSync(workDir(), { recursive: true });
    execFileSync(process.env.CC || 'gcc', ['-O2', '-o', `${bin}.tmp`, src], { stdio: 'inherit' });
    fs.renameSync(`${bin}.tmp`, bin);
  }
  return bin;
}

/** The anchors the scripts build this way (the others are in build/guest-c, made by make build). */
const ANCHORS = { ioctl: ['ioctl-loop.c', 'ioctl-loop'], dmabuf: ['dmabuf.c', 'dmabuf-bench'] };

module.exports = { buildC, ANCHORS };
