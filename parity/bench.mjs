// TensorFlow.js side of pgtrain's model benchmark (bench/modelbench runs it).
//
//   node parity/bench.mjs small|large rows epochs
//
// Builds the benchmark model natively in TF.js (pure-JS cpu backend), trains it with Adam on
// random data with shuffling off, and prints its throughput as JSON: "samples_per_sec" from the
// fastest epoch, "mean_samples_per_sec" over all of them.
import * as tf from '@tensorflow/tfjs';

const [, , which, rowsArg, epochsArg] = process.argv;
const rows = Number(rowsArg);
const epochs = Number(epochsArg ?? 1);
if (!['small', 'large'].includes(which) || !(rows > 0) || !(epochs > 0)) {
  console.error('usage: node bench.mjs small|large rows [epochs]');
  process.exit(2);
}

await tf.setBackend('cpu');
await tf.ready();

const cfg = which === 'small'
  ? { inputs: 16, hidden: [64, 64], outputs: 1, activation: 'linear', loss: 'meanSquaredError', batch: 256 }
  : { inputs: 256, hidden: [512, 512], outputs: 10, activation: 'softmax', loss: 'categoricalCrossentropy', batch: 1024 };

const model = tf.sequential();
cfg.hidden.forEach((units, i) => {
  model.add(tf.layers.dense(i === 0 ? { inputShape: [cfg.inputs], units, activation: 'relu' } : { units, activation: 'relu' }));
});
model.add(tf.layers.dense({ units: cfg.outputs, activation: cfg.activation }));
model.compile({ optimizer: tf.train.adam(0.001), loss: cfg.loss });

const x = tf.randomNormal([rows, cfg.inputs], 0, 1, 'float32', 1);
let y;
if (cfg.outputs === 1) {
  y = tf.randomNormal([rows, 1], 0, 1, 'float32', 2);
} else {
  y = tf.oneHot(tf.randomUniform([rows], 0, cfg.outputs, 'int32', 3), cfg.outputs).toFloat();
}

// One warm-up batch, so that one-time set-up is not timed.
await model.fit(x.slice([0, 0], [cfg.batch, cfg.inputs]), y.slice([0, 0], [cfg.batch, cfg.outputs]),
  { batchSize: cfg.batch, epochs: 1, shuffle: false, verbose: 0 });

// Each epoch is timed on its own; the best epoch is the throughput (the machine may be shared),
// as on the Go side.
const epochSeconds = [];
let mark = process.hrtime.bigint();
const t0 = mark;
await model.fit(x, y, {
  batchSize: cfg.batch, epochs, shuffle: false, verbose: 0,
  callbacks: {
    onEpochEnd: async () => {
      const now = process.hrtime.bigint();
      epochSeconds.push(Number(now - mark) / 1e9);
      mark = process.hrtime.bigint();
    },
  },
});
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const best = Math.min(...epochSeconds);
console.log(JSON.stringify({
  model: which, rows, epochs, batch: cfg.batch, seconds, epoch_seconds: epochSeconds,
  samples_per_sec: rows / best, mean_samples_per_sec: (rows * epochs) / seconds,
  tfjs: tf.version.tfjs, backend: tf.getBackend(),
}));
