// Starts the S3-compatible test store: node start.js --dir DIR [--port N] [--bucket NAME]... [--cert F --key F]
// Path-style requests only; credentials S3RVER / S3RVER (the store's own account), signatures verified. Prints
// "ready PORT" once it listens (port 0 picks a free one), and stops on SIGTERM or SIGINT.
'use strict';
const fs = require('fs');
const S3rver = require('@20minutes/s3rver');

const args = process.argv.slice(2);
const opts = { port: 0, address: '127.0.0.1', silent: true, vhostBuckets: false, configureBuckets: [] };
for (let i = 0; i < args.length; i += 2) {
  const value = args[i + 1];
  switch (args[i]) {
    case '--dir': opts.directory = value; break;
    case '--port': opts.port = Number(value); break;
    case '--bucket': opts.configureBuckets.push({ name: value, configs: [] }); break;
    case '--cert': opts.cert = fs.readFileSync(value); break;
    case '--key': opts.key = fs.readFileSync(value); break;
    default:
      console.error('unknown option ' + args[i]);
      process.exit(2);
  }
}
if (!opts.directory) {
  console.error('--dir is required');
  process.exit(2);
}
const server = new S3rver(opts);
server.run().then((address) => console.log('ready ' + address.port), (err) => {
  console.error(String(err));
  process.exit(1);
});
const stop = () => server.close().then(() => process.exit(0), () => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
