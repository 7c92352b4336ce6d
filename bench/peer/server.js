// The peer: what a user could pick instead of Orchard. A Node.js HTTP server
// that classifies one POSTed image with sharp (libvips: JPEG shrink-on-load,
// EXIF rotation, flatten on the background, contain-fit, Catmull-Rom) and
// onnxruntime-node (one intra-op thread), with the same model and the same
// preprocessing semantics as Orchard's shared/preprocess.
//
//   node server.js MODEL_DIR PORT
//
// POST /      image bytes -> {"predictions":[{label,score}...]} (top 5)
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const sharp = require('sharp');
const ort = require('onnxruntime-node');

sharp.cache(false);       // every request pays its own decode, as Orchard's do
sharp.concurrency(1);     // one libvips thread, like Orchard's one core per image

async function main() {
  const [dir, port] = process.argv.slice(2);
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const pre = meta.preprocessing;
  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'), {
    intraOpNumThreads: 1, interOpNumThreads: 1,
  });
  const [r, g, b] = pre.background;
  const bg = { r, g, b, alpha: 1 };
  const n = pre.size;

  async function classify(buf) {
    const px = await sharp(buf, { limitInputPixels: 40e6 })
      .rotate()                                  // EXIF orientation
      .flatten({ background: bg })               // transparency over the background
      .resize(n, n, { fit: 'contain', background: bg, kernel: 'cubic' })
      .removeAlpha()
      .raw()
      .toBuffer();
    const x = new Float32Array(3 * n * n);
    for (let i = 0; i < n * n; i++) {
      for (let c = 0; c < 3; c++) {
        const v = (px[3 * i + c] / 255 - pre.mean[c]) / pre.std[c];
        if (pre.layout === 'NHWC') x[3 * i + c] = v; else x[c * n * n + i] = v;
      }
    }
    const shape = pre.layout === 'NHWC' ? [1, n, n, 3] : [1, 3, n, n];
    const out = await session.run({ [meta.input.name]: new ort.Tensor('float32', x, shape) });
    const logits = out[meta.output.name].data;
    const m = Math.max(...logits);
    const e = Array.from(logits, (l) => Math.exp(l - m));
    const s = e.reduce((a, v) => a + v, 0);
    return meta.labels.map((label, i) => ({ label, score: e[i] / s }))
      .sort((p, q) => q.score - p.score).slice(0, 5);
  }

  http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        const predictions = await classify(Buffer.concat(chunks));
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ predictions }));
      } catch (err) {
        res.statusCode = 400;
        res.end(JSON.stringify({ error: String(err) }));
      }
    });
  }).listen(Number(port), '127.0.0.1', () => console.log(`peer: listening on ${port}`));
}

main().catch((err) => { console.error(err); process.exit(1); });
