import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The README is the front page and docs/ the reference: every relative link between them must
 * lead somewhere, and the front page stays short.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const MAX_README_LINES = 350;

const markdownFiles = [
  join(ROOT, "README.md"),
  ...readdirSync(join(ROOT, "docs"))
    .filter((name) => name.endsWith(".md"))
    .map((name) => join(ROOT, "docs", name)),
];

/** Text outside fenced code blocks and inline code, where links are links. */
function prose(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "").replace(/`[^`\n]*`/g, "");
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const withoutFences = text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "");
  for (const match of withoutFences.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = (match[1] ?? "")
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Every relative link target in a Markdown text: inline links and reference definitions. */
function linksOf(text: string): string[] {
  const body = prose(text);
  const inline = [...body.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map(
    (match) => match[1] ?? "",
  );
  const references = [...body.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((match) => match[1] ?? "");
  return [...inline, ...references].filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

function broken(file: string): string[] {
  const problems: string[] = [];
  for (const link of linksOf(readFileSync(file, "utf8"))) {
    const [path = "", anchor] = link.split("#", 2);
    const target = path === "" ? file : resolve(dirname(file), decodeURIComponent(path));
    if (!existsSync(target)) {
      problems.push(`${link}: no such file`);
      continue;
    }
    if (anchor === undefined || anchor === "") continue;
    if (statSync(target).isDirectory() || !target.endsWith(".md")) {
      problems.push(`${link}: an anchor into a file that is not Markdown`);
      continue;
    }
    if (!anchorsOf(readFileSync(target, "utf8")).has(decodeURIComponent(anchor).toLowerCase())) {
      problems.push(`${link}: no heading with that anchor`);
    }
  }
  return problems;
}

describe("README.md and docs/*.md", () => {
  it(`README.md is a front page of at most ${MAX_README_LINES} lines`, () => {
    const lines = readFileSync(join(ROOT, "README.md"), "utf8").split("\n").length;
    expect(lines).toBeLessThanOrEqual(MAX_README_LINES);
  });

  it("docs/README.md indexes every file in docs/", () => {
    const index = readFileSync(join(ROOT, "docs", "README.md"), "utf8");
    const listed = new Set(linksOf(index).map((link) => link.split("#")[0]));
    const files = readdirSync(join(ROOT, "docs")).filter(
      (name) => name.endsWith(".md") && name !== "README.md",
    );
    expect(files.filter((name) => !listed.has(name))).toEqual([]);
  });

  for (const file of markdownFiles) {
    it(`every relative link and anchor in ${file.slice(ROOT.length + 1)} resolves`, () => {
      expect(broken(file)).toEqual([]);
    });
  }
});

describe("the link check itself", () => {
  it("finds inline and reference links, not code or absolute URLs", () => {
    const text = [
      "See [a](docs/a.md#x), [b](b.md) and [web](https://example.com).",
      "`[not](a-link.md)`",
      "```",
      "[nor](this.md)",
      "```",
      "[ref]: docs/c.md",
    ].join("\n");
    expect(linksOf(text)).toEqual(["docs/a.md#x", "b.md", "docs/c.md"]);
  });

  it("makes GitHub's anchors, repeated headings numbered", () => {
    const text = "# The HTTP API alternative (`frontDoor=httpapi`)\n## Notes\n## Notes\n";
    expect([...anchorsOf(text)]).toEqual([
      "the-http-api-alternative-frontdoorhttpapi",
      "notes",
      "notes-1",
    ]);
  });
});
