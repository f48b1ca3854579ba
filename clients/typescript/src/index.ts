// Client of `ft serve`, the fine-tuning job server: its API is docs/serve.md.
//
// It uses only the global fetch, TextDecoder, AbortController and URL, so it runs on
// Node 18+ and in browsers without dependencies. The event stream (Server-Sent Events) is
// parsed here from fetch's body, since EventSource can neither send the Authorization
// header nor run on Node.
//
//   const ft = new FtClient({ baseUrl: 'http://127.0.0.1:8080', token });
//   const job = await ft.createJob({ baseModel: '/data/models/tiny', dataset: {...} });
//   const done = await ft.waitForJob(job.id, { onEvent: (e) => console.log(e) });

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';

/** The body of `POST /api/v1/jobs` in the client's shape; the server maps it to ft's settings. */
export interface FineTuneConfig {
  name?: string;
  /** A model folder inside one of the server's roots, or a Hugging Face id (`ORG/NAME`). */
  baseModel: string;
  dataset: {
    /** A file or folder, or a list of them. */
    trainingData: string | string[];
    validationData?: string;
    /** `custom`: any record form ft reads (ft's `format: auto`). */
    format: 'chat' | 'completion' | 'custom';
  };
  parameters?: {
    learningRate?: number;
    batchSize?: number;
    epochs?: number;
    /** ft's `max-seq-length`. */
    sequenceLength?: number;
    loraRank?: number;
    loraAlpha?: number;
  };
  optimization?: {
    gradientCheckpointing?: boolean;
    /** The training dtype: bfloat16, float16 or float32. */
    mixedPrecision?: 'bf16' | 'fp16' | 'fp32';
  };
  /** QLoRA is `lora` with `quantizeBits`. */
  method?: 'lora' | 'dora' | 'full';
  iterations?: number;
  evalEvery?: number;
  saveEvery?: number;
  seed?: number;
  quantizeBits?: number;
  /** A GGUF file of the result, made after training and listed among the artifacts. */
  export?: { format: 'gguf'; type?: string };
}

export interface JobProgress {
  step: number;
  total_steps: number;
  completion_percentage: number;
  /** Passes over the training data done, in fractions (0.5: half of the first); null before the first step. */
  epoch: number | null;
  elapsed_seconds: number;
  eta_seconds: number | null;
}

/** The latest step's numbers. */
export interface JobMetrics {
  step: number;
  loss: number;
  learning_rate: number;
  grad_norm: number;
  tokens_per_second: number;
  peak_memory_gib: number;
}

/** A validation: on a job (its best one) and in `evaluation` and `best` events. */
export interface Evaluation {
  step: number;
  loss: number;
  perplexity: number;
  accuracy: number;
}

export interface Job {
  id: string;
  name: string;
  status: JobStatus;
  /** ISO 8601 times, in UTC. */
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  attempts: number;
  /** The settings given to `ft train`, in ft's own keys. */
  config: Record<string, unknown>;
  /** Null before the first step. */
  progress: JobProgress | null;
  metrics: JobMetrics | null;
  /** Null before the first evaluation. */
  best_evaluation: Evaluation | null;
  /** A failed job's last line of output. */
  error: string | null;
  exit_code: number | null;
}

export interface StartedEventData {
  /** The step the run starts from: 0, or the checkpoint's when resumed. */
  step: number;
  total_steps: number;
  config: Record<string, unknown>;
}

export interface StepEventData {
  step: number;
  total_steps: number;
  loss: number;
  learning_rate: number;
  grad_norm: number;
  tokens_per_second: number;
  elapsed_seconds: number;
  eta_seconds: number | null;
  peak_memory_gib: number;
  /** Passes over the training data done, in fractions. */
  epoch: number;
}

export interface CheckpointEventData {
  step: number;
  folder: string;
}

export interface FinishedEventData {
  step: number;
  reason: string;
}

export interface FailedEventData {
  step: number;
  error: string;
}

