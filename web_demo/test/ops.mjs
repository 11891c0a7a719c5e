/**
 * The loop both Node test scripts run (`node_ops.mjs`, `dicom_ops.mjs`): read `{cases}` as JSON from
 * stdin, run each case's `op`, write `{results}` to stdout. One failing case never stops the others:
 * it gives `{ok: false, error: "Name: message", class}`.
 *
 * @module test/ops
 */

/**
 * Runs every case on stdin through `ops` and prints the results.
 * @param {Record<string, (c: object) => unknown>} ops
 */
export async function runCases(ops) {
  let input = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) input += chunk;
  const { cases } = JSON.parse(input);
  const results = [];
  for (const c of cases) {
    const t0 = performance.now();
    try {
      results.push({ ok: true, result: await ops[c.op](c), ms: performance.now() - t0 });
    } catch (err) {
      const name = err?.name ?? 'Error';
      results.push({ ok: false, error: `${name}: ${err?.message ?? err}`, class: name, ms: performance.now() - t0 });
    }
  }
  process.stdout.write(JSON.stringify({ results }));
}
