#!/usr/bin/env node
// sssn: the command line of SSSN servers (the Python `sssn`'s vocabulary), on the client in ../src.

import { main } from '../src/cli/main.js';

process.exitCode = await main();
