#!/usr/bin/env node
// The `bits-sessions` command: runs cli/bits-sessions.ts on Node 20, which cannot load
// TypeScript itself, through the same tsx loader `npm start` uses. No shell is involved, so
// npm's launchers on Windows run it too.
import { register } from "tsx/esm/api";

register();
await import("../bits-sessions.ts");
