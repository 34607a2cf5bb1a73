#!/usr/bin/env node
// The `bits-upload` command (package.json "bin"; `npx bits-upload FILE URL` in a clone after
// `npm ci`). The command is written in TypeScript like the server it shares its protocol facts
// with (functions/bits). This shim registers tsx, which `npm start` already uses, in this very
// process and imports the entry: nothing to build first, no shell (npm makes a .cmd shim of
// this file on Windows), and a SIGKILL or Ctrl+C reaches the process that does the upload,
// which a wrapper spawning a second Node process would not guarantee.
import { register } from "tsx/esm/api";

register();
await import("../bits-upload.ts");
