import { interleavings } from "./interleavings.ts";

/** The interleaving scenarios of ./interleavings.ts, explored on DynamoDB Local and fauxqs. */
interleavings("stand-ins");
