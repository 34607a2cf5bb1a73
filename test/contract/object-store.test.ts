import { MemoryObjectStore } from "../../functions/adapters/memory/memory-object-store.ts";
import { freshStorage } from "../support/storage.ts";
import { objectStoreContract } from "./object-store.contract.ts";

objectStoreContract("MemoryObjectStore", async () => new MemoryObjectStore());

// A gap of the stand-in, not of the adapter: fauxqs 1.9 sorts listings with localeCompare
// (dist/s3/s3Store.js), where S3 itself sorts by UTF-8 bytes.
objectStoreContract("S3ObjectStore over fauxqs", async () => (await freshStorage()).objects, [
  "ascii-byte-order",
]);
