// Loads TypeScript in the child processes the host tests spawn
// (helpers.ts runTs), compiled file by file with esbuild: ~0.3 s of start-up
// where ts-node costs ~3 s. Not tsx, which the test files themselves run
// under: at start tsx opens an IPC socket to a parent tsx process and closes
// it later, and the fixtures that count fds or expect an fd number to be
// reused would see that. A .ts entry point given to node directly would not
// come here (test/run-ts.cjs says why), so runTs starts children with that.
'use strict';
const esbuild = require('esbuild');
const fs = require('node:fs');
const Module = require('node:module');

Module._extensions['.ts'] = (module, filename) => {
  const { code } = esbuild.transformSync(fs.readFileSync(filename, 'utf8'), {
    loader: 'ts',
    format: 'cjs',
    target: 'node20',
    // import() becomes a require(), as tsc's CommonJS output has it.
    supported: { 'dynamic-import': false },
    sourcemap: 'inline',
    sourcefile: filename,
  });
  module._compile(code, filename);
};
