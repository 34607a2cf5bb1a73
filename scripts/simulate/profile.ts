import { readFileSync } from "node:fs";
import { MiB } from "../../functions/bits/constants.ts";
import type { FrontDoor } from "./model.ts";
import type { ClassCosts } from "./record.ts";

/** Where the recorded calls per request class are kept (record-profile.ts writes it). */
export const PROFILE_PATH = new URL("./profile.json", import.meta.url).pathname;

/** The file the profile is recorded with: 20 MiB, three 8 MiB parts, the last one short. */
export const PROFILE_FILE_BYTES = 20 * MiB;

export interface Profile {
  readonly fileBytes: number;
  readonly partBytes: number;
  readonly doors: Record<FrontDoor, ClassCosts>;
}

export function loadProfile(): Profile {
  return JSON.parse(readFileSync(PROFILE_PATH, "utf8")) as Profile;
}
