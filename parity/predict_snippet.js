// node predict_snippet.js MODEL_DIR < rows.json   (rows: [{"column": value or null, ...}, ...])
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs';

const dir = process.argv[2]; // what `pgtrain models pull ID DIR` wrote
const modelJSON = JSON.parse(fs.readFileSync(`${dir}/model.json`, 'utf8'));
const model = await tf.loadLayersModel({
  load: () => tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => [
    manifest.flatMap((g) => g.weights),
    tf.io.concatenateArrayBuffers(manifest.flatMap((g) => g.paths.map((p) => new Uint8Array(fs.readFileSync(`${dir}/${p}`)).buffer))),
  ]),
});
const meta = model.getUserDefinedMetadata().pgtrain;

// 32-bit FNV-1a of the UTF-8 bytes: the bucket of a hashed column's value.
const fnv1a = (s) => new TextEncoder().encode(s).reduce((h, b) => Math.imul(h ^ b, 16777619) >>> 0, 2166136261);
// sin and cos of the time of day, the day of week (Sunday 0) and the day of year, in UTC.
const cyclical = (s) => {
  const days = Math.floor(s / 86400), d = new Date(days * 864e5), y = d.getUTCFullYear();
  const yday = (d - Date.UTC(y, 0, 1)) / 864e5, leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  return [s / 86400 - days, (((days + 4) % 7) + 7) % 7 / 7, yday / (leap ? 366 : 365)]
    .flatMap((x) => [Math.sin(2 * Math.PI * x), Math.cos(2 * Math.PI * x)]);
};
// One number of column f (e: its transform, or an array element's): dates and timestamps
// are seconds since 1970 UTC (a timestamp without time zone is read as UTC), booleans 0 or 1.
const number = (f, e, v) => {
  if (v == null && !e.has_impute) throw new Error(`column ${f.name} is NULL and has no imputation`);
  const x = v == null ? e.impute : f.type === 'boolean' ? Number(v)
    : ['date', 'timestamp', 'timestamptz'].includes(f.type) ? Date.parse(f.type === 'timestamp' ? `${v}Z` : v) / 1000
    : f.pg_type === 'real' || f.type === 'real[]' ? Math.fround(v) : v;
  return f.encode === 'cyclical' ? cyclical(x) : [(x - e.offset) * e.factor];
};

// A raw row becomes the model's input exactly as pgtrain's preprocessors make it.
const toInput = (row) => meta.features.flatMap((f) => {
  const v = row[f.name];
  if (f.kind === 'categorical') { // one-hot; the last slot is out of vocabulary (and NULL)
    const n = f.encode === 'hash' ? f.buckets : f.vocabulary.length + 1, slots = new Array(n).fill(0);
    if (f.encode === 'hash') { if (v != null) slots[fnv1a(String(v)) % n] = 1; return slots; } // NULL: no slot
    const i = v == null ? -1 : f.vocabulary.indexOf(String(v));
    slots[i < 0 ? n - 1 : i] = 1;
    return slots;
  }
  return f.elements ? f.elements.flatMap((e, j) => number(f, e, v?.[j])) : number(f, f, v);
});

const rows = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = model.predict(tf.tensor2d(rows.map(toInput))).arraySync();
// Regression: out[i][0] is the value. Classification: out[i][j] is the probability of
// meta.classes[j] (of its logit when meta.from_logits).
console.log(JSON.stringify({ label_kind: meta.label_kind, classes: meta.classes ?? null, outputs: out }));
