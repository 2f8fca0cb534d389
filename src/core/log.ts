// Structured logs: one JSON object per line, for Netlify's function log and for
// whoever reads it at 3 a.m. Callers pass facts (ids, types, outcomes, durations),
// never secrets, tokens, request bodies or card data.

export type LogLevel = 'info' | 'warn' | 'error';
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export type LogSink = (line: string) => void;

const defaultSink: Record<LogLevel, LogSink> = {
  info: (line) => console.log(line),
  warn: (line) => console.warn(line),
  error: (line) => console.error(line),
};

export function createLogger(base: LogFields, sink?: LogSink): Logger {
  const write = (level: LogLevel, message: string, fields: LogFields = {}) => {
    const line = JSON.stringify({ level, msg: message, ...base, ...fields, time: new Date().toISOString() });
    (sink ?? defaultSink[level])(line);
  };
  return {
    info: (message, fields) => write('info', message, fields),
    warn: (message, fields) => write('warn', message, fields),
    error: (message, fields) => write('error', message, fields),
  };
}

/** The name and message of an unknown thrown value, for a log line. */
export function describeError(error: unknown): { error: string; errorType: string } {
  if (error instanceof Error) return { error: error.message, errorType: error.name };
  return { error: String(error), errorType: typeof error };
}
