// A minimal SMTP sink for bench/email/run.sh: accepts every message on 127.0.0.1:PORT and
// keeps nothing but a count (plain SMTP, no TLS, no AUTH; what a local relay answers).
//
//   node smtp-sink.mjs PORT      (PORT 0: a free one; prints "listening PORT")
//
// On SIGTERM it prints "received COUNT" and exits.
import net from 'node:net';

let received = 0;
const server = net.createServer((socket) => {
  let buffered = '';
  let inData = false;
  const reply = (line) => socket.write(`${line}\r\n`);
  reply('220 sink ESMTP');
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk) => {
    buffered += chunk.toString('latin1');
    let end;
    while ((end = buffered.indexOf('\r\n')) >= 0) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (inData) {
        if (line === '.') {
          inData = false;
          received += 1;
          reply('250 2.0.0 queued');
        }
        continue;
      }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO') reply('250 sink');
      else if (verb === 'HELO' || verb === 'MAIL' || verb === 'RCPT') reply('250 2.1.0 ok');
      else if (verb === 'RSET' || verb === 'NOOP') reply('250 2.0.0 ok');
      else if (verb === 'DATA') {
        inData = true;
        reply('354 end with .');
      } else if (verb === 'QUIT') {
        reply('221 2.0.0 bye');
        socket.end();
      } else reply('502 5.5.2 not implemented');
    }
  });
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => {
  console.log(`received ${received}`);
  process.exit(0);
});
