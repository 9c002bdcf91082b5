// Fake model provider for the end-to-end test: speaks the Anthropic Messages API (the `api`
// of the seed's MiniMax block, "anthropic-messages") on loopback and always answers REPLY.
// Streams (SSE) when the request asks for it, plain JSON otherwise. One JSON line per request
// goes to stdout (path, model, whether a key was sent; never the key itself).
//
//   node fake-provider.mjs PORT REPLY
import http from 'node:http';

const [port, reply] = [Number(process.argv[2]), process.argv[3]];
if (!port || !reply) {
  console.error('usage: node fake-provider.mjs PORT REPLY');
  process.exit(2);
}

function sse(res, event, data) {
  res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`);
}

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    let parsed = {};
    try { parsed = JSON.parse(body || '{}'); } catch { /* logged below as model=undefined */ }
    console.log(JSON.stringify({
      method: req.method, path: req.url, model: parsed.model, stream: !!parsed.stream,
      key: Boolean(req.headers['x-api-key'] || req.headers.authorization),
    }));
    if (req.method !== 'POST' || !req.url.endsWith('/messages')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: req.url } }));
      return;
    }
    const message = {
      id: `msg_e2e_${Date.now()}`, type: 'message', role: 'assistant', model: parsed.model ?? 'fake',
      stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 },
    };
    if (!parsed.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...message, content: [{ type: 'text', text: reply }], stop_reason: 'end_turn' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    sse(res, 'message_start', { message: { ...message, content: [] } });
    sse(res, 'content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    sse(res, 'content_block_delta', { index: 0, delta: { type: 'text_delta', text: reply } });
    sse(res, 'content_block_stop', { index: 0 });
    sse(res, 'message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 9 } });
    sse(res, 'message_stop', {});
    res.end();
  });
});
server.listen(port, '127.0.0.1', () => console.log(JSON.stringify({ listening: port })));
for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => server.close(() => process.exit(0)));