/** One event of a job's stream. */
export interface TrainingEventOf<Name extends string, Data> {
  /**
   * The event's index among the job's events, from 0. The server does not number `status`
   * events: one carries the id of the event before it, or -1 when none came before, so
   * `from: id + 1` always continues the stream after it.
   */
  id: number;
  event: Name;
  data: Data;
}

export type TrainingEvent =
  | TrainingEventOf<'started', StartedEventData>
  | TrainingEventOf<'step', StepEventData>
  | TrainingEventOf<'evaluation', Evaluation>
  | TrainingEventOf<'best', Evaluation>
  | TrainingEventOf<'checkpoint', CheckpointEventData>
  | TrainingEventOf<'finished', FinishedEventData>
  | TrainingEventOf<'failed', FailedEventData>
  /** The job, each time its status changes. */
  | TrainingEventOf<'status', Job>;

/** A step record of the run's metrics.jsonl. */
export interface StepRecord {
  step: number;
  loss: number;
  learning_rate: number;
  grad_norm: number;
  tokens: number;
  tokens_per_second: number;
  /** 1 without loss scaling. */
  loss_scale: number;
  /** The gradients overflowed and the update was skipped. */
  skipped: boolean;
  /** Bytes. */
  peak_memory: number;
}

/** An evaluation record of the run's metrics.jsonl. */
export interface EvaluationRecord {
  step: number;
  val_loss: number;
  val_ppl: number;
  val_accuracy: number;
  val_tokens: number;
}

export interface Metrics {
  steps: StepRecord[];
  evaluations: EvaluationRecord[];
}

export interface Artifact {
  /** The path inside the job's output folder, `/`-separated. */
  name: string;
  bytes: number;
}

export interface Health {
  status: 'ok';
  version: string;
  queued: number;
  running: number;
}

/** An error answer of the server: `status` is the HTTP status, `code` the error's code. */
export class FtError extends Error {
  readonly status: number;
  /** bad_request, unauthorized, forbidden, not_found, conflict, too_large, invalid_config. */
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'FtError';
    this.status = status;
    this.code = code;
  }
}

export interface FtClientOptions {
  /** The server's address, as `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** The bearer token; only `health()` works without it. */
  token?: string;
  /** A replacement for the global fetch. */
  fetch?: typeof fetch;
}

export interface EventsOptions {
  /** The id of the first event to send (`?from=N`); to continue after an event, its id + 1. */
  from?: number;
  signal?: AbortSignal;
}

export interface WaitOptions {
  /** Give up (with an Error) after this long; no limit by default. */
  timeoutMs?: number;
  /** Called with each event of the job's stream while it is followed. */
  onEvent?: (event: TrainingEvent) => void;
}

interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  /** Sent as JSON. */
  body?: unknown;
  accept?: string;
  signal?: AbortSignal;
}

const FINAL_STATUSES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled', 'interrupted']);

const EVENT_NAMES: ReadonlySet<string> = new Set([
  'started', 'step', 'evaluation', 'best', 'checkpoint', 'finished', 'failed', 'status',
]);

/** How often waitForJob asks for the job once its event stream has ended too soon. */
const POLL_INTERVAL_MS = 1000;

export class FtClient {
  private readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly fetchImpl: typeof fetch;

