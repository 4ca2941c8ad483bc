// An Express service for the edgetrim fleet on 127.0.0.1:18102.
// GET / returns a fixed greeting; GET /info returns JSON with the Express version, read from
// its package.json, and a SHA-256 digest computed with node's crypto module (OpenSSL).
'use strict';

const crypto = require('crypto');
const express = require('express');
const expressVersion = require('express/package.json').version;

const HOST = '127.0.0.1';
const PORT = 18102;

const app = express();

app.get('/', (request, response) => {
  response.type('text/plain').send('node-web: hello from Express\n');
});

app.get('/info', (request, response) => {
  const digest = crypto.createHash('sha256').update('node-web').digest('hex');
  response.json({ express: expressVersion, sha256: digest });
});

const server = app.listen(PORT, HOST, () => {
  console.log(`node-web listening on ${HOST}:${PORT}`);
});

// Node ignores SIGTERM as a container's PID 1 unless a handler is installed.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
