// TensorFlow.js reference runs for pgtrain's Go model engine.
//
//   node parity/run.mjs cases.json out.json
//
// cases.json is {"cases": [case, ...]}; out.json receives {"results": [result, ...]} in the same
// order. A case is one of:
//
//   {"mode": "fit", "model_dir": dir, ...}   load the TF.js Layers model pgtrain wrote to dir
//       (through a custom IOHandler), predict "predict_x" before training, compile with
//       "compile", fit on x/y (shuffle off) and report the history, every weight and the
//       predictions after training; "class_weight" is fit's classWeight. Weight constraints
//       the model.json names are applied after every batch, as Keras's optimizers do (TF.js's
//       fit leaves them out; their projections are TF.js's own).
//   {"mode": "save", "out_dir": dir, ...}    build a model natively in TF.js, train it briefly,
//       save it to out_dir through tf.io.withSaveHandler and report its predictions.
//
// Only the pure-JS cpu backend is used, so runs are deterministic and need no native code.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';

const [, , casesPath, outPath] = process.argv;
if (!casesPath || !outPath) {
  console.error('usage: node run.mjs cases.json out.json');
  process.exit(2);
}

await tf.setBackend('cpu');
await tf.ready();

// A TF.js IOHandler reading model.json and its shards from a directory (file:// URLs do not
// work under plain @tensorflow/tfjs in Node).
function dirHandler(dir) {
  return {
    load: async () => {
      const modelJSON = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = [];
        const buffers = [];
        for (const group of manifest) {
          for (const p of group.paths) {
            const b = fs.readFileSync(path.join(dir, p));
            buffers.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
          }
          specs.push(...group.weights);
        }
        return [specs, tf.io.concatenateArrayBuffers(buffers)];
      });
    },
  };
}

function saveHandler(dir) {
  return tf.io.withSaveHandler(async (artifacts) => {
    fs.mkdirSync(dir, { recursive: true });
    const data = Array.isArray(artifacts.weightData)
      ? tf.io.concatenateArrayBuffers(artifacts.weightData)
      : artifacts.weightData;
    fs.writeFileSync(path.join(dir, 'group1-shard1of1.bin'), Buffer.from(data));
    const modelJSON = {
      format: artifacts.format,
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy ?? null,
      modelTopology: artifacts.modelTopology,
      weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: artifacts.weightSpecs }],
    };
    if (artifacts.trainingConfig) modelJSON.trainingConfig = artifacts.trainingConfig;
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(modelJSON));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  });
}

function optimizer(o) {
  switch (o.name) {
    case 'sgd':
      if (o.momentum > 0) return tf.train.momentum(o.learning_rate, o.momentum, !!o.nesterov);
      return tf.train.sgd(o.learning_rate);
    case 'adam':
      return tf.train.adam(o.learning_rate, o.beta_1, o.beta_2, o.epsilon);
    case 'rmsprop':
      return tf.train.rmsprop(o.learning_rate, o.rho, o.momentum ?? 0, o.epsilon, false);
    default:
      throw new Error(`optimizer ${o.name} has no TF.js equivalent`);
  }
}

// Losses by pgtrain's canonical names. TF.js's compile takes no from_logits, so the logits
// forms (and Huber, whose TF.js form reduces differently) are given as functions with
// Keras's per-sample reduction; fit then averages over the batch.
function loss(name, fromLogits, delta) {
  const none = tf.Reduction.NONE;
  switch (name) {
    case 'mean_squared_error': return 'meanSquaredError';
    case 'mean_absolute_error': return 'meanAbsoluteError';
    case 'huber':
      return (yt, yp) => tf.mean(tf.losses.huberLoss(yt, yp, undefined, delta, none), -1);
    case 'binary_crossentropy':
      if (fromLogits) return (yt, yp) => tf.mean(tf.losses.sigmoidCrossEntropy(yt, yp, undefined, 0, none), -1);
      return 'binaryCrossentropy';
    case 'categorical_crossentropy':
      if (fromLogits) return (yt, yp) => tf.losses.softmaxCrossEntropy(yt, yp, undefined, 0, none);
      return 'categoricalCrossentropy';
    case 'sparse_categorical_crossentropy':
      // From logits, runFit turns the labels into one-hot rows first: TF.js accepts [B, 1]
      // targets only for its built-in sparse loss.
      if (fromLogits) return (yt, yp) => tf.losses.softmaxCrossEntropy(yt, yp, undefined, 0, none);
      return 'sparseCategoricalCrossentropy';
    default:
      throw new Error(`loss ${name} has no TF.js equivalent`);
  }
}

