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

// A raw row becomes the model's input exactly as pgtrain's preprocessors make it.
const toInput = (row) => meta.features.flatMap((f) => {
  const v = row[f.name];
  if (f.kind === 'categorical') { // one-hot; the last slot is out of vocabulary (and NULL)
    const slots = new Array(f.vocabulary.length + 1).fill(0);
    const i = v == null ? -1 : f.vocabulary.indexOf(String(v));
    slots[i < 0 ? f.vocabulary.length : i] = 1;
    return slots;
  }
  if (v == null && !f.has_impute) throw new Error(`column ${f.name} is NULL and has no imputation`);
  const x = v == null ? f.impute : f.pg_type === 'real' ? Math.fround(v) : v;
  return [(x - f.offset) * f.factor];
});

const rows = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = model.predict(tf.tensor2d(rows.map(toInput))).arraySync();
// Regression: out[i][0] is the value. Classification: out[i][j] is the probability of
// meta.classes[j] (of its logit when meta.from_logits).
console.log(JSON.stringify({ label_kind: meta.label_kind, classes: meta.classes ?? null, outputs: out }));