  constructor(options: FtClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.token = options.token;
    // Not the global fetch itself: browsers refuse to call it with the client as `this`.
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  health(): Promise<Health> {
    return this.json('GET', '/api/v1/health');
  }

  /** Checks the settings and queues the job: its status is `queued`. */
  createJob(config: FineTuneConfig | Record<string, unknown>): Promise<Job> {
    return this.json('POST', '/api/v1/jobs', { body: config });
  }

  /** The jobs, newest first; only those of one status when given. */
  async listJobs(status?: JobStatus): Promise<Job[]> {
    const answer = await this.json<{ jobs: Job[] }>('GET', '/api/v1/jobs', { query: { status } });
    return answer.jobs;
  }

  getJob(id: string): Promise<Job> {
    return this.json('GET', jobPath(id));
  }

  /**
   * A queued job is cancelled at once; a running one saves a checkpoint and is `cancelled`
   * when its run has stopped. FtError 409 when the job has ended.
   */
  cancelJob(id: string): Promise<Job> {
    return this.json('POST', jobPath(id, '/cancel'));
  }

  /** Queues a cancelled, failed or interrupted job again; it goes on from its last checkpoint. */
  resumeJob(id: string): Promise<Job> {
    return this.json('POST', jobPath(id, '/resume'));
  }

  /** Removes the job and its folder; FtError 409 while it is queued or running. */
  async deleteJob(id: string): Promise<void> {
    await this.request('DELETE', jobPath(id));
  }

  /** The job's output from byte `offset` on. */
  async logs(id: string, offset?: number): Promise<string> {
    const response = await this.request('GET', jobPath(id, '/logs'), { query: { offset } });
    return response.text();
  }

  /** The records of the run's metrics.jsonl, steps and evaluations apart. */
  metrics(id: string): Promise<Metrics> {
    return this.json('GET', jobPath(id, '/metrics'));
  }

  async artifacts(id: string): Promise<Artifact[]> {
    const answer = await this.json<{ artifacts: Artifact[] }>('GET', jobPath(id, '/artifacts'));
    return answer.artifacts;
  }

  /** The file `name` (as listed by `artifacts`, such as `adapter/adapters.safetensors`). */
  async downloadArtifact(id: string, name: string): Promise<ArrayBuffer> {
    const path = name.split('/').map(encodeURIComponent).join('/');
    const response = await this.request('GET', jobPath(id, `/artifacts/${path}`));
    return response.arrayBuffer();
  }

  /**
   * The job's events: the past ones first, then new ones as they happen. The iteration ends
   * when the server closes the stream, which it does after the job has ended; leaving the
   * loop early or aborting `signal` closes the connection.
   */
  async *events(id: string, options: EventsOptions = {}): AsyncIterable<TrainingEvent> {
    const response = await this.request('GET', jobPath(id, '/events'), {
      query: { from: options.from },
      accept: 'text/event-stream',
      signal: options.signal,
    });
    if (response.body === null) throw new Error(`ft: the event stream of job ${id} has no body`);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new EventStreamParser();
    let ended = false;
    try {
      for (;;) {
        const chunk = await reader.read();
        const messages = chunk.done
          ? parser.end(decoder.decode())
          : parser.push(decoder.decode(chunk.value, { stream: true }));
        for (const message of messages) {
          const event = toTrainingEvent(message);
          if (event !== undefined) yield event;
        }
        if (chunk.done) {
          ended = true;
          return;
        }
      }
    } finally {
      // Left early (break, an error, an abort): close the connection.
      if (!ended) await reader.cancel().catch(() => undefined);
    }
  }

  /**
   * Follows the job's events until it is succeeded, failed, cancelled or interrupted, and
   * returns the job then. Should the stream end before (a proxy's timeout, say), it asks
   * for the job every second instead.
   */
  async waitForJob(id: string, options: WaitOptions = {}): Promise<Job> {
    const controller = new AbortController();
    const timer =
      options.timeoutMs === undefined ? undefined : setTimeout(() => controller.abort(), options.timeoutMs);
    try {
      for await (const event of this.events(id, { signal: controller.signal })) {
        options.onEvent?.(event);
        if (event.event === 'status' && FINAL_STATUSES.has(event.data.status)) break;
      }
      for (;;) {
        const job = await this.json<Job>('GET', jobPath(id), { signal: controller.signal });
        if (FINAL_STATUSES.has(job.status)) return job;
        await delay(POLL_INTERVAL_MS, controller.signal);
      }
    } catch (error) {
      if (controller.signal.aborted) {
        throw new Error(`ft: job ${id} did not end within ${options.timeoutMs} ms`, { cause: error });
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a request with the token; an answer other than 2xx throws FtError. */
  private async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const headers: Record<string, string> = {};
    if (this.token !== undefined) headers['Authorization'] = `Bearer ${this.token}`;
    if (options.accept !== undefined) headers['Accept'] = options.accept;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    const response = await this.fetchImpl(url.href, { method, headers, body, signal: options.signal });
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  private async json<T>(method: string, path: string, options?: RequestOptions): Promise<T> {
    const response = await this.request(method, path, options);
    return (await response.json()) as T;
  }
}

function jobPath(id: string, rest = ''): string {
  return `/api/v1/jobs/${encodeURIComponent(id)}${rest}`;
}

/** The FtError of an error answer: from its `{"error": {"code", "message"}}` body when it has one. */
async function errorOf(response: Response): Promise<FtError> {
  const text = await response.text().catch(() => '');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;  // not JSON: a proxy's error page, say
  }
  const error = isObject(parsed) ? parsed['error'] : undefined;
  if (isObject(error) && typeof error['code'] === 'string' && typeof error['message'] === 'string') {
    return new FtError(response.status, error['code'], error['message']);
  }
  const message = text.trim() || response.statusText || `HTTP ${response.status}`;
  return new FtError(response.status, `http_${response.status}`, message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** One message of an event stream, before its data is read as JSON. */
interface StreamMessage {
  id: string;
  event: string;
  data: string;
}

/**
 * Reads the text/event-stream format (the HTML standard's "Server-sent events") from text
 * given in pieces of any size: lines end with \r\n, \n or \r; `field: value` lines build a
 * message and a blank line sends it; lines starting with ':' are comments (the server's
 * keep-alives). A message without data is dropped, and the id stays until another is given,
 * as the standard says.
 */
class EventStreamParser {
  private buffer = '';
  private lastId = '';
  private event = '';
  private data: string[] = [];

  /** The messages that `text` completes. */
  push(text: string): StreamMessage[] {
    this.buffer += text;
    const messages: StreamMessage[] = [];
    const lineEnd = /\r\n|\r|\n/g;
    let start = 0;
    for (let match = lineEnd.exec(this.buffer); match !== null; match = lineEnd.exec(this.buffer)) {
      // A \r at the end may be the first half of a \r\n split between pieces: wait for the next.
      if (match[0] === '\r' && lineEnd.lastIndex === this.buffer.length) break;
      const message = this.line(this.buffer.slice(start, match.index));
      if (message !== undefined) messages.push(message);
      start = lineEnd.lastIndex;
    }
    this.buffer = this.buffer.slice(start);
    return messages;
  }

  /** The messages that `text` and the end of the stream complete; an unfinished one is dropped. */
  end(text: string): StreamMessage[] {
    const messages = this.push(text);
    // A \r held back by push ends its line after all.
    return this.buffer.endsWith('\r') ? messages.concat(this.push('\n')) : messages;
  }

  private line(line: string): StreamMessage | undefined {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
    // Other fields (retry) matter only to a client that reconnects by itself.
    return undefined;
  }

  private dispatch(): StreamMessage | undefined {
    const message = { id: this.lastId, event: this.event || 'message', data: this.data.join('\n') };
    const hasData = this.data.length > 0;
    this.event = '';
    this.data = [];
    return hasData ? message : undefined;
  }
}

/** The TrainingEvent of a message; undefined for an event name this client does not know. */
function toTrainingEvent(message: StreamMessage): TrainingEvent | undefined {
  if (!EVENT_NAMES.has(message.event)) return undefined;
  // The id carries over from earlier messages (see EventStreamParser): none yet is -1.
  const id = message.id === '' ? -1 : Number(message.id);
  if (!Number.isInteger(id)) {
    throw new Error(`ft: a ${message.event} event with an id that is not a number (${JSON.stringify(message.id)})`);
  }
  let data: unknown;
  try {
    data = JSON.parse(message.data);
  } catch (error) {
    throw new Error(`ft: the data of event ${id} (${message.event}) is not JSON: ${message.data}`, { cause: error });
  }
  return { id, event: message.event, data } as TrainingEvent;
}

/** Resolves after `ms`, or rejects when `signal` is aborted. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