function t2(values, rows, cols) {
  return tf.tensor2d(Float32Array.from(values), [rows, cols], 'float32');
}

function weightsOf(model) {
  return model.weights.map((w) => ({
    name: w.originalName,
    shape: w.shape,
    values: Array.from(w.read().dataSync()),
  }));
}

function historyOf(h) {
  const out = {};
  for (const [k, v] of Object.entries(h.history)) out[k] = v.map((x) => (typeof x === 'number' ? x : x.dataSync()[0]));
  return out;
}

async function runFit(c) {
  const model = await tf.loadLayersModel(dirHandler(c.model_dir));
  const res = {};
  if (c.predict_x) {
    res.predictions_before = Array.from(model.predict(t2(c.predict_x, c.predict_rows, c.input_dim)).dataSync());
  }
  if (c.epochs > 0) {
    const comp = c.compile;
    model.compile({
      optimizer: optimizer(comp.optimizer),
      loss: loss(comp.loss, comp.from_logits, comp.huber_delta),
      metrics: comp.metrics ?? [],
    });
    const x = t2(c.x, c.rows, c.input_dim);
    const classes = model.outputs[0].shape[1];
    const sparseLogits = comp.loss === 'sparse_categorical_crossentropy' && comp.from_logits;
    const labels = (values, rows) => (sparseLogits
      ? tf.oneHot(tf.tensor1d(Int32Array.from(values), 'int32'), classes).toFloat()
      : t2(values, rows, c.label_dim));
    const y = labels(c.y, c.rows);
    const args = { epochs: c.epochs, batchSize: c.batch_size, shuffle: false, verbose: 0 };
    const constrained = model.trainableWeights.filter((w) => w.constraint != null);
    if (constrained.length > 0) {
      // LayerVariable.write assigns the value, then projects it through the constraint.
      args.callbacks = {
        onBatchEnd: async () => {
          tf.tidy(() => constrained.forEach((w) => w.write(w.read().clone())));
        },
      };
    }
    if (c.validation_split) args.validationSplit = c.validation_split;
    if (c.class_weight) args.classWeight = c.class_weight;
    if (c.val_x) args.validationData = [t2(c.val_x, c.val_rows, c.input_dim), labels(c.val_y, c.val_rows)];
    res.history = historyOf(await model.fit(x, y, args));
    res.weights = weightsOf(model);
    if (c.predict_x) {
      res.predictions_after = Array.from(model.predict(t2(c.predict_x, c.predict_rows, c.input_dim)).dataSync());
    }
  }
  return res;
}

// A model built by TF.js itself (TF.js initialisers and default layer names), trained a
// little so that batch-normalisation statistics move, then saved.
async function runSave(c) {
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [c.input_dim], units: 12, activation: 'relu' }));
  model.add(tf.layers.batchNormalization());
  model.add(tf.layers.dropout({ rate: 0.25 }));
  model.add(tf.layers.dense({ units: 8, activation: 'tanh' }));
  model.add(tf.layers.leakyReLU({ alpha: 0.1 }));
  model.add(tf.layers.activation({ activation: 'elu' }));
  model.add(tf.layers.dense({ units: c.classes, activation: 'softmax', useBias: false }));
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy' });
  await model.fit(t2(c.x, c.rows, c.input_dim), t2(c.y, c.rows, c.classes), { epochs: 2, batchSize: 16, shuffle: false, verbose: 0 });
  await model.save(saveHandler(c.out_dir));
  return {
    predictions: Array.from(model.predict(t2(c.predict_x, c.predict_rows, c.input_dim)).dataSync()),
    weights: weightsOf(model),
  };
}

const { cases } = JSON.parse(fs.readFileSync(casesPath, 'utf8'));
const results = [];
for (const c of cases) {
  try {
    if (c.mode === 'fit') results.push(await runFit(c));
    else if (c.mode === 'save') results.push(await runSave(c));
    else throw new Error(`unknown mode ${c.mode}`);
  } catch (e) {
    results.push({ error: `${c.name ?? c.mode}: ${e.stack ?? e}` });
  }
}
fs.writeFileSync(outPath, JSON.stringify({ tfjs: tf.version.tfjs, backend: tf.getBackend(), results }));
