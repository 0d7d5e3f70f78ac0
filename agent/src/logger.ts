// winston loggers: one for the agent's own log lines (stderr, optional
// rotating file) and one for alerts (stdout and/or rotating file), so stdout
// carries nothing but alerts and scripts can read it line by line.
import * as winston from 'winston';

export type LogFormat = 'pretty' | 'json';

export interface RotatingFileOptions {
  path: string;
  maxSizeBytes: number;
  maxFiles: number;
}

export interface LoggerOptions {
  level: 'error' | 'warn' | 'info' | 'debug';
  format: LogFormat;
  file?: RotatingFileOptions;
}

function rotatingFile(opts: RotatingFileOptions, format: winston.Logform.Format): winston.transport {
  // winston's File transport rotates by size; tailable keeps the newest in `path`.
  return new winston.transports.File({
    filename: opts.path,
    maxsize: opts.maxSizeBytes,
    maxFiles: opts.maxFiles,
    tailable: true,
    format,
  });
}

export function createLogger(opts: LoggerOptions): winston.Logger {
  const json = winston.format.combine(winston.format.timestamp(), winston.format.json());
  const pretty = winston.format.combine(
    winston.format.timestamp(),
    winston.format.printf((info) => {
      const { level, message, timestamp, ...rest } = info;
      const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
      return `${timestamp} ${level}: ${message}${extra}`;
    }),
  );
  const transports: winston.transport[] = [
    new winston.transports.Console({
      // Everything to stderr: stdout is reserved for alerts.
      stderrLevels: ['error', 'warn', 'info', 'verbose', 'debug', 'silly'],
      format: opts.format === 'json' ? json : pretty,
    }),
  ];
  if (opts.file) transports.push(rotatingFile(opts.file, json));
  return winston.createLogger({ level: opts.level, transports });
}

export interface AlertOutputOptions {
  stdout: boolean;
  format: LogFormat;
  file?: RotatingFileOptions;
}

/** Alerts are written exactly as their JSON, one object per line. */
export function createAlertLogger(opts: AlertOutputOptions): winston.Logger {
  const asJson = winston.format.printf((info) => JSON.stringify(info.alert));
  const asPretty = winston.format.printf((info) => {
    const a = info.alert as Record<string, unknown>;
    // telemetry records (visibility) have no policy or action
    if (a.Type === 'HostLog' || a.Type === 'ContainerLog') {
      return `[${a.Type}/${a.Result}] ${a.Operation} ${a.Resource} by ${a.ProcessName} (pid ${a.PID})${a.ContainerName ? ` in ${a.ContainerName}` : ''}`;
    }
    return `[${a.Action}/${a.Result}] ${a.PolicyName} ${a.Operation} ${a.Resource} by ${a.ProcessName} (pid ${a.PID})`;
  });
  const transports: winston.transport[] = [];
  if (opts.stdout) {
    transports.push(new winston.transports.Console({ format: opts.format === 'json' ? asJson : asPretty }));
  }
  if (opts.file) transports.push(rotatingFile(opts.file, asJson));
  return winston.createLogger({ level: 'info', transports, silent: transports.length === 0 });
}
