/**
 * The bench's S3 stand-in: fauxqs as `infra/stand-ins.ts` starts it, plus one route fauxqs 1.9
 * lacks, ListParts (`GET /<bucket>/<key>?uploadId=…`), which the tus peer's S3 store calls on
 * every PATCH. The route is real HTTP, answered from fauxqs's own multipart state (the parts
 * its UploadPart stored), in S3's XML; everything else is fauxqs unchanged. Only the bench adds
 * it: the server itself never lists parts.
 */
import { buildApp } from "fauxqs";

interface FauxqsPart {
  readonly partNumber: number;
  readonly body: Uint8Array;
  readonly etag: string;
  readonly lastModified: Date;
}
interface FauxqsUpload {
  readonly bucket: string;
  readonly key: string;
  readonly parts: Map<number, FauxqsPart>;
}
interface FauxqsStores {
  s3Store: { multipartUploads: Map<string, FauxqsUpload> };
}

/**
 * fauxqs exports no store classes; they are loaded from its package folder so that the bench
 * holds the S3 store the app serves from.
 */
async function fauxqsStores(): Promise<FauxqsStores> {
  // The package's entry is dist/app.js; its stores sit beside it.
  const app = import.meta.resolve("fauxqs");
  const load = async (path: string, name: string) => {
    const module = (await import(new URL(path, app).href)) as Record<string, new () => unknown>;
    const Store = module[name];
    if (Store === undefined) throw new Error(`fauxqs has no ${name}`);
    return new Store();
  };
  return {
    s3Store: (await load("s3/s3Store.js", "S3Store")) as FauxqsStores["s3Store"],
    sqsStore: await load("sqs/sqsStore.js", "SqsStore"),
    snsStore: await load("sns/snsStore.js", "SnsStore"),
  } as FauxqsStores;
}

const xml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** S3's ListParts answer for an upload, at most `max` parts after `marker`. */
function listPartsXml(upload: FauxqsUpload, uploadId: string, marker: number, max: number) {
  const parts = [...upload.parts.values()]
    .filter((part) => part.partNumber > marker)
    .sort((a, b) => a.partNumber - b.partNumber);
  const page = parts.slice(0, max);
  const truncated = parts.length > page.length;
  const last = page.at(-1)?.partNumber ?? marker;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
    `<Bucket>${xml(upload.bucket)}</Bucket><Key>${xml(upload.key)}</Key>`,
    `<UploadId>${xml(uploadId)}</UploadId>`,
    `<PartNumberMarker>${marker}</PartNumberMarker><NextPartNumberMarker>${last}</NextPartNumberMarker>`,
    `<MaxParts>${max}</MaxParts><IsTruncated>${truncated}</IsTruncated>`,
    ...page.map(
      (part) =>
        `<Part><PartNumber>${part.partNumber}</PartNumber><LastModified>${part.lastModified.toISOString()}</LastModified>` +
        `<ETag>${xml(part.etag)}</ETag><Size>${part.body.length}</Size></Part>`,
    ),
    "</ListPartsResult>",
  ].join("");
}

/** fauxqs with ListParts, on 127.0.0.1. */
export async function startS3StandInWithListParts(): Promise<{
  endpoint: string;
  stop(): Promise<void>;
}> {
  const stores = await fauxqsStores();
  const app = buildApp({ logger: false, stores: stores as never });
  app.addHook("onRequest", async (request, reply) => {
    const url = new URL(request.url, "http://stand-in");
    const uploadId = url.searchParams.get("uploadId");
    if (request.method !== "GET" || uploadId === null) return;
    const upload = stores.s3Store.multipartUploads.get(uploadId);
    reply.header("content-type", "application/xml");
    if (upload === undefined) {
      const error = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code><Message>The specified multipart upload does not exist.</Message></Error>`;
      return reply.status(404).send(error);
    }
    const marker = Number(url.searchParams.get("part-number-marker") ?? 0) || 0;
    const max = Math.min(1000, Number(url.searchParams.get("max-parts") ?? 1000) || 1000);
    return reply.status(200).send(listPartsXml(upload, uploadId, marker, max));
  });
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  return { endpoint: address.replace("localhost", "127.0.0.1"), stop: () => app.close() };
}
