import { MemorySessionStore } from "../../functions/adapters/memory/memory-session-store.ts";
import { freshSessionStore } from "../support/storage.ts";
import { sessionStoreContract } from "./session-store.contract.ts";

sessionStoreContract("MemorySessionStore", async () => new MemorySessionStore());

sessionStoreContract("DynamoDbSessionStore over DynamoDB Local", freshSessionStore);

// moto's TransactWriteItems is neither isolated nor atomic under concurrent requests
// (docs/platform.md, "TransactWriteItems under concurrency").
sessionStoreContract("DynamoDbSessionStore over moto", () => freshSessionStore("moto"), [
  "transaction-isolation",
]);
