/**
 * Signs an upload URL with a key from a keys file, for people and scripts that hand out URLs
 * without a backend of their own (docs/security.md, "Signed upload URLs").
 *
 *   npm run sign-url -- <url> --keys <file> [--key-id id] [--expires-in 7d] [--max-size 2GiB]
 *                       [--prefix /dir/] [--subject alice]
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { parseUrlKeys, signUploadUrl } from "../functions/auth/signed-url.ts";
import { parseBytes } from "../functions/config.ts";

const USAGE = `usage: npm run sign-url -- <url> --keys <file> [options]

Prints <url> with the signed-URL parameters added.

  --keys <file>        the URL keys file ("<id> <secret>" per line; the first key signs)
  --key-id <id>        sign with this key instead of the first one
  --expires-in <time>  how long a new upload may start with it: 3600s, 90m, 12h, 7d (default 24h)
  --max-size <bytes>   the largest file it allows, at least 1: 1048576, 500MB, 2GiB
                       (default: the server's limit)
  --prefix </dir/>     allow any destination under this prefix instead of exactly <url>'s path
  --subject <name>     the principal the upload is made as ([A-Za-z0-9._@+-], up to 128)
  --help               this text
`;

const SECONDS: Record<string, number> = { "": 1, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** `7d`, `12h`, `3600s` or a bare number of seconds; undefined when it is none of them. */
export function parseDuration(text: string): number | undefined {
  const match = /^\s*(\d+)\s*([smhdw]?)\s*$/i.exec(text);
  const factor = match?.[2] === undefined ? undefined : SECONDS[match[2].toLowerCase()];
  if (match?.[1] === undefined || factor === undefined) return undefined;
  const seconds = Number(match[1]) * factor;
  return Number.isSafeInteger(seconds) && seconds > 0 ? seconds : undefined;
}

function main(argv: readonly string[], nowMs: number): string {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      keys: { type: "string" },
      "key-id": { type: "string" },
      "expires-in": { type: "string", default: "24h" },
      "max-size": { type: "string" },
      prefix: { type: "string" },
      subject: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return USAGE.trimEnd();
  const [url, ...extra] = positionals;
  if (url === undefined || extra.length > 0) throw new Error("give exactly one URL");
  if (values.keys === undefined) throw new Error("--keys <file> is required");
  const keys = parseUrlKeys(readFileSync(values.keys, "utf8"));
  const keyId = values["key-id"] ?? keys.signing.id;
  const secret = keys.all.get(keyId);
  if (secret === undefined) throw new Error(`no key ${keyId} in ${values.keys}`);
  const expiresIn = parseDuration(values["expires-in"]);
  if (expiresIn === undefined) throw new Error("--expires-in must be like 3600s, 90m, 12h or 7d");
  const maxSize = values["max-size"];
  const maxBytes = maxSize === undefined ? undefined : parseBytes(maxSize);
  if (maxSize !== undefined && maxBytes === undefined) {
    throw new Error("--max-size must be a byte size like 1048576, 500MB or 2GiB");
  }
  // Zero would allow only an empty file: a mistake, and never a way to say "no limit".
  if (maxBytes === 0) throw new Error("--max-size must be at least 1 byte (leave it out for none)");
  return signUploadUrl(url, {
    keyId,
    secret,
    expiresAt: Math.floor(nowMs / 1000) + expiresIn,
    ...(maxBytes === undefined ? {} : { maxBytes }),
    ...(values.prefix === undefined ? {} : { prefix: values.prefix }),
    ...(values.subject === undefined ? {} : { subject: values.subject }),
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.stdout.write(`${main(process.argv.slice(2), Date.now())}\n`);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`sign-url: ${message} (see --help)\n`);
    process.exit(1);
  }
}
