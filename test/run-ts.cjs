// The entry point of the child processes the host tests spawn (helpers.ts
// runTs): `node --require test/ts-require.cjs test/run-ts.cjs FILE.ts ARGS`
// runs FILE.ts as the main module would run, with process.argv[1] = FILE.ts.
// A .ts file given to node directly is loaded as an ES module when any
// loader hook is registered (tap's process tracking adds one to every node
// child), and the ES loader knows nothing of .ts.
'use strict';
process.argv.splice(1, 1);
// Loaded as the main module (require.main === module), as node would.
require('node:module')._load(require('node:path').resolve(process.argv[1]), null, true);
