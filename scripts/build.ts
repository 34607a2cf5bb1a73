/**
 * Bundles each Lambda entry with esbuild: minified ESM for Node 22, the AWS SDK clients bundled
 * (not the runtime's copy) so versions are pinned and cold starts load less (platform.md 6).
 * Prints each bundle's size.
 *
 *   npm run build
 */
import { statSync } from "node:fs";
import { build } from "esbuild";

const ENTRIES = {
  upload: "functions/handler.ts",
  cleanup: "functions/cleanup.ts",
} as const;

export async function buildBundles(outdir = "dist") {
  const sizes: Record<string, number> = {};
  for (const [name, entry] of Object.entries(ENTRIES)) {
    const outfile = `${outdir}/${name}/handler.mjs`;
    await build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      minify: true,
      platform: "node",
      format: "esm",
      target: "node22",
      legalComments: "none",
      // Some bundled CommonJS modules call require() for Node built-ins.
      banner: {
        js: "import{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);",
      },
      logLevel: "warning",
    });
    sizes[name] = statSync(outfile).size;
  }
  return sizes;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = await buildBundles();
  for (const [name, bytes] of Object.entries(sizes)) {
    console.log(`dist/${name}/handler.mjs  ${(bytes / 1024).toFixed(0)} KiB`);
  }
}
