/**
 * Bundles each Lambda entry with esbuild: minified ESM for Node 22, the AWS SDK clients bundled
 * (not the runtime's copy) so versions are pinned and cold starts load less (docs/platform.md,
 * "Packaging"). Prints each bundle's size.
 *
 *   npm run build
 */
import { rmSync, statSync } from "node:fs";
import { build, type Metafile } from "esbuild";

const ENTRIES = {
  upload: "functions/handler.ts",
  cleanup: "functions/cleanup.ts",
} as const;

/**
 * Bytes a cold start loads: the handler and the chunks it imports statically, not those it
 * imports on demand (the SSM client).
 */
function loadedAtStart(metafile: Metafile, entryPoint: string): number {
  // Metafile paths are relative to the working directory.
  const entry = Object.keys(metafile.outputs).find(
    (file) => metafile.outputs[file]?.entryPoint === entryPoint,
  );
  if (entry === undefined) throw new Error(`no output for ${entryPoint}`);
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const imported of metafile.outputs[file]?.imports ?? []) {
      if (imported.kind === "import-statement" && !imported.external) visit(imported.path);
    }
  };
  visit(entry);
  return [...seen].reduce((total, file) => total + statSync(file).size, 0);
}

export async function buildBundles(outdir = "dist") {
  const sizes: Record<string, number> = {};
  for (const [name, entry] of Object.entries(ENTRIES)) {
    // Chunk names carry content hashes: without this, every build's chunks would pile up in
    // the folder that `package` zips whole.
    rmSync(`${outdir}/${name}`, { recursive: true, force: true });
    const result = await build({
      metafile: true,
      entryPoints: [entry],
      outdir: `${outdir}/${name}`,
      entryNames: "handler",
      outExtension: { ".js": ".mjs" },
      // What is imported on demand (the SSM client, only when a secret lives in SSM) becomes
      // its own chunk beside the handler, loaded only by the deployments that need it.
      splitting: true,
      chunkNames: "chunks/[name]-[hash]",
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
    sizes[name] = loadedAtStart(result.metafile, entry);
  }
  return sizes;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = await buildBundles();
  for (const [name, bytes] of Object.entries(sizes)) {
    console.log(`dist/${name}/handler.mjs  ${(bytes / 1024).toFixed(0)} KiB`);
  }
}
