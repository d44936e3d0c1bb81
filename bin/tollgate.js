#!/usr/bin/env node
'use strict';
// The CLI is compiled by `npm run build`; this shim keeps `npx tollgate` working from the package root.
require('../dist/src/client/cli.js')
  .main()
  .then((code) => process.exit(code));
