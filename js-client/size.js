// Measures the client as shipped: minified with terser, then gzipped. Prints one JSON line.
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { minify } = require('terser');

async function measure() {
  const src = fs.readFileSync(path.join(__dirname, 'ferry.js'), 'utf8');
  const min = (await minify(src, { compress: true, mangle: true })).code;
  return {
    source: Buffer.byteLength(src),
    minified: Buffer.byteLength(min),
    gzipped: zlib.gzipSync(min, { level: 9 }).length,
    limit: 5120,
  };
}

module.exports = { measure };
if (require.main === module) measure().then((r) => console.log(JSON.stringify(r)));
