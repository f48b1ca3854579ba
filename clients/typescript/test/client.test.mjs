// Tests of the client (built into ../dist: run `tsc -p .` first).
//
// "the event stream parser" feeds FtClient canned answers through its `fetch` option.
// "ft serve" runs the real server (FT_BINARY, default build/ft of the repository) on a
// tiny model and trains on 64 addition records; it is skipped when there is no binary.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { FtClient, FtError } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const repository = resolve(here, '../../..');
const binary = resolve(process.env.FT_BINARY ?? join(repository, 'build/ft'));
const addition = join(repository, 'examples/data/addition');

/** A fetch that answers every request with `body` given as these pieces, and records the requests. */
function cannedFetch(pieces, { status = 200, requests = [] } = {}) {
  return async (url, init) => {
    requests.push({ url, init });
    const body = new ReadableStream({
      start(controller) {
        for (const piece of pieces) controller.enqueue(piece);
        controller.close();
      },
    });
    return new Response(body, { status });
  };
}

/** `text` as UTF-8 bytes cut into pieces of `size` bytes (which may split a character). */
function bytePieces(text, size) {
  const bytes = new TextEncoder().encode(text);
  const pieces = [];
  for (let i = 0; i < bytes.length; i += size) pieces.push(bytes.subarray(i, i + size));
  return pieces;
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

/** A check for assert.rejects: an FtError of this status and code. */
function ftError(status, code) {
  return (error) => {
    assert.ok(error instanceof FtError, `expected an FtError, got ${error}`);
    assert.equal(error.status, status, error.message);
    assert.equal(error.code, code, error.message);
    return true;
  };
}

describe('the event stream parser', () => {
  // Every line ending, a comment, an event before any id, data over two lines, a character
  // of two bytes, an id that carries over, an event of another name, one without data and an
  // unfinished last one.
  const stream =
    ': keep-alive\r\n\r\n' +
    'event: status\ndata: {"status": "queued"}\n\n' +
    'id: 0\r\nevent: started\r\ndata: {"step": 0, "total_steps": 8, "config": {"name": "é"}}\r\n\r\n' +
    'id:1\nevent:step\ndata:{"step": 1,\ndata: "loss": 2.5}\n\n' +
    'id: 2\revent: future-event\rdata: {}\r\r' +
    'event: checkpoint\ndata: {"step": 1, "folder": "checkpoints/step-1"}\n\n' +
    'id: 3\nevent: best\n\n' +
    'id: 4\nevent: finished\ndata: {"step": 8, "reason": "finished"}\n';
  const expected = [
    { id: -1, event: 'status', data: { status: 'queued' } },
    { id: 0, event: 'started', data: { step: 0, total_steps: 8, config: { name: 'é' } } },
    { id: 1, event: 'step', data: { step: 1, loss: 2.5 } },
    { id: 2, event: 'checkpoint', data: { step: 1, folder: 'checkpoints/step-1' } },
  ];

  it('reads the same events from pieces of any size', async () => {
    const length = new TextEncoder().encode(stream).length;
    for (let size = 1; size <= length; size++) {
      const ft = new FtClient({ baseUrl: 'http://ft.test', fetch: cannedFetch(bytePieces(stream, size)) });
      assert.deepEqual(await collect(ft.events('j-1')), expected, `pieces of ${size} bytes`);
    }
  });

  it('ends a line on a \\r that ends the stream', async () => {
    const ft = new FtClient({
      baseUrl: 'http://ft.test',
      fetch: cannedFetch(bytePieces('id: 7\revent: failed\rdata: {"step": 3, "error": "x"}\r\r', 1000)),
    });
    assert.deepEqual(await collect(ft.events('j-1')), [{ id: 7, event: 'failed', data: { step: 3, error: 'x' } }]);
  });

  it('sends the token, the Accept header and ?from', async () => {
    const requests = [];
    const ft = new FtClient({ baseUrl: 'http://ft.test/', token: 'secret', fetch: cannedFetch([], { requests }) });
    assert.deepEqual(await collect(ft.events('j 1', { from: 3 })), []);
    assert.equal(requests.length, 1);
    assert.equal(requests[0].url, 'http://ft.test/api/v1/jobs/j%201/events?from=3');
    assert.equal(requests[0].init.headers.Authorization, 'Bearer secret');
    assert.equal(requests[0].init.headers.Accept, 'text/event-stream');
  });

  it('keeps / in artifact names and encodes the rest', async () => {
    const requests = [];
    const ft = new FtClient({ baseUrl: 'http://ft.test', fetch: cannedFetch([new Uint8Array([1, 2])], { requests }) });
    const bytes = await ft.downloadArtifact('j-1', 'adapter/a b#1.safetensors');
    assert.deepEqual(new Uint8Array(bytes), new Uint8Array([1, 2]));
    assert.equal(requests[0].url, 'http://ft.test/api/v1/jobs/j-1/artifacts/adapter/a%20b%231.safetensors');
  });

  it('throws FtError from an error answer, with or without a JSON body', async () => {
    const body = new TextEncoder().encode('{"error": {"code": "not_found", "message": "no job j-1"}}');
    const ft = new FtClient({ baseUrl: 'http://ft.test', fetch: cannedFetch([body], { status: 404 }) });
    await assert.rejects(ft.getJob('j-1'), ftError(404, 'not_found'));
    const proxy = new FtClient({ baseUrl: 'http://ft.test', fetch: cannedFetch(bytePieces('Bad Gateway', 100), { status: 502 }) });
    await assert.rejects(proxy.health(), ftError(502, 'http_502'));
  });
});

describe('waitForJob', () => {
  const job = (status) => new TextEncoder().encode(JSON.stringify({ id: 'j-1', status }));

  it('asks for the job when the stream ends before it', async () => {
    const statuses = ['running', 'running', 'succeeded'];
    const fetch = async (url, init) => {
      if (url.endsWith('/events')) return cannedFetch([])(url, init);
      return cannedFetch([job(statuses.shift())])(url, init);
    };
    const ft = new FtClient({ baseUrl: 'http://ft.test', fetch });
    assert.equal((await ft.waitForJob('j-1', { timeoutMs: 10_000 })).status, 'succeeded');
    assert.deepEqual(statuses, []);
  });

  it('gives up after timeoutMs', async () => {
    // A stream that stays open until the request is aborted, as fetch's does.
    const fetch = async (url, init) => new Response(new ReadableStream({
      start(controller) {
        init.signal.addEventListener('abort', () => controller.error(init.signal.reason));
      },
    }));
    const ft = new FtClient({ baseUrl: 'http://ft.test', fetch });
    await assert.rejects(ft.waitForJob('j-1', { timeoutMs: 50 }), /did not end within 50 ms/);
  });
});

describe('ft serve', { skip: existsSync(binary) ? false : `no ft binary at ${binary} (set FT_BINARY)` }, () => {
  const token = 'test-token-0123456789';
  const env = { ...process.env, FT_DEVICE: 'cpu' };
  let tmp;
  let server;
  let serverExited;
  let serverOutput = '';
  let baseUrl;
  let ft;
  let config;
  let jobId;

  /** Starts the server and resolves to its address, from the first http://127.0.0.1:PORT it prints. */
  function startServer() {
    server = spawn(
      binary,
      ['serve', '--port', '0', '--token-file', join(tmp, 'token'), '--root', tmp,
        '--jobs-dir', join(tmp, 'jobs'), '--max-concurrent', '1'],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    serverExited = new Promise((resolve) => server.on('exit', resolve));
    server.stderr.on('data', (data) => { serverOutput += data; });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ft serve printed no address in 30 s:\n${serverOutput}`)), 30_000);
      let stdout = '';
      server.stdout.on('data', (data) => {
        serverOutput += data;
        stdout += data;
        const match = /http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
        if (match !== null) {
          clearTimeout(timer);
          resolve(`http://127.0.0.1:${match[1]}`);
        }
      });
      server.on('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`ft serve exited (${code ?? signal}) before printing its address:\n${serverOutput}`));
      });
    });
  }

  function firstLines(file, count) {
    return readFileSync(file, 'utf8').split('\n').slice(0, count).join('\n') + '\n';
  }

  before(async () => {
    tmp = realpathSync(mkdtempSync(join(tmpdir(), 'ft-client-')));
    execFileSync(binary, ['init', '--arch', 'llama', '--size', 'tiny', '--seed', '1', '--out', join(tmp, 'model')],
      { env, stdio: 'pipe' });
    mkdirSync(join(tmp, 'data'));
    writeFileSync(join(tmp, 'data/train.jsonl'), firstLines(join(addition, 'train.jsonl'), 64));
    writeFileSync(join(tmp, 'data/valid.jsonl'), firstLines(join(addition, 'valid.jsonl'), 16));
    writeFileSync(join(tmp, 'token'), `${token}\n`);
    baseUrl = await startServer();
    ft = new FtClient({ baseUrl, token });
    config = {
      name: 'addition-test',
      baseModel: join(tmp, 'model'),
      dataset: {
        trainingData: join(tmp, 'data/train.jsonl'),
        validationData: join(tmp, 'data/valid.jsonl'),
        format: 'chat',
      },
      parameters: { batchSize: 2, sequenceLength: 128, loraRank: 4 },
      iterations: 8,
      evalEvery: 4,
      seed: 1,
    };
  });

  after(async () => {
    if (server !== undefined && server.exitCode === null && server.signalCode === null) {
      server.kill('SIGTERM');
      const stopped = await Promise.race([serverExited.then(() => true), sleep(10_000, false, { ref: false })]);
      if (!stopped) {
        server.kill('SIGKILL');
        await serverExited;
      }
    }
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  });

  /** The job's log, to explain a failure. */
  async function logOf(id) {
    return `log of ${id}:\n${await ft.logs(id).catch((error) => String(error))}`;
  }

  it('answers health without a token', async () => {
    const health = await new FtClient({ baseUrl }).health();
    assert.equal(health.status, 'ok');
    assert.equal(typeof health.version, 'string');
    assert.equal(health.queued, 0);
    assert.equal(health.running, 0);
  });

  it('refuses requests without the token or with a wrong one (401)', async () => {
    await assert.rejects(new FtClient({ baseUrl }).listJobs(), ftError(401, 'unauthorized'));
    await assert.rejects(new FtClient({ baseUrl, token: 'wrong' }).listJobs(), ftError(401, 'unauthorized'));
  });

  it('creates a job from the client shape', async () => {
    const job = await ft.createJob(config);
    jobId = job.id;
    assert.equal(typeof job.id, 'string');
    assert.equal(job.name, 'addition-test');
    assert.ok(['queued', 'running'].includes(job.status), job.status);
    assert.equal(job.finished_at, null);
    assert.equal(job.error, null);
    const listed = await ft.listJobs();
    assert.deepEqual(listed.map((j) => j.id), [jobId]);
  });

  it('streams the events of the run and ends after it', { timeout: 120_000 }, async () => {
    const events = await collect(ft.events(jobId, { signal: AbortSignal.timeout(120_000) }));
    const names = events.map((e) => e.event);
    // The run's events are numbered from 0; a status event has the id of the one before it.
    const numbered = events.filter((e) => e.event !== 'status');
    assert.deepEqual(numbered.map((e) => e.id), numbered.map((_, i) => i), `events: ${names}`);
    events.forEach((e, i) => {
      if (e.event === 'status') assert.equal(e.id, i === 0 ? -1 : events[i - 1].id);
    });
    assert.equal(numbered[0]?.event, 'started', `events: ${names}`);
    assert.equal(numbered[0].data.step, 0);
    assert.equal(numbered[0].data.total_steps, 8);
    assert.equal(typeof numbered[0].data.config, 'object');

    const steps = events.filter((e) => e.event === 'step').map((e) => e.data);
    assert.ok(steps.length >= 2, `step events: ${steps.length}`);
    for (let i = 1; i < steps.length; i++) assert.ok(steps[i].step > steps[i - 1].step);
    for (const step of steps) {
      assert.ok(Number.isFinite(step.loss), `loss ${step.loss}`);
      assert.equal(step.total_steps, 8);
    }
    assert.equal(steps.at(-1).step, 8);
    assert.equal(steps.at(-1).epoch, 0.25);  // 8 batches of 2 of the 64 training records
    assert.ok(names.includes('evaluation'), `events: ${names}`);
    assert.ok(names.includes('finished'), `events: ${names}`);
    const last = events.at(-1);
    assert.equal(last.event, 'status', `events: ${names}`);
    assert.equal(last.data.status, 'succeeded', await logOf(jobId));
  });

  it('starts the stream at the event given by from', async () => {
    const runEvents = (events) => events.filter((e) => e.event !== 'status');
    const all = runEvents(await collect(ft.events(jobId)));
    const rest = runEvents(await collect(ft.events(jobId, { from: 2 })));
    assert.deepEqual(rest, all.filter((e) => e.id >= 2));
  });

  it('waits for the job to succeed', { timeout: 120_000 }, async () => {
    const seen = [];
    const job = await ft.waitForJob(jobId, { timeoutMs: 120_000, onEvent: (e) => seen.push(e.event) });
    assert.equal(job.status, 'succeeded', await logOf(jobId));
    assert.ok(seen.includes('started') && seen.includes('step'), `events: ${seen}`);
    assert.equal(job.progress?.completion_percentage, 100);
    assert.equal(job.progress.step, 8);
    assert.equal(job.progress.total_steps, 8);
    assert.equal(job.metrics?.step, 8);
    assert.ok(Number.isFinite(job.metrics.loss));
    assert.equal(typeof job.best_evaluation?.loss, 'number');
    assert.equal(job.error, null);
    assert.notEqual(job.started_at, null);
    assert.notEqual(job.finished_at, null);
    assert.equal(job.attempts, 1);
  });

  it('lists jobs by status', async () => {
    assert.deepEqual((await ft.listJobs('succeeded')).map((j) => j.id), [jobId]);
    assert.deepEqual(await ft.listJobs('queued'), []);
  });

  it('gives the log, from an offset too', async () => {
    const log = await ft.logs(jobId);
    assert.ok(log.length > 0);
    assert.equal(await ft.logs(jobId, 10), Buffer.from(log).subarray(10).toString());
  });

  it('gives the metrics of every step', async () => {
    const metrics = await ft.metrics(jobId);
    assert.deepEqual(metrics.steps.map((s) => s.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    for (const step of metrics.steps) assert.ok(Number.isFinite(step.loss));
    assert.deepEqual(metrics.evaluations.map((e) => e.step), [4, 8]);
  });

  it('lists and downloads the adapter', async () => {
    const artifacts = await ft.artifacts(jobId);
    const adapter = artifacts.find((a) => /^adapter\/.*\.safetensors$/.test(a.name));
    assert.ok(adapter !== undefined, `artifacts: ${artifacts.map((a) => a.name)}`);
    assert.ok(adapter.bytes > 0);
    const bytes = await ft.downloadArtifact(jobId, adapter.name);
    assert.equal(bytes.byteLength, adapter.bytes);
  });

  it('refuses a model outside the roots (403)', async () => {
    await assert.rejects(ft.createJob({ ...config, baseModel: '/etc' }), ftError(403, 'forbidden'));
  });

  it('refuses a model folder that does not exist (422)', async () => {
    await assert.rejects(ft.createJob({ ...config, baseModel: join(tmp, 'no-such-model') }), ftError(422, 'invalid_config'));
  });

  it('refuses to cancel or resume a job that succeeded (409)', async () => {
    await assert.rejects(ft.cancelJob(jobId), ftError(409, 'conflict'));
    await assert.rejects(ft.resumeJob(jobId), ftError(409, 'conflict'));
  });

  it('deletes a job and its folder', async () => {
    await ft.deleteJob(jobId);
    await assert.rejects(ft.getJob(jobId), ftError(404, 'not_found'));
    assert.ok(!existsSync(join(tmp, 'jobs', jobId)));
    assert.deepEqual(await ft.listJobs(), []);
  });
});
