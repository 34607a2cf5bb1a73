import { interleavings } from "./interleavings.ts";

/** The interleaving scenarios of ./interleavings.ts, explored on moto. */
interleavings("moto");
