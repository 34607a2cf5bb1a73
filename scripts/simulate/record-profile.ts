/**
 * Writes scripts/simulate/profile.json: the storage calls of each kind of request, recorded
 * from the real handlers over the stand-ins (record.ts). Run: npx tsx scripts/simulate/record-profile.ts
 */
import { writeFileSync } from "node:fs";
import { MiB } from "../../functions/bits/constants.ts";
import { provision, startStandIns } from "../../infra/stand-ins.ts";
import { PROFILE_FILE_BYTES, PROFILE_PATH } from "./profile.ts";
import { recordUpload } from "./record.ts";

const standIns = await startStandIns();
try {
  const clients = await provision(standIns, "fleet", "fleet");
  const storage = { bucket: "fleet", table: "fleet" };
  const profile = {
    fileBytes: PROFILE_FILE_BYTES,
    partBytes: 8 * MiB,
    doors: {
      alb: await recordUpload(clients, storage, "alb", PROFILE_FILE_BYTES),
      "http-api": await recordUpload(clients, storage, "http-api", PROFILE_FILE_BYTES),
    },
  };
  writeFileSync(PROFILE_PATH, `${JSON.stringify(profile, null, 2)}\n`);
  console.log(`wrote ${PROFILE_PATH}`);
} finally {
  await standIns.stop();
}
