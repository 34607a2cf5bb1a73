import { describe, expect, it } from "vitest";
import { MiB } from "../../../functions/bits/constants.ts";
import { emfFields } from "../../../functions/service/metrics.ts";
import { call, createSession, endSession, fragment } from "../../support/calls.ts";
import { memoryService } from "../../support/storage.ts";
import { randomBytes } from "../../support/windows-client.ts";

const SETTINGS = { namespace: "BitsUploadServer", stage: "prod" };

describe("emfFields: CloudWatch Embedded Metric Format on the line an event writes anyway", () => {
  it("declares each metric under the namespace with the Stage dimension, values at the top level", () => {
    const fields = emfFields(
      SETTINGS,
      [
        { name: "Requests", value: 1, unit: "Count" },
        { name: "Latency", value: 12, unit: "Milliseconds" },
      ],
      1_700_000_000_000,
    );
    expect(fields).toEqual({
      Stage: "prod",
      Requests: 1,
      Latency: 12,
      _aws: {
        Timestamp: 1_700_000_000_000,
        CloudWatchMetrics: [
          {
            Namespace: "BitsUploadServer",
            Dimensions: [["Stage"]],
            Metrics: [
              { Name: "Requests", Unit: "Count" },
              { Name: "Latency", Unit: "Milliseconds" },
            ],
          },
        ],
      },
    });
  });

  it("metrics with more dimensions get their own directive, the dimension values as fields", () => {
    const fields = emfFields(
      SETTINGS,
      [
        { name: "RefusedRequests", value: 1, unit: "Count" },
        {
          name: "RefusedRequests",
          value: 1,
          unit: "Count",
          dimensions: { Status: "403", BitsErrorCode: "0x80070005" },
        },
      ],
      1,
    );
    expect(fields.Status).toBe("403");
    expect(fields.BitsErrorCode).toBe("0x80070005");
    const directives = (fields._aws as { CloudWatchMetrics: { Dimensions: string[][] }[] })
      .CloudWatchMetrics;
    expect(directives.map((d) => d.Dimensions)).toEqual([
      [["Stage"]],
      [["Stage", "BitsErrorCode", "Status"]],
    ]);
  });

  it("nothing when metrics are off", () => {
    expect(emfFields(undefined, [{ name: "Requests", value: 1, unit: "Count" }], 1)).toEqual({});
  });
});

describe("the audit line of every request carries its metrics (docs/monitoring.md)", () => {
  it("bytes received and stored, fragments, latency, sessions created and completed, refusals", async () => {
    const env = memoryService({ metrics: SETTINGS });
    const lines: Record<string, unknown>[] = [];
    env.context.runtime.log = (_level, message, fields = {}) => {
      lines.push({ message, ...fields });
    };
    const data = randomBytes(MiB, 1);
    const id = await createSession(env.service);
    await fragment(env.service, id, data, 0, data.length - 1);
    await endSession(env.service, "Close-Session", id);
    await call(env.service, {
      headers: {
        "BITS-Packet-Type": "Fragment",
        "BITS-Session-Id": "{NOPE}",
        "Content-Range": "bytes 0-0/1",
      },
      body: new Uint8Array(1),
    });
    const requests = lines.filter((line) => line.message === "request");
    const fragmentLine = requests.find((line) => line.packet === "fragment" && line.status === 200);
    expect(fragmentLine).toMatchObject({
      Stage: "prod",
      Requests: 1,
      Fragments: 1,
      BytesReceived: MiB,
      BytesStored: MiB,
      ServerErrors: 0,
    });
    const refused = requests.find((line) => line.status === 500);
    expect(refused).toMatchObject({
      RefusedRequests: 1,
      Status: "500",
      BitsErrorCode: "0x8020001F",
      ServerErrors: 0,
    });
    expect(lines.find((line) => line.message === "session created")).toMatchObject({
      SessionsCreated: 1,
    });
    expect(lines.find((line) => line.message === "session closed")).toMatchObject({
      SessionsCompleted: 1,
    });
  });
});
