import uWS from 'uWebSockets.js';

// The upper bound for HTTP publish: uWS reading a body and answering 202, with no gateway work at all.
const app = uWS.App();
app.post('/*', (res) => {
  res.onAborted(() => {});
  res.onData((_chunk, isLast) => {
    if (isLast) res.writeStatus('202 Accepted').end();
  });
});
app.listen('127.0.0.1', 0, (token) => {
  if (!token) process.exit(1);
  process.stdout.write(`listening ${uWS.us_socket_local_port(token)}\n`);
});
process.on('SIGTERM', () => process.exit(0));
