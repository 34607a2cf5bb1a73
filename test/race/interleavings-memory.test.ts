import { interleavings } from "./interleavings.ts";

/** The interleaving scenarios of ./interleavings.ts, explored on the in-memory fakes. */
interleavings("memory");
