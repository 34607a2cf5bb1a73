import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/**
 * What Linux's /proc says about a tree of processes: which of them run, and on which addresses
 * they listen. Linux only, as the tests that use it.
 */

/** `pid` and every process below it, as they are now. */
export function processTree(pid: number): number[] {
  const children: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
      if (text !== "") children.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    return [];
  }
  return [pid, ...children.flatMap(processTree)];
}

/** Whether a process runs (a zombie, dead but not yet reaped, does not). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** A process's command line, for messages. */
export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").slice(0, 120);
  } catch {
    return "?";
  }
}

export interface Listening {
  readonly pid: number;
  readonly address: string;
  readonly port: number;
}

/** The TCP sockets these processes listen on, with the address each is bound to. */
export function listeningSockets(pids: readonly number[]): Listening[] {
  const byInode = new Map<string, { address: string; port: number }>();
  for (const [file, v6] of [
    ["/proc/net/tcp", false],
    ["/proc/net/tcp6", true],
  ] as const) {
    const lines = readFileSync(file, "utf8").trim().split("\n").slice(1);
    for (const line of lines) {
      const fields = line.trim().split(/\s+/);
      const [local, , state, , , , , , inode] = fields.slice(1);
      if (state !== "0A" || local === undefined || inode === undefined) continue;
      const [hex = "", port = "0"] = local.split(":");
      byInode.set(inode, { address: v6 ? ipv6(hex) : ipv4(hex), port: Number.parseInt(port, 16) });
    }
  }
  const found: Listening[] = [];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      const socket = inode === undefined ? undefined : byInode.get(inode);
      if (socket) found.push({ pid, ...socket });
    }
  }
  return found;
}

/** 127.0.0.0/8, ::1 and IPv4-mapped 127.x. */
export function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === "::1" || /^::ffff:127\./.test(address);
}

/** /proc's IPv4 address: four bytes in host (little-endian) order. */
function ipv4(hex: string): string {
  const bytes = Buffer.from(hex, "hex").reverse();
  return [...bytes].join(".");
}

/** /proc's IPv6 address: four 32-bit words, each in host order. */
function ipv6(hex: string): string {
  const words = [0, 8, 16, 24].map((at) => Buffer.from(hex.slice(at, at + 8), "hex").reverse());
  const bytes = Buffer.concat(words);
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${[...bytes.subarray(12)].join(".")}`;
  }
  if (bytes.subarray(0, 15).every((b) => b === 0) && bytes[15] === 1) return "::1";
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(":");
}
