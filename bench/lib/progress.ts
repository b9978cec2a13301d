/**
 * Progress for `npm run bench`, on stderr (stdout carries the table). On a terminal: the scenarios' own lines (one per
 * round) scroll above a bar that shows the scenario, the share done and the time left, redrawn once a second. Otherwise
 * (CI, a pipe, a log file): the same lines plus one line as each scenario starts. The time left comes from each
 * scenario's estimate, scaled by how far off the estimates of the finished ones were.
 *
 * Hand-written rather than cli-progress: what is needed is one bar under scrolling lines, about forty lines of code.
 */

export interface Step {
  readonly name: string;
  /** the expected duration, seconds */
  readonly seconds: number;
}

export interface Progress {
  /** a line from the running scenario */
  log(line: string): void;
  begin(index: number): void;
  end(index: number, summary: string): void;
  close(): void;
}

const clock = (s: number) => {
  const t = Math.max(0, Math.round(s));
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, '0')}`;
};

export function createProgress(steps: readonly Step[], stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = Boolean(stream.isTTY) && !process.env.CI;
  const total = steps.reduce((s, x) => s + x.seconds, 0) || 1;
  const started = performance.now();
  let current = -1;
  let stepStarted = started;
  let doneEstimate = 0;
  let doneActual = 0;
  let timer: NodeJS.Timeout | undefined;

  const now = () => (performance.now() - started) / 1000;
  const state = () => {
    const inStep = current >= 0 ? Math.min((performance.now() - stepStarted) / 1000, 0.97 * steps[current]!.seconds) : 0;
    const fraction = Math.min(1, (doneEstimate + inStep) / total);
    const scale = doneEstimate > 0 ? doneActual / doneEstimate : 1;
    return { fraction, left: scale * (total - doneEstimate - inStep) };
  };
  const bar = () => {
    const { fraction, left } = state();
    const width = Math.max(10, Math.min(30, (stream.columns ?? 80) - 60));
    const filled = Math.round(fraction * width);
    const text = `${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${String(Math.floor(fraction * 100)).padStart(3)}% ${current + 1}/${steps.length} ${steps[current]?.name ?? ''} · ${clock(now())}, ~${clock(left)} left`;
    return text.slice(0, (stream.columns ?? 120) - 1);
  };
  const redraw = () => stream.write(`\r\x1b[2K${bar()}`);
  const print = (line: string) => stream.write(tty ? `\r\x1b[2K${line}\n${bar()}` : `${line}\n`);

  if (tty) timer = setInterval(redraw, 1000).unref();
  return {
    log: print,
    begin(index) {
      current = index;
      stepStarted = performance.now();
      const { left } = state();
      print(`[${index + 1}/${steps.length}] ${steps[index]!.name} (about ${clock(steps[index]!.seconds)}; ${clock(now())} elapsed, ~${clock(left)} left)`);
    },
    end(index, summary) {
      doneEstimate += steps[index]!.seconds;
      doneActual += (performance.now() - stepStarted) / 1000;
      print(`[${index + 1}/${steps.length}] ${summary}`);
    },
    close() {
      if (timer) clearInterval(timer);
      if (tty) stream.write('\r\x1b[2K');
      stream.write(`done in ${clock(now())}\n`);
    },
  };
}
