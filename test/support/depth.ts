/**
 * How far the explorations go. `npm test` (and CI) runs every test at its default depth, sized
 * so that the whole suite fits a few minutes on two cores; `npm run test:deep`
 * (`BITS_TEST_DEPTH=deep`) runs the same tests with the larger explorations, loads and schedule
 * counts they were written with (docs/testing.md).
 */
export const DEEP = process.env.BITS_TEST_DEPTH === "deep";

/** `usual` at the default depth, `deep` under `BITS_TEST_DEPTH=deep`. */
export const depth = <T>(usual: T, deep: T): T => (DEEP ? deep : usual);
