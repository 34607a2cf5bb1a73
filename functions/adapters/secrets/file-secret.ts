import { readFile } from "node:fs/promises";
import type { SecretText } from "../../ports/secrets.ts";

/**
 * A secret in a local file (the local server, tests). Read on every call: RefreshingSecret
 * decides how often, so an edited file takes effect like a rotated parameter does.
 */
export class FileSecret implements SecretText {
  readonly source: string;

  constructor(private readonly path: string) {
    this.source = `file ${path}`;
  }

  async current(): Promise<string> {
    try {
      return await readFile(this.path, "utf8");
    } catch (error) {
      const code = (error as { code?: string }).code;
      const why = code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? "error"})`;
      throw new Error(`secret file ${this.path} ${why}`, { cause: error });
    }
  }
}
